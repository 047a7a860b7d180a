import CRocksDB
import Foundation
public import KVCore

/// A RocksDB folder of `RocksDBStore`'s layout (a checkpoint a backup copied, rebuilt in a folder)
/// opened read-only, for a restore: one keyspace's `data` records in order, page by page, and its
/// hints (the default keyspace's unless asked for another).
///
/// Read-only so that opening it never writes a byte: the folder is made of hard links to a backup's
/// files, which must stay as they were. RocksDB replays a write-ahead log left in the folder into
/// memory only. Not `RocksDBStore`, whose open writes (Merkle segments, checkpoint clean-up).
///
/// Every call blocks on I/O. One caller at a time: a restore reads one checkpoint from one task.
public final class RocksDBCheckpointReader: @unchecked Sendable {
    public let directory: String
    /// The keyspace read: its `data` family (`data`, or `data.<id>`) and its hints.
    public let keyspaceID: UInt32

    private let db: OpaquePointer
    private let options: OpaquePointer
    private let families: [OpaquePointer]
    private var dataFamily: OpaquePointer { families[1] }
    private var hintsFamily: OpaquePointer { families[2] }
    private var closed = false

    /// Opens `directory` read-only with the store's shared column families and keyspace `keyspace`'s
    /// `data`. Read-only opening lets RocksDB leave the folder's other families (other keyspaces',
    /// `versions`) closed.
    ///
    /// Throws `.openFailed` when it is not a RocksDB folder or lacks a family (a keyspace the
    /// checkpoint does not hold: its node did not, or the backup predates keyspaces; `keyspaces(in:)`
    /// lists those it holds), `.corruption`
    /// when RocksDB finds damaged files, `.invalidRecord` for a keyspace id out of bounds.
    public init(directory: String, keyspace: UInt32 = 0) throws(StorageError) {
        try validate(keyspace: keyspace)
        self.directory = directory
        self.keyspaceID = keyspace
        guard FileManager.default.fileExists(atPath: "\(directory)/CURRENT") else {
            throw .openFailed(path: directory, reason: "no CURRENT file: not a RocksDB folder")
        }
        let options = rocksdb_options_create()!
        rocksdb_options_set_paranoid_checks(options, 1)
        let (opened, handles) = try RocksDBStore.open(
            directory, options: options,
            families: ["default", RocksDBEngine.dataFamilyName(keyspace), "hints", "meta"], readOnly: true)
        self.db = opened
        self.options = options
        self.families = handles
    }

    deinit {
        close()
    }

    /// Frees the handles; later calls throw `.closed`.
    public func close() {
        guard !closed else { return }
        closed = true
        families.forEach { rocksdb_column_family_handle_destroy($0) }
        rocksdb_close(db)
        rocksdb_options_destroy(options)
    }

    /// Up to `recordsMax` records of `data` after `after` (from the first when nil), in the family's
    /// order: token, then key bytes (`RecordCodec`). Fewer than `recordsMax` only at the end.
    ///
    /// - Parameter after: the key (not the `data` key) of the last record of the previous page.
    public func dataPage(after: [UInt8]?, recordsMax: Int) throws(StorageError) -> [StreamedRecord] {
        precondition(recordsMax > 0, "a page holds at least one record")
        // The smallest `data` key past `after`'s: its bytes followed by a zero byte.
        let start = after.map { RecordCodec.dataKey($0) + [0] }
        var page: [StreamedRecord] = []
        try scan(dataFamily, from: start) { (key, value) throws(StorageError) -> Bool in
            guard key.count > 8 else {
                throw .corruption("data key of \(key.count) bytes has no token and key", path: directory)
            }
            page.append(StreamedRecord(key: Array(key[8...]), record: try RecordCodec.decode(value)))
            return page.count < recordsMax
        }
        return page
    }

    /// The record `data` holds for `key`, or nil.
    public func record(forKey key: [UInt8]) throws(StorageError) -> StoredRecord? {
        guard !closed else { throw .closed }
        let readOptions = rocksdb_readoptions_create()!
        defer { rocksdb_readoptions_destroy(readOptions) }
        rocksdb_readoptions_set_verify_checksums(readOptions, 1)
        var error: UnsafeMutablePointer<CChar>?
        let slice = RecordCodec.dataKey(key).withUnsafeBytes { dataKey in
            rocksdb_get_pinned_cf(db, readOptions, dataFamily, dataKey.cChars, dataKey.count, &error)
        }
        defer { if let slice { rocksdb_pinnableslice_destroy(slice) } }
        if let message = RocksDBStore.takeMessage(error) {
            throw StorageError.fromRocksDB(message, path: directory)
        }
        guard let slice else { return nil }
        var length = 0
        let value = rocksdb_pinnableslice_value(slice, &length)
        return try RecordCodec.decode(UnsafeRawBufferPointer(start: value, count: length))
    }

    /// The keyspaces whose `data` family the RocksDB folder `directory` holds, by id: 0 (`data`) and
    /// each `data.<id>`. A checkpoint made before keyspaces holds only 0; an incremental one, each
    /// keyspace its node held (empty when nothing changed).
    ///
    /// Throws `.openFailed` when it is not a RocksDB folder, `.corruption` for a keyspace family whose
    /// id is out of bounds or too many families.
    public static func keyspaces(in directory: String) throws(StorageError) -> [UInt32] {
        guard FileManager.default.fileExists(atPath: "\(directory)/CURRENT") else {
            throw .openFailed(path: directory, reason: "no CURRENT file: not a RocksDB folder")
        }
        let options = rocksdb_options_create()!
        defer { rocksdb_options_destroy(options) }
        var count = 0
        var error: UnsafeMutablePointer<CChar>?
        let list = rocksdb_list_column_families(options, directory, &count, &error)
        defer { if let list { rocksdb_list_column_families_destroy(list, count) } }
        if let message = RocksDBStore.takeMessage(error) { throw RocksDBStore.openError(message, path: directory) }
        guard let list else { return [] }
        guard count <= 2 * Limits.keyspaceIDsMax + 64 else {
            throw .corruption("the folder lists \(count) column families", path: directory)
        }
        var ids = Set<UInt32>()
        for index in 0..<count {
            guard let cName = list[index] else { continue }
            if let (id, isData) = try RocksDBEngine.keyspaceFamily(String(cString: cName)), isData { ids.insert(id) }
        }
        return ids.sorted()
    }

    /// Every hint the folder holds, of every keyspace (`StoredHint.keyspace`) and every target, in
    /// storage-key order: a restore reads them once per checkpoint, whichever keyspaces' `data` the
    /// checkpoint holds (a node keeps hints of keyspaces it does not replicate).
    public func allHints() throws(StorageError) -> [StoredHint] {
        var found: [StoredHint] = []
        try scan(hintsFamily, from: nil) { (key, value) throws(StorageError) -> Bool in
            found.append(try HintCodec.decode(key: key, value: value))
            return true
        }
        return found
    }

    /// Every hint the folder holds for the reader's keyspace (`StoredHint.keyspace`), for every
    /// target, in storage-key order. A node holds a bounded number of them (`hintBytesMax`), so they
    /// are returned at once.
    public func hints() throws(StorageError) -> [StoredHint] {
        var found: [StoredHint] = []
        try scan(hintsFamily, from: nil) { (key, value) throws(StorageError) -> Bool in
            let hint = try HintCodec.decode(key: key, value: value)
            if hint.keyspace == keyspaceID { found.append(hint) }
            return true
        }
        return found
    }

    private func scan(
        _ family: OpaquePointer,
        from start: [UInt8]?,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws(StorageError) -> Bool
    ) throws(StorageError) {
        guard !closed else { throw .closed }
        let scanOptions = rocksdb_readoptions_create()!
        defer { rocksdb_readoptions_destroy(scanOptions) }
        rocksdb_readoptions_set_verify_checksums(scanOptions, 1)
        let iterator = rocksdb_create_iterator_cf(db, scanOptions, family)!
        defer { rocksdb_iter_destroy(iterator) }
        if let start {
            start.withUnsafeBytes { seek in rocksdb_iter_seek(iterator, seek.cChars, seek.count) }
        } else {
            rocksdb_iter_seek_to_first(iterator)
        }
        while rocksdb_iter_valid(iterator) != 0 {
            var keyLength = 0
            var valueLength = 0
            let key = UnsafeRawBufferPointer(start: rocksdb_iter_key(iterator, &keyLength), count: keyLength)
            let value = UnsafeRawBufferPointer(start: rocksdb_iter_value(iterator, &valueLength), count: valueLength)
            guard try body(key, value) else { break }
            rocksdb_iter_next(iterator)
        }
        var error: UnsafeMutablePointer<CChar>?
        rocksdb_iter_get_error(iterator, &error)
        if let message = RocksDBStore.takeMessage(error) {
            throw StorageError.fromRocksDB(message, path: directory)
        }
    }
}
