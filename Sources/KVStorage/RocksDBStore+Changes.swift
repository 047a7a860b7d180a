import CRocksDB
import Foundation
import KVCore
import Synchronization

/// The `versions` column family: every record of `data` once more, keyed by its version first
/// (`hlc · writer · data key`, empty value), so that the records written since a time are found
/// without reading the others. An incremental backup copies just those
/// (`createChangesCheckpoint(id:since:hash:)`): a checkpoint of whole table files copies about half
/// of them again after 1 % of the keys changed, because compaction rewrites the tables the change
/// overlaps (docs/benchmarks.md, "Backup and restore").
///
/// Every write and delete of `data` changes the index in the same write batch (the entry of a key's
/// old version goes as the new one is put), so it holds exactly one entry per record and never
/// grows past `data`. A store opened for the first time with this code builds it from `data` once
/// (`loadVersionIndex`); the empty key marks it built.
enum VersionIndexCodec {
    /// The key of the marker saying the index is complete (no index entry is this short).
    static let builtKey: [UInt8] = []

    /// `hlc · writer · dataKey`, big-endian: the family's order is the versions' order.
    static func key(_ version: Version, dataKey: [UInt8]) -> [UInt8] {
        withKey(version, dataKey: dataKey) { Array($0) }
    }

    /// `key(version, dataKey:)`'s bytes, handed to `body` from a temporary buffer (every write changes
    /// two entries).
    static func withKey<Result>(_ version: Version, dataKey: [UInt8], _ body: (UnsafeRawBufferPointer) -> Result)
        -> Result
    {
        withUnsafeTemporaryAllocation(byteCount: 16 + dataKey.count, alignment: 1) { buffer in
            buffer.storeBytes(of: version.hlc.bigEndian, toByteOffset: 0, as: UInt64.self)
            buffer.storeBytes(of: version.writer.bigEndian, toByteOffset: 8, as: UInt64.self)
            UnsafeMutableRawBufferPointer(rebasing: buffer[16...]).copyBytes(from: dataKey)
            return body(UnsafeRawBufferPointer(buffer))
        }
    }

    /// The data key of an index entry; nil for the marker, a corruption for anything else too short.
    static func dataKey(_ key: UnsafeRawBufferPointer) throws(StorageError) -> [UInt8]? {
        if key.isEmpty { return nil }
        guard key.count > 16 + 8 else {
            throw .corruption("version index key of \(key.count) bytes holds no version and data key")
        }
        return Array(key[16...])
    }

    /// The first index key of a version with an hlc above `hlc`; nil when there is none.
    static func start(after hlc: UInt64) -> [UInt8]? {
        guard hlc < .max else { return nil }
        var bytes: [UInt8] = []
        StorageBytes.appendBigEndian(hlc + 1, to: &bytes)
        return bytes
    }
}

extension RocksDBStore {
    /// Adds to `batch` the index change of a `data` record going from `old` to `new` (nil: absent).
    func reindex(_ batch: OpaquePointer, dataKey: [UInt8], old: Version?, new: Version?) {
        if let old { VersionIndexCodec.withKey(old, dataKey: dataKey) { Self.delete(batch, versionsFamily, $0) } }
        if let new {
            VersionIndexCodec.withKey(new, dataKey: dataKey) { key in
                [UInt8]().withUnsafeBytes { empty in Self.put(batch, versionsFamily, key, empty) }
            }
        }
    }

    /// Builds the version index from `data` unless it is marked built: once, the first time a store
    /// written before it is opened (writes wait: this runs in `init`).
    func loadVersionIndex() throws(StorageError) {
        try withOpenHandles { () throws(StorageError) in
            let built = try read(versionsFamily, VersionIndexCodec.builtKey) { _ in true } ?? false
            guard !built else { return }
            var entries: [[UInt8]] = []
            func write() throws(StorageError) {
                let page = entries
                entries.removeAll(keepingCapacity: true)
                try writeBatch(options: unsyncedWriteOptions) { batch in
                    for entry in page { Self.put(batch, versionsFamily, entry, []) }
                }
            }
            try scan(dataFamily, prefix: []) { (key, value) throws(StorageError) -> Bool in
                let header = try RecordCodec.decodeHeader(value)
                entries.append(VersionIndexCodec.key(header.version, dataKey: Array(key)))
                if entries.count >= 4096 { try write() }
                return true
            }
            try write()
            // Synced: it also makes the unsynced pages above durable.
            try self.write(versionsFamily, VersionIndexCodec.builtKey, [1], options: syncedWriteOptions)
        }
    }

    /// Makes checkpoint `id` for an incremental backup: a new RocksDB folder of the store's layout
    /// holding, for every keyspace the store holds (every view, the default one included), the `data`
    /// records with a version above `since` (hlc), in that keyspace's `data` family (`data`,
    /// `data.<id>`: present, maybe empty, for each keyspace held), and the hints (of every keyspace)
    /// whose record is, found through each keyspace's version index; a restore reads it as it reads a
    /// full checkpoint, above the backups it builds on (`BackupManifest.base`). The same from every
    /// view. A keyspace dropped while the checkpoint is made is left out.
    ///
    /// The index scan sees the store as it was when it began (RocksDB's iterator); each record is
    /// read as it is now, so a record written meanwhile may be there in its newer version, as in a
    /// full checkpoint. A record gone meanwhile (its range handed to another node, a tombstone
    /// purged) is left out.
    ///
    /// - Returns: the checkpoint and its files; the one already held when `id` is held.
    public func createChangesCheckpoint(id: String, since: UInt64, hash: (String) throws -> [UInt8])
        throws(CheckpointError) -> Checkpoint
    {
        try checkpoints.create(
            id: id,
            make: { (path) throws(StorageError) in
                try engine.withOpenHandles(view: nil) { () throws(StorageError) in
                    try exportChanges(since: since, into: path)
                }
            }, hash: hash)
    }

    private func exportChanges(since: UInt64, into path: String) throws(StorageError) {
        // The views, not the engine's lock: held for the whole export, it would stall every request
        // that looks a keyspace up. Each view is used under its own gate, which a drop waits for.
        let views = try engine.keyspaces.withLock { (keyspaces) throws(StorageError) -> [RocksDBStore] in
            guard let root = keyspaces.root else { throw .closed }
            return [root] + keyspaces.views.keys.sorted().map { keyspaces.views[$0]! }
        }
        let writer = try CheckpointFolderWriter(directory: path, keyspaces: views.map(\.keyspaceID))
        defer { writer.close() }
        if let start = VersionIndexCodec.start(after: since) {
            for view in views {
                do throws(StorageError) {
                    try engine.withOpenHandles(view: view.keyspaceID == 0 ? nil : view) { () throws(StorageError) in
                        try view.exportRecords(since: since, from: start, into: writer)
                    }
                } catch .closed where view.dropped.load(ordering: .relaxed) {
                    // Dropped meanwhile: its data is gone, and so is it from the backup's map.
                    continue
                }
            }
            try scan(hintsFamily, prefix: []) { (key, value) throws(StorageError) -> Bool in
                if try HintCodec.decode(key: key, value: value).record.version.hlc > since {
                    try writer.put(Array(key), Array(value), family: .hints)
                }
                return true
            }
        }
        try writer.finish()
    }

    /// Writes this view's `data` records with a version above `since` into `writer`'s family of the
    /// keyspace, found through the view's version index from `start`. The handles are held open.
    private func exportRecords(since: UInt64, from start: [UInt8], into writer: CheckpointFolderWriter)
        throws(StorageError)
    {
        let family = CheckpointFolderWriter.Family.data(keyspaceID)
        var dataKeys: [[UInt8]] = []
        func copyRecords() throws(StorageError) {
            for dataKey in dataKeys {
                try read(dataFamily, dataKey) { (value) throws(StorageError) in
                    guard try RecordCodec.decodeHeader(value).version.hlc > since else { return }
                    try writer.put(dataKey, value, family: family)
                }
            }
            dataKeys.removeAll(keepingCapacity: true)
        }
        try scan(versionsFamily, prefix: [], from: start) { (key, _) throws(StorageError) -> Bool in
            if let dataKey = try VersionIndexCodec.dataKey(key) { dataKeys.append(dataKey) }
            if dataKeys.count >= 1024 { try copyRecords() }
            return true
        }
        try copyRecords()
    }
}

extension RocksDBStore {
    /// How many records the version index lists (the marker not counted): for tests.
    package func versionIndexEntryCount() throws(StorageError) -> Int {
        try withOpenHandles { () throws(StorageError) -> Int in
            var count = 0
            try scan(versionsFamily, prefix: []) { (key, _) throws(StorageError) -> Bool in
                if !key.isEmpty { count += 1 }
                return true
            }
            return count
        }
    }

    /// Removes the version index and its marker, as in a store written before it: for tests of the
    /// build at open.
    package func forgetVersionIndexForTesting() throws(StorageError) {
        try withOpenHandles { () throws(StorageError) in
            var keys: [[UInt8]] = []
            try scan(versionsFamily, prefix: []) { (key, _) throws(StorageError) -> Bool in
                keys.append(Array(key))
                return true
            }
            try writeBatch(options: syncedWriteOptions) { batch in
                for key in keys { Self.delete(batch, versionsFamily, key) }
            }
        }
    }
}
