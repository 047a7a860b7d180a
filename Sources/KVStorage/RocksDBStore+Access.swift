import CRocksDB
import Foundation
import KVCore
import Synchronization

/// The few ways `RocksDBStore` touches RocksDB's C API — reads, writes, scans, batches, errors —
/// each with the handles kept alive and errors turned into `StorageError`. The store's other files
/// use only these.
extension RocksDBStore {
    /// Reads `key` of `family` and hands the stored bytes (pinned, not copied) to `body`.
    func read<Result>(
        _ family: OpaquePointer,
        _ key: [UInt8],
        _ body: (UnsafeRawBufferPointer) throws(StorageError) -> Result
    ) throws(StorageError) -> Result? {
        try read(family, key, options: readOptions, body) ?? nil
    }

    /// How RocksDB's C API begins the message of `Status::Incomplete`.
    static let incompletePrefix = "Result incomplete"

    /// `read` from the memtables and the block cache only: nil when the answer needs a file read
    /// (RocksDB's `Incomplete`), else what `read` answers.
    func readFromMemory<Result>(
        _ family: OpaquePointer,
        _ key: [UInt8],
        _ body: (UnsafeRawBufferPointer) throws(StorageError) -> Result
    ) throws(StorageError) -> Result?? {
        try read(family, key, options: engine.memoryReadOptions, body)
    }

    private func read<Result>(
        _ family: OpaquePointer,
        _ key: [UInt8],
        options: OpaquePointer,
        _ body: (UnsafeRawBufferPointer) throws(StorageError) -> Result
    ) throws(StorageError) -> Result?? {
        var error: UnsafeMutablePointer<CChar>?
        let slice = key.withUnsafeBytes { key in
            rocksdb_get_pinned_cf(db, options, family, key.cChars, key.count, &error)
        }
        defer { if let slice { rocksdb_pinnableslice_destroy(slice) } }
        // The read needs a file (`kBlockCacheTier`).
        if Self.isIncomplete(error) { return nil }
        try check(error)
        guard let slice else { return .some(nil) }
        var length = 0
        let value = rocksdb_pinnableslice_value(slice, &length)
        return try body(UnsafeRawBufferPointer(start: value, count: length))
    }

    func write(_ family: OpaquePointer, _ key: [UInt8], _ value: [UInt8], options: OpaquePointer? = nil)
        throws(StorageError)
    {
        try engine.fault.check()
        var error: UnsafeMutablePointer<CChar>?
        let options = options ?? writeOptions
        key.withUnsafeBytes { key in
            value.withUnsafeBytes { value in
                rocksdb_put_cf(db, options, family, key.cChars, key.count, value.cChars, value.count, &error)
            }
        }
        try checkWrite(error)
    }

    func delete(_ family: OpaquePointer, _ key: [UInt8], synced: Bool = true) throws(StorageError) {
        try engine.fault.check()
        var error: UnsafeMutablePointer<CChar>?
        key.withUnsafeBytes { key in
            rocksdb_delete_cf(db, synced ? writeOptions : unsyncedWriteOptions, family, key.cChars, key.count, &error)
        }
        try checkWrite(error)
    }

    /// Hands each (key, value) of `family` whose key starts with `prefix` to `body`, in key order, until
    /// `body` answers false; from `start` on when given (a key that starts with `prefix`), and before
    /// `limit` when given (exclusive). The buffers are valid only during the call.
    ///
    /// A `data` family's memtable overwrites a record in place when the new one is no longer
    /// (`RocksDBEngine`, `inplace_update_support`), and an iterator reads it without RocksDB's lock,
    /// so a scan of `data` while writes run passes `stripes`: each value is then copied out under the
    /// stripe of its key's segment, which every writer of that key holds, and `body` never sees half
    /// of a record being overwritten. A scan whose caller holds every stripe, or that runs before
    /// any write can, passes none.
    func scan(
        _ family: OpaquePointer,
        prefix: [UInt8],
        from start: [UInt8]? = nil,
        until limit: [UInt8]? = nil,
        copyingValuesUnder stripes: LockStripes? = nil,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws(StorageError) -> Bool
    ) throws(StorageError) {
        // The upper bound lets RocksDB stop at the end of the prefix instead of stepping over the
        // deleted entries that follow it, such as the next target's hints. RocksDB keeps a pointer to
        // the bound's bytes without copying them, so they live in a buffer of our own until the
        // iterator is gone (deferred actions run in reverse order).
        let upperBound = limit ?? Self.successor(of: prefix)
        let bound = UnsafeMutableRawBufferPointer.allocate(
            byteCount: max(prefix.count, limit?.count ?? 0), alignment: 1)
        defer { bound.deallocate() }
        if family == dataFamily { flushDataMemtablesIfLarge() }
        let scanOptions = rocksdb_readoptions_create()!
        defer { rocksdb_readoptions_destroy(scanOptions) }
        rocksdb_readoptions_set_verify_checksums(scanOptions, 1)
        // Every key in order, not only those of the seek key's token (the `data` families' prefix).
        rocksdb_readoptions_set_total_order_seek(scanOptions, 1)
        if let successor = upperBound {
            bound.copyBytes(from: successor)
            rocksdb_readoptions_set_iterate_upper_bound(
                scanOptions, UnsafeRawBufferPointer(bound).cChars, successor.count)
        }
        let iterator = rocksdb_create_iterator_cf(db, scanOptions, family)!
        defer { rocksdb_iter_destroy(iterator) }
        (start ?? prefix).withUnsafeBytes { seek in
            rocksdb_iter_seek(iterator, seek.cChars, seek.count)
        }
        var copied: [UInt8] = []
        while rocksdb_iter_valid(iterator) != 0 {
            var keyLength = 0
            let key = UnsafeRawBufferPointer(start: rocksdb_iter_key(iterator, &keyLength), count: keyLength)
            guard key.starts(with: prefix) else { break }
            func value() -> UnsafeRawBufferPointer {
                var valueLength = 0
                return UnsafeRawBufferPointer(start: rocksdb_iter_value(iterator, &valueLength), count: valueLength)
            }
            // A key too short to hold a token is the caller's corruption to report.
            guard let stripes, key.count >= 8 else {
                guard try body(key, value()) else { break }
                rocksdb_iter_next(iterator)
                continue
            }
            let segment = MerkleSegments.segment(of: Token(StorageBytes.bigEndian(key, at: 0)))
            stripes.withLock(forSegment: segment) {
                copied.removeAll(keepingCapacity: true)
                copied.append(contentsOf: value())
            }
            let more = copied.withUnsafeBytes { value in
                Result { () throws(StorageError) -> Bool in try body(key, value) }
            }
            guard try more.get() else { break }
            rocksdb_iter_next(iterator)
        }
        var error: UnsafeMutablePointer<CChar>?
        rocksdb_iter_get_error(iterator, &error)
        try check(error)
    }

    /// Entries of this keyspace's `data` memtables above which a scan of `data` flushes them first.
    package static let scanMemtableEntriesMax: UInt64 = 4096

    /// Flushes this keyspace's `data` memtables when they hold more than `scanMemtableEntriesMax`
    /// entries. An iterator over a hash memtable (`RocksDBEngine`) first sorts every entry into a list
    /// of its own, and a stream of a range opens one a page: over 100,000 entries, a page took 150 ms
    /// instead of 2. After the flush, an iterator sorts only what was written since. A flush that
    /// fails (a full disk) leaves the scan as it was, slower but whole; the writes report the error.
    private func flushDataMemtablesIfLarge() {
        var active: UInt64 = 0
        var immutable: UInt64 = 0
        rocksdb_property_int_cf(db, dataFamily, "rocksdb.num-entries-active-mem-table", &active)
        rocksdb_property_int_cf(db, dataFamily, "rocksdb.num-entries-imm-mem-tables", &immutable)
        guard active &+ immutable > Self.scanMemtableEntriesMax, engine.fault.failure == nil else { return }
        try? Self.flush(db, [dataFamily], directory: directory)
    }

    /// The smallest byte string greater than every string starting with `prefix`; `nil` when there
    /// is none (empty or all `0xFF`).
    static func successor(of prefix: [UInt8]) -> [UInt8]? {
        var bytes = prefix
        while let last = bytes.last {
            if last < 0xFF {
                bytes[bytes.count - 1] = last + 1
                return bytes
            }
            bytes.removeLast()
        }
        return nil
    }

    /// Writes what `build` puts in a batch atomically, with the store's durability (or `options`).
    func writeBatch(options: OpaquePointer? = nil, _ build: (OpaquePointer) -> Void) throws(StorageError) {
        try engine.fault.check()
        try checkWrite(write(options: options ?? writeOptions, build))
    }

    /// `writeBatch` that never waits (`RocksDBEngine.nonblockingWriteOptions`): false, with nothing
    /// written, when RocksDB would have delayed the write (a write stall).
    func writeBatchIfNotStalled(_ build: (OpaquePointer) -> Void) throws(StorageError) -> Bool {
        try engine.fault.check()
        let error = write(options: engine.nonblockingWriteOptions, build)
        if Self.isIncomplete(error) { return false }
        try checkWrite(error)
        return true
    }

    private func write(options: OpaquePointer, _ build: (OpaquePointer) -> Void) -> UnsafeMutablePointer<CChar>? {
        let batch = rocksdb_writebatch_create()!
        defer { rocksdb_writebatch_destroy(batch) }
        build(batch)
        var error: UnsafeMutablePointer<CChar>?
        rocksdb_write(db, options, batch, &error)
        return error
    }

    /// Whether `error` is RocksDB's `Incomplete` (then freed): a read that needed a file under
    /// `kBlockCacheTier`, or a write that would have stalled under `no_slowdown`.
    static func isIncomplete(_ error: UnsafeMutablePointer<CChar>?) -> Bool {
        guard let error, strncmp(error, incompletePrefix, incompletePrefix.utf8.count) == 0 else { return false }
        rocksdb_free(error)
        return true
    }

    static func put(_ batch: OpaquePointer, _ family: OpaquePointer, _ key: [UInt8], _ value: [UInt8]) {
        key.withUnsafeBytes { key in value.withUnsafeBytes { value in put(batch, family, key, value) } }
    }

    /// `put` of bytes composed in a temporary buffer (the Merkle segments a write changes).
    static func put(
        _ batch: OpaquePointer, _ family: OpaquePointer, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer
    ) {
        rocksdb_writebatch_put_cf(batch, family, key.cChars, key.count, value.cChars, value.count)
    }

    /// `put` of `record` under `key`, encoded in a temporary buffer (`RecordCodec.withEncoded`).
    static func put(_ batch: OpaquePointer, _ family: OpaquePointer, _ key: [UInt8], record: StoredRecord) {
        key.withUnsafeBytes { key in RecordCodec.withEncoded(record) { put(batch, family, key, $0) } }
    }

    static func delete(_ batch: OpaquePointer, _ family: OpaquePointer, _ key: [UInt8]) {
        key.withUnsafeBytes { key in delete(batch, family, key) }
    }

    static func delete(_ batch: OpaquePointer, _ family: OpaquePointer, _ key: UnsafeRawBufferPointer) {
        rocksdb_writebatch_delete_cf(batch, family, key.cChars, key.count)
    }

    /// Adds to `batch` the delete of every key of `family` that starts with `prefix` (nothing when no
    /// key is past them all: `prefix` empty or all `0xFF`).
    static func deleteRange(_ batch: OpaquePointer, _ family: OpaquePointer, prefix: [UInt8]) {
        guard let end = successor(of: prefix) else { return }
        prefix.withUnsafeBytes { start in
            end.withUnsafeBytes { end in
                rocksdb_writebatch_delete_range_cf(batch, family, start.cChars, start.count, end.cChars, end.count)
            }
        }
    }

    /// Opens the RocksDB folder `directory` with the column families `names`, every one with
    /// `options`; read-only when asked (a subset of the folder's families is then allowed). On failure
    /// `options` is destroyed, and the error names the folder.
    static func open(
        _ directory: String, options: OpaquePointer, families names: [String],
        familyOptions perFamily: [OpaquePointer]? = nil, readOnly: Bool = false
    ) throws(StorageError) -> (db: OpaquePointer, families: [OpaquePointer]) {
        var handles = [OpaquePointer?](repeating: nil, count: names.count)
        var error: UnsafeMutablePointer<CChar>?
        let cNames = names.map { strdup($0) }
        defer { cNames.forEach { free($0) } }
        // Each family's own options where given (one per name), else the database's.
        let familyOptions: [OpaquePointer?] = perFamily ?? Array(repeating: options, count: names.count)
        precondition(familyOptions.count == names.count, "one options per family")
        let opened = cNames.map { UnsafePointer($0) }.withUnsafeBufferPointer { cNames in
            readOnly
                ? rocksdb_open_for_read_only_column_families(
                    options, directory, Int32(cNames.count), cNames.baseAddress, familyOptions, &handles, 0, &error)
                : rocksdb_open_column_families(
                    options, directory, Int32(cNames.count), cNames.baseAddress, familyOptions, &handles, &error)
        }
        if let message = takeMessage(error) {
            if let opened { rocksdb_close(opened) }
            rocksdb_options_destroy(options)
            throw openError(message, path: directory)
        }
        guard let opened else {
            rocksdb_options_destroy(options)
            throw .openFailed(path: directory, reason: "RocksDB returned no database and no error")
        }
        return (opened, handles.map { $0! })
    }

    /// Writes the memtables of `families` to table files and waits for it.
    static func flush(_ db: OpaquePointer, _ families: [OpaquePointer], directory: String) throws(StorageError) {
        let flushOptions = rocksdb_flushoptions_create()!
        defer { rocksdb_flushoptions_destroy(flushOptions) }
        rocksdb_flushoptions_set_wait(flushOptions, 1)
        for family in families {
            var error: UnsafeMutablePointer<CChar>?
            rocksdb_flush_cf(db, flushOptions, family, &error)
            if let message = takeMessage(error) { throw StorageError.fromRocksDB(message, path: directory) }
        }
    }

    func check(_ error: UnsafeMutablePointer<CChar>?) throws(StorageError) {
        if let message = Self.takeMessage(error) {
            throw StorageError.fromRocksDB(message, path: directory)
        }
    }

    /// `check` of the answer to a write (or a flush, a checkpoint: anything that writes RocksDB's log
    /// or files): a failure of the disk is kept (`StorageFault`), and no write reaches RocksDB after it.
    func checkWrite(_ error: UnsafeMutablePointer<CChar>?) throws(StorageError) {
        if let message = Self.takeMessage(error) {
            throw engine.fault.record(StorageError.fromRocksDB(message, path: directory))
        }
    }

    /// Copies and frees a RocksDB error string.
    static func takeMessage(_ error: UnsafeMutablePointer<CChar>?) -> String? {
        guard let error else { return nil }
        defer { rocksdb_free(error) }
        return String(cString: error)
    }

    package static func openError(_ message: String, path: String) -> StorageError {
        if message.contains("lock hold by current process") || message.contains("While lock file") {
            return .openFailed(
                path: path,
                reason: "the directory is already open in this or another process (LOCK is held): \(message)"
            )
        }
        let error = StorageError.fromRocksDB(message, path: path)
        return error.code == .ioError ? .openFailed(path: path, reason: message) : error
    }
}

extension UnsafeRawBufferPointer {
    /// The bytes as the `const char*` RocksDB takes.
    var cChars: UnsafePointer<CChar>? {
        baseAddress?.assumingMemoryBound(to: CChar.self)
    }
}
