import CRocksDB
import Foundation

extension RocksDBStore {
    /// Where the store keeps its checkpoints: inside its own folder, so that the hard links are on
    /// the same file system (RocksDB ignores folders it did not make).
    static func checkpointsDirectory(of directory: String) -> String {
        "\(directory)/checkpoints"
    }

    /// Takes a RocksDB checkpoint of every column family (every keyspace's `data` and `versions`,
    /// `hints`, `meta`) as checkpoint `id`
    /// under `checkpoints.directory`, without pausing writes: the memtables are flushed, table files
    /// are hard-linked, the rest (manifest, options, write-ahead log) copied. The folder opens as a
    /// `RocksDBStore` holding what the store held at that moment.
    ///
    /// - Parameter hash: the SHA-256 of a file's bytes, given its path (computed once per table file).
    /// - Returns: the checkpoint and its files; the one already held when `id` is held.
    public func createCheckpoint(id: String, hash: (String) throws -> [UInt8]) throws(CheckpointError) -> Checkpoint {
        try checkpoints.create(
            id: id,
            make: { (path) throws(StorageError) in
                try engine.withOpenHandles(view: nil) { () throws(StorageError) in
                    // A checkpoint flushes the memtables, which writes the log.
                    try engine.fault.check()
                    var error: UnsafeMutablePointer<CChar>?
                    let checkpoint = rocksdb_checkpoint_object_create(db, &error)
                    try check(error)
                    guard let checkpoint else { throw .ioError("RocksDB made no checkpoint object", path: path) }
                    defer { rocksdb_checkpoint_object_destroy(checkpoint) }
                    // 0: always flush the memtables first, so the data is in table files (hard links,
                    // shared with later backups) rather than in a copied log.
                    rocksdb_checkpoint_create(checkpoint, path, 0, &error)
                    try checkWrite(error)
                }
            }, hash: hash)
    }
}
