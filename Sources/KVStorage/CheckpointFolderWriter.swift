import CRocksDB
import Foundation

/// Writes a new RocksDB folder of `RocksDBStore`'s checkpoint layout (`default`, `data`, `hints`,
/// `meta`, and `data.<id>` for each other keyspace it is given) record by record: an incremental
/// backup's checkpoint, which `RocksDBCheckpointReader` opens as it opens a full one. Without a write-ahead log: `finish()` flushes everything into table
/// files, and a folder not finished is never listed (its checkpoint is not made).
///
/// One caller at a time.
final class CheckpointFolderWriter {
    enum Family: Hashable {
        /// Keyspace `id`'s `data` (`data` for 0, `data.<id>` otherwise).
        case data(UInt32)
        case hints
    }

    let directory: String
    private let db: OpaquePointer
    private let options: OpaquePointer
    private let writeOptions: OpaquePointer
    private let families: [OpaquePointer]
    /// Each family's index in `families`.
    private let indices: [Family: Int]
    private var closed = false

    /// Creates the folder (which must not exist) and its column families: the base ones and the
    /// `data` family of each of `keyspaces` (0, the default, is always there).
    init(directory: String, keyspaces: [UInt32] = []) throws(StorageError) {
        self.directory = directory
        let options = rocksdb_options_create()!
        rocksdb_options_set_create_if_missing(options, 1)
        rocksdb_options_set_create_missing_column_families(options, 1)
        rocksdb_options_set_error_if_exists(options, 1)
        let others = Array(Set(keyspaces.filter { $0 != 0 })).sorted()
        let names = RocksDBStore.checkpointFamilyNames + others.map { RocksDBEngine.dataFamilyName($0) }
        var indices: [Family: Int] = [.data(0): 1, .hints: 2]
        for (offset, id) in others.enumerated() {
            indices[.data(id)] = RocksDBStore.checkpointFamilyNames.count + offset
        }
        self.indices = indices
        let (opened, handles) = try RocksDBStore.open(directory, options: options, families: names)
        let writeOptions = rocksdb_writeoptions_create()!
        rocksdb_writeoptions_disable_WAL(writeOptions, 1)
        self.db = opened
        self.options = options
        self.writeOptions = writeOptions
        self.families = handles
    }

    deinit {
        close()
    }

    /// Writes one entry, stored bytes as they are.
    func put(_ key: [UInt8], _ value: UnsafeRawBufferPointer, family: Family) throws(StorageError) {
        guard let index = indices[family] else {
            preconditionFailure("\(family) is not a family of the checkpoint folder")
        }
        var error: UnsafeMutablePointer<CChar>?
        key.withUnsafeBytes { key in
            rocksdb_put_cf(
                db, writeOptions, families[index], key.cChars, key.count, value.cChars, value.count, &error)
        }
        try check(error)
    }

    func put(_ key: [UInt8], _ value: [UInt8], family: Family) throws(StorageError) {
        var failure: StorageError?
        value.withUnsafeBytes { value in
            do throws(StorageError) { try put(key, value, family: family) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Flushes every family into table files, waits for it and closes the folder; then removes what
    /// nobody reads and would be most of a small folder's bytes: RocksDB's informational logs (`LOG`,
    /// `LOG.old.*`), its records of the options used (`OPTIONS-*`, 20 KB each: a restore opens the
    /// folder with options of its own), and the `LOCK` file.
    func finish() throws(StorageError) {
        try RocksDBStore.flush(db, families, directory: directory)
        close()
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        where name == "LOG" || name.hasPrefix("LOG.old.") || name.hasPrefix("OPTIONS-") || name == "LOCK" {
            try? FileManager.default.removeItem(atPath: "\(directory)/\(name)")
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        families.forEach { rocksdb_column_family_handle_destroy($0) }
        rocksdb_close(db)
        rocksdb_writeoptions_destroy(writeOptions)
        rocksdb_options_destroy(options)
    }

    private func check(_ error: UnsafeMutablePointer<CChar>?) throws(StorageError) {
        if let message = RocksDBStore.takeMessage(error) {
            throw StorageError.fromRocksDB(message, path: directory)
        }
    }
}
