import CRocksDB
import Foundation
public import KVCore
import Synchronization

/// A `ReplicaStore` on RocksDB: the write-ahead log with group commit, block checksums, compaction
/// and ordered iteration come from the engine.
///
/// Column families: `data` (records keyed by `token · key`, see `RecordCodec`), `hints` (the durable
/// hint log keyed by `target · version · key [· keyspace]`, see `HintCodec` and
/// `RocksDBStore+Hints.swift`), `meta` (node id, cluster map and the ranges due for anti-entropy, see
/// `RepairMarkCodec` and `RocksDBStore+RepairMarks.swift`), `merkle` (the Merkle segments' hashes,
/// see `MerkleCodec` and `RocksDBStore+Merkle.swift`), `versions` (every `data` record once more, by
/// version: what an incremental backup copies, see `RocksDBStore+Changes.swift`), and RocksDB's
/// mandatory `default`, left empty. All are created on first open.
///
/// Keyspaces (`KeyspaceStoring`, `RocksDBStore+Keyspaces.swift`): the store `init` returns serves
/// keyspace 0 with `data` and `versions`; keyspace k's view has its own `data.<k>` and `versions.<k>`
/// families, and its own `meta` and `merkle` keys under `keyspace/<k>/`. Every view shares one
/// `RocksDBEngine`: the database, `meta`, `merkle`, `hints`, the lock stripes, the checkpoints and the
/// gate.
///
/// Every call blocks on I/O; run it on a thread pool. The class is thread-safe: RocksDB handles are
/// safe to share, per-key atomicity comes from `LockStripes`, and `close()` waits for calls in
/// flight before freeing the handles (hence `@unchecked Sendable`: the raw pointers are immutable
/// after `init` and only freed once nobody can use them).
public final class RocksDBStore: ReplicaStore, @unchecked Sendable {
    /// What every keyspace's view shares.
    let engine: RocksDBEngine
    /// The keyspace this view serves (0: the store `init` returns).
    public let keyspaceID: UInt32
    /// This keyspace's records (`data`, or `data.<id>`).
    let dataFamily: OpaquePointer
    /// This keyspace's version index (`versions`, or `versions.<id>`).
    let versionsFamily: OpaquePointer
    /// What this keyspace's `meta` and `merkle` keys start with: nothing for keyspace 0 (the names folders had
    /// before keyspaces), `keyspace/<id>/` otherwise (`metadataName(_:keyspace:)`).
    let metaPrefix: [UInt8]

    /// The directory holding the RocksDB files.
    public var directory: String { engine.directory }
    /// When writes reach stable storage.
    public var durability: Durability { engine.durability }
    /// The checkpoints made for backups (`RocksDBStore+Checkpoint.swift`); none survive a reopen.
    public var checkpoints: CheckpointRegistry { engine.checkpoints }

    /// The families a checkpoint is read with (`RocksDBCheckpointReader`), the first of
    /// `RocksDBEngine.baseFamilyNames`: an incremental backup's checkpoint holds only these, and a
    /// backup made before `versions` existed lacks it.
    static let checkpointFamilyNames = Array(RocksDBEngine.baseFamilyNames.prefix(4))

    var db: OpaquePointer { engine.db }
    var readOptions: OpaquePointer { engine.readOptions }
    var writeOptions: OpaquePointer { engine.writeOptions }
    var unsyncedWriteOptions: OpaquePointer { engine.unsyncedWriteOptions }
    var syncedWriteOptions: OpaquePointer { engine.syncedWriteOptions }
    var hintsFamily: OpaquePointer { engine.hintsFamily }
    var metaFamily: OpaquePointer { engine.metaFamily }
    var merkleFamily: OpaquePointer { engine.merkleFamily }
    var stripes: LockStripes { engine.stripes }
    var headers: HeaderCache { engine.headers }

    /// The repair marks (keyed by their storage key without `metaPrefix`): read from `meta` at open,
    /// then kept up to date by every mark and clear, which `repairMarkWrites` serializes (see
    /// `RocksDBStore+RepairMarks.swift`).
    let repairMarks = Mutex(RepairMarks())
    let repairMarkWrites = Mutex<Void>(())
    /// The Merkle segment hashes: loaded from `merkle` at open (or rebuilt), then updated by every write
    /// after its batch commits, under the segment's stripe (see `RocksDBStore+Merkle.swift`).
    let merkle = Mutex(MerkleSegments())
    let merkleOpenRebuild = Mutex<MerkleRebuild?>(nil)
    /// Set when this view's keyspace is dropped (`RocksDBEngine.setDropped`): its calls then throw `.closed`.
    let dropped = Atomic<Bool>(false)
    /// This view's calls using its families, counted by the engine's gate: a drop waits for them.
    let callsInFlight = Atomic<Int>(0)

    /// The most bytes of write-ahead log kept before RocksDB flushes the column families that hold the
    /// oldest log file back (`max_total_wal_size`).
    ///
    /// The column families share one log, and a log file goes only once every family has flushed
    /// what it holds; the small families (hints, marks, metadata) fill their memtables rarely, so
    /// without a bound the logs of everything written since their last flush stay: 800 MB per node
    /// after loading 1 GB of values (docs/benchmarks.md, "Backup and restore").
    public static let walBytesMaxDefault: UInt64 = 256 << 20

    /// The bytes of table blocks (data, index and filters) a node keeps in memory, over all column
    /// families: a read these and the memtables serve costs no disk read and no hop to the storage
    /// threads. RocksDB's own default is 8 MB, which left a node with a data set past its memtables
    /// reading most values through the storage threads (docs/benchmarks.md, "Reads past the memtables").
    public static let blockCacheBytesDefault: UInt64 = 256 << 20

    /// Opens (creating if missing) the store in `directory`, with every keyspace it holds: the store
    /// returned serves keyspace 0, `keyspace(_:)` the others.
    ///
    /// Records and hints are refused with `.diskFull` while fewer than `diskReserveBytes` are free on
    /// the folder's file system (`DiskRoom`; 0: never).
    ///
    /// Throws `.openFailed` if the directory cannot be created or read, or is already open in this
    /// or another process (RocksDB's `LOCK` file); `.corruption` if RocksDB finds damaged files.
    public init(
        directory: String, durability: Durability = .sync, walSync: WALSyncMode = .thread,
        walBytesMax: UInt64 = walBytesMaxDefault, blockCacheBytes: UInt64 = blockCacheBytesDefault,
        diskReserveBytes: UInt64 = DiskRoom.reserveBytesDefault
    ) throws(StorageError) {
        let engine = try RocksDBEngine(
            directory: directory, durability: durability, walSync: walSync, walBytesMax: walBytesMax,
            blockCacheBytes: blockCacheBytes, diskReserveBytes: diskReserveBytes)
        self.engine = engine
        self.keyspaceID = 0
        self.dataFamily = engine.defaultKeyspace.data
        self.versionsFamily = engine.defaultKeyspace.versions
        self.metaPrefix = []
        engine.keyspaces.withLock { $0.root = self }
        // Fully initialized: if a scan throws, `deinit` closes the handles.
        // Checkpoints left by a process that ended before releasing them (killed kvd or kvctl).
        engine.checkpoints.removeAll()
        try loadHintCounts()
        try loadKeyspaceState()
        try openKeyspaceViews()
    }

    /// The view of keyspace `id` over `families`; `loadKeyspaceState()` makes it usable.
    init(engine: RocksDBEngine, keyspace id: UInt32, families: RocksDBEngine.KeyspaceFamilies) {
        precondition(id != 0, "keyspace 0 is the store itself")
        self.engine = engine
        self.keyspaceID = id
        self.dataFamily = families.data
        self.versionsFamily = families.versions
        self.metaPrefix = Array(metadataName("", keyspace: id).utf8)
    }

    /// Reads this keyspace's repair marks and Merkle segments, and builds its version index if needed.
    func loadKeyspaceState() throws(StorageError) {
        try loadRepairMarks()
        try loadMerkleSegments()
        try loadVersionIndex()
    }

    /// Releasing the root (keyspace 0's store) closes the store; a view's release does nothing (the
    /// engine holds its views until they are dropped or the store closes).
    deinit {
        if keyspaceID == 0 { engine.close() }
    }

    // MARK: ReplicaStore

    /// Applies `record` if newer, and updates the key's Merkle segment in the same RocksDB write batch,
    /// so a crash never leaves the two apart: `apply(_:setting:)` of one record.
    ///
    /// The lock stripe is chosen by the key's segment, not its token: the segment hash is read,
    /// changed and written under it, so two keys of one segment cannot race on it. This adds no
    /// contention: two different keys share a stripe with probability 1/4096.
    public func apply(key: [UInt8], record: StoredRecord) throws(StorageError) -> ApplyOutcome {
        try apply([StreamedRecord(key: key, record: record)], setting: nil)[0]
    }

    /// Applies the records newer than what is stored, their segments' new hashes and `metadata`, in one
    /// write batch: one fsync for a whole page (`apply(key:record:)` costs one a record, shared only with
    /// the writes that happen to run at the same moment). Holds the stripes of every segment the records
    /// touch, taken in order, until the batch is written.
    public func apply(_ records: [StreamedRecord], setting metadata: MetadataEntry?) throws(StorageError)
        -> [ApplyOutcome]
    {
        guard let outcomes = try apply(records, setting: metadata, blocking: true) else {
            preconditionFailure("a blocking apply always answers")
        }
        return outcomes
    }

    /// Whether `applyWithoutBlocking` may write: always. With `sync` its writes are not durable when
    /// it returns; `whenDurable` says when they are.
    public var appliesWithoutBlocking: Bool { true }

    /// `apply(_:setting: nil)` when it needs no wait: every current version from the memtables or the
    /// block cache, the stripes free, and RocksDB not stalling writes (`no_slowdown`). Nil, with
    /// nothing written, when it would wait. The write is never fsynced here: with `sync`, acknowledge
    /// it only once `whenDurable` calls back.
    public func applyWithoutBlocking(_ records: [StreamedRecord]) throws(StorageError) -> [ApplyOutcome]? {
        try apply(records, setting: nil, blocking: false)
    }

    /// With `sync`, calls `completion` once the log is fsynced past every write that returned before
    /// this call: on the WAL syncer's thread (`WALSyncMode.thread`), or after an fsync on the calling
    /// thread, before returning (`.caller`); at once, on the calling thread, with the other
    /// durabilities, whose writes are as durable as they get when they return.
    public func whenDurable(_ completion: @escaping @Sendable (StorageError?) -> Void) {
        guard durability == .sync, let syncer = engine.walSyncer else { return completion(nil) }
        syncer.whenDurable(completion)
    }

    /// Tests: holds the fsyncs `whenDurable` asks for (it then waits), or lets them go; false when the
    /// durability is not `sync` or the fsyncs are the callers' (`WALSyncMode.caller`).
    @discardableResult
    package func holdWALSyncsForTesting(_ hold: Bool) -> Bool {
        guard durability == .sync, let syncer = engine.walSyncer else { return false }
        return syncer.hold(hold)
    }

    /// Tests: forgets every key's current header (`HeaderCache`), as a restart does, so that the next
    /// write of a key reads RocksDB.
    package func forgetHeadersForTesting() {
        stripes.withAllLocks { headers.forgetAll() }
    }

    /// Tests: the entries in this keyspace's active `data` memtable (RocksDB's
    /// `num-entries-active-mem-table`): a record overwritten in place adds none.
    package func activeDataMemtableEntriesForTesting() throws(StorageError) -> UInt64 {
        try withOpenHandles { () throws(StorageError) -> UInt64 in
            var value: UInt64 = 0
            guard rocksdb_property_int_cf(db, dataFamily, "rocksdb.num-entries-active-mem-table", &value) == 0 else {
                throw .corruption("RocksDB has no num-entries-active-mem-table")
            }
            return value
        }
    }

    /// The failure of the disk that stopped the store's writes (`StorageFault`); nil while none did.
    /// The same from every view.
    public var storageFailure: StorageFailure? { engine.fault.failure }

    /// Tests: records `reason` as if RocksDB had answered a write with it (`StorageFault.record`), as a
    /// failing disk does and no test can make one do in process.
    package func recordStorageFailureForTesting(_ reason: String) {
        engine.fault.record(.fromRocksDB(reason, path: directory))
    }

    /// Tests: the fsyncs the WAL syncer made so far.
    package var walSyncCountForTesting: Int { engine.walSyncer?.syncCount ?? 0 }

    /// Tests: the `whenDurable` callers waiting for the WAL syncer's next fsync.
    package var walSyncWaitersForTesting: Int { engine.walSyncer?.waitingCount ?? 0 }

    /// The two applies' one rule; nil only when not `blocking` and it would wait.
    private func apply(_ records: [StreamedRecord], setting metadata: MetadataEntry?, blocking: Bool)
        throws(StorageError) -> [ApplyOutcome]?
    {
        for streamed in records { try validate(key: streamed.key, record: streamed.record) }
        if let metadata { try validateMetadata(name: metadata.name) }
        if !records.isEmpty { try engine.room.check() }
        let tokens = records.map { Token(key: $0.key) }
        let segments = tokens.map(MerkleSegments.segment(of:))
        return try withOpenHandles { () throws(StorageError) -> [ApplyOutcome]? in
            let locked = { (body: () throws(StorageError) -> [ApplyOutcome]?) throws(StorageError) -> [ApplyOutcome]? in
                blocking
                    ? try self.stripes.withLocks(forSegments: segments, body)
                    : try self.stripes.withLocksIfAvailable(forSegments: segments, body) ?? nil
            }
            return try locked { () throws(StorageError) -> [ApplyOutcome]? in
                var outcomes: [ApplyOutcome] = []
                outcomes.reserveCapacity(records.count)
                var writes: [(key: [UInt8], token: Token, dataKey: [UInt8], old: Version?, record: StoredRecord)] = []
                // What the batch will hold, so that a later record of the same key compares with it: the
                // last write of each token (keyed by the token, not by the key's bytes, which a
                // dictionary hashes byte by byte); two keys of one token look through the writes.
                var lastWrite: [UInt64: Int] = [:]
                func written(_ key: [UInt8], _ token: Token) -> RecordCodec.Header? {
                    guard let index = lastWrite[token.value] else { return nil }
                    let found = writes[index].key == key ? index : writes.lastIndex { $0.key == key }
                    return found.map { RecordCodec.header(of: writes[$0].record) }
                }
                var deltas: [Int: UInt64] = [:]
                for ((streamed, token), segment) in zip(zip(records, tokens), segments) {
                    let dataKey = RecordCodec.dataKey(streamed.key)
                    var current = written(streamed.key, token)
                    if current == nil {
                        guard let stored = try currentHeader(streamed.key, token, dataKey, blocking: blocking) else {
                            return nil
                        }
                        current = stored
                    }
                    if let kept = ApplyOutcome.withoutWriting(
                        over: current?.version, offered: streamed.record.version)
                    {
                        outcomes.append(kept)
                        continue
                    }
                    deltas[segment, default: 0] ^= MerkleSegments.delta(
                        old: current.map {
                            MerkleEntry(key: streamed.key, version: $0.version, tombstone: $0.tombstone)
                        },
                        new: MerkleEntry(key: streamed.key, record: streamed.record))
                    lastWrite[token.value] = writes.count
                    writes.append((streamed.key, token, dataKey, current?.version, streamed.record))
                    outcomes.append(.applied)
                }
                guard !writes.isEmpty || metadata != nil else { return outcomes }
                let build = { (batch: OpaquePointer) in
                    // In order: a key written twice in the batch has its first version's entry put, then
                    // deleted.
                    for write in writes {
                        Self.put(batch, self.dataFamily, write.dataKey, record: write.record)
                        self.reindex(batch, dataKey: write.dataKey, old: write.old, new: write.record.version)
                    }
                    for (segment, delta) in deltas where delta != 0 {
                        self.writeSegment(segment, xoring: delta, in: batch)
                    }
                    if let metadata { Self.put(batch, self.metaFamily, self.metaKey(metadata.name), metadata.value) }
                }
                let wrote: Bool
                if blocking {
                    try writeBatch(build)
                    wrote = true
                } else {
                    wrote = try writeBatchIfNotStalled(build)
                }
                guard wrote else { return nil }
                // In order: a key written twice in the batch holds its last record.
                for write in writes {
                    headers.remember(
                        RecordCodec.header(of: write.record), keyspace: keyspaceID, key: write.key, token: write.token)
                }
                merkle.withLock { merkle in
                    for (segment, delta) in deltas { merkle.xor(delta, intoSegment: segment) }
                }
                return outcomes
            }
        }
    }

    /// The header of what `key` (stored as `dataKey`) holds now: `.some(nil)` when absent; nil when not
    /// `blocking` and the answer needs a file read. From `headers` when there, else read and remembered.
    /// The caller holds the stripe of the key's segment (a write, a purge, a range's delete).
    func currentHeader(_ key: [UInt8], _ token: Token, _ dataKey: [UInt8], blocking: Bool)
        throws(StorageError) -> RecordCodec.Header??
    {
        if let known = headers.header(keyspace: keyspaceID, key: key, token: token) { return known }
        let decode = { (bytes: UnsafeRawBufferPointer) throws(StorageError) -> RecordCodec.Header in
            try RecordCodec.decodeHeader(bytes)
        }
        let read =
            blocking ? .some(try read(dataFamily, dataKey, decode)) : try readFromMemory(dataFamily, dataKey, decode)
        if let read { headers.remember(read, keyspace: keyspaceID, key: key, token: token) }
        return read
    }

    /// Adds to `batch` the write of `segment`'s hash XOR `delta` (a delete when that is zero). The
    /// caller holds the segment's stripe, and XORs `delta` into `merkle` once the batch is written.
    func writeSegment(_ segment: Int, xoring delta: UInt64, in batch: OpaquePointer) {
        let segmentHash = merkle.withLock { $0[segment] } ^ delta
        MerkleCodec.withSegmentKey(segment, after: metaPrefix) { key in
            if segmentHash == 0 {
                Self.delete(batch, merkleFamily, key)
            } else {
                MerkleCodec.withEncodedHash(segmentHash) { Self.put(batch, merkleFamily, key, $0) }
            }
        }
    }

    public func get(key: [UInt8]) throws(StorageError) -> StoredRecord? {
        let dataKey = RecordCodec.dataKey(key)
        return try withOpenHandles { () throws(StorageError) -> StoredRecord? in
            try read(dataFamily, dataKey) { (bytes) throws(StorageError) -> StoredRecord in
                try RecordCodec.decode(bytes)
            }
        }
    }

    public func getFromMemory(key: [UInt8]) throws(StorageError) -> StoredRecord?? {
        let dataKey = RecordCodec.dataKey(key)
        return try withOpenHandles { () throws(StorageError) -> StoredRecord?? in
            try readFromMemory(dataFamily, dataKey) { (bytes) throws(StorageError) -> StoredRecord in
                try RecordCodec.decode(bytes)
            }
        }
    }

    public func metadata(_ name: String) throws(StorageError) -> [UInt8]? {
        try withOpenHandles { () throws(StorageError) -> [UInt8]? in
            try read(metaFamily, metaKey(name)) { (bytes) throws(StorageError) -> [UInt8] in Array(bytes) }
        }
    }

    public func setMetadata(_ name: String, _ value: [UInt8]) throws(StorageError) {
        try validateMetadata(name: name)
        try withOpenHandles { () throws(StorageError) in
            try write(metaFamily, metaKey(name), value)
        }
    }

    public func setMetadataDurably(_ name: String, _ value: [UInt8]) throws(StorageError) {
        try validateMetadata(name: name)
        try withOpenHandles { () throws(StorageError) in
            try write(metaFamily, metaKey(name), value, options: syncedWriteOptions)
        }
    }

    public func setMetadataLazily(_ name: String, _ value: [UInt8]) throws(StorageError) {
        try validateMetadata(name: name)
        try withOpenHandles { () throws(StorageError) in
            try write(metaFamily, metaKey(name), value, options: unsyncedWriteOptions)
        }
    }

    /// RocksDB's own figures for an operator, summed over the column families of every keyspace and
    /// the shared ones (data, hints, marks, metadata): compaction backlog, table bytes, memtable bytes;
    /// and the bytes written and read since the store opened, from the statistics. The same from every
    /// view. Nil once closed.
    public func engineFigures() -> EngineFigures? {
        try? engine.withOpenHandles(view: nil) { () throws(StorageError) -> EngineFigures in
            let (pending, live, memtables) = try engine.withAllFamilies {
                (families) throws(StorageError) -> (UInt64, UInt64, UInt64) in
                func sum(_ property: String) -> UInt64 {
                    families.reduce(UInt64(0)) { total, family in
                        var value: UInt64 = 0
                        guard rocksdb_property_int_cf(db, family, property, &value) == 0 else { return total }
                        return total &+ value
                    }
                }
                return (
                    sum("rocksdb.estimate-pending-compaction-bytes"), sum("rocksdb.live-sst-files-size"),
                    sum("rocksdb.cur-size-all-mem-tables")
                )
            }
            // One cache for every family: asked of the family every store has.
            func cache(_ property: String) -> UInt64 {
                var value: UInt64 = 0
                return rocksdb_property_int_cf(db, engine.defaultKeyspace.data, property, &value) == 0 ? value : 0
            }
            return EngineFigures(
                pendingCompactionBytes: pending,
                liveTableBytes: live,
                memtableBytes: memtables,
                blockCacheBytes: cache("rocksdb.block-cache-usage"),
                blockCacheCapacityBytes: cache("rocksdb.block-cache-capacity"),
                traffic: rocksdb_options_statistics_get_string(engine.options).flatMap { text in
                    defer { rocksdb_free(text) }
                    return EngineTraffic(statistics: String(cString: text))
                })
        }
    }

    public func approximateKeyCount() -> UInt64 {
        let count = try? withOpenHandles { () throws(StorageError) -> UInt64 in
            var value: UInt64 = 0
            guard rocksdb_property_int_cf(db, dataFamily, "rocksdb.estimate-num-keys", &value) == 0 else {
                return 0
            }
            return value
        }
        return count ?? 0
    }

    /// Closes the whole store, every keyspace's view with it (they share the engine).
    public func close() {
        engine.close()
    }

    // MARK: Maintenance

    /// Writes the memtables of every column family, every keyspace's, to SST files and waits for it (a
    /// drain before a restart; tests use it to put data on disk in table files rather than only in the
    /// log). The same from every view.
    public func flush() throws(StorageError) {
        try engine.withOpenHandles(view: nil) { () throws(StorageError) in
            try engine.fault.check()
            try engine.withAllFamilies { (families) throws(StorageError) in
                do throws(StorageError) {
                    try Self.flush(db, families, directory: directory)
                } catch {
                    throw engine.fault.record(error)
                }
            }
        }
    }

    /// The `meta` key of this keyspace's metadata value `name` (`metadataName(_:keyspace:)`).
    func metaKey(_ name: String) -> [UInt8] {
        metaPrefix + Array(name.utf8)
    }

    /// Runs `body` with the handles guaranteed alive: `close()` waits for it to return, and so does a
    /// drop of this view's keyspace, after which it throws `.closed`.
    func withOpenHandles<Result>(
        _ body: () throws(StorageError) -> Result
    ) throws(StorageError) -> Result {
        try engine.withOpenHandles(view: self, body)
    }
}

/// RocksDB's figures `RocksDBStore.engineFigures()` reads.
public struct EngineFigures: Sendable, Hashable {
    /// Bytes compaction would have to rewrite to bring the levels within their targets (the backlog).
    public var pendingCompactionBytes: UInt64
    /// Bytes of the table files the current version uses.
    public var liveTableBytes: UInt64
    /// Bytes of the memtables, not yet flushed.
    public var memtableBytes: UInt64
    /// Bytes the block cache holds, and the most it may hold (`--block-cache-bytes`).
    public var blockCacheBytes: UInt64
    public var blockCacheCapacityBytes: UInt64
    /// Bytes written and read since the store opened; nil when the statistics are not there.
    public var traffic: EngineTraffic?
}
