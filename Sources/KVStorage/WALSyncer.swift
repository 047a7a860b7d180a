import CRocksDB
import Foundation

/// The background thread of `Durability.interval`: fsyncs RocksDB's write-ahead log every interval
/// until stopped.
///
/// A failed sync is not reported here: RocksDB records a failed WAL sync as a background error and
/// refuses the following writes, so callers learn of it on their next `apply`.
final class WALSyncer: @unchecked Sendable {
    // @unchecked: `db` is only used by the thread, which `stop()` waits for before the owner frees
    // it; the flags are guarded by `condition`.
    private let db: OpaquePointer
    private let interval: TimeInterval
    private let condition = NSCondition()
    private var stopRequested = false
    private var finished = false

    init(db: OpaquePointer, interval: TimeInterval, path: String) {
        self.db = db
        self.interval = interval
        let thread = Thread { [self] in run() }
        thread.name = "quorumkv-wal-sync"
        thread.start()
    }

    private func run() {
        condition.lock()
        while !stopRequested {
            _ = condition.wait(until: Date(timeIntervalSinceNow: interval))
            if stopRequested { break }
            condition.unlock()
            var error: UnsafeMutablePointer<CChar>?
            rocksdb_flush_wal(db, 1, &error)
            _ = RocksDBStore.takeMessage(error)
            condition.lock()
        }
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    /// Stops the thread and waits until it no longer touches the database.
    func stop() {
        condition.lock()
        stopRequested = true
        condition.broadcast()
        while !finished {
            condition.wait()
        }
        condition.unlock()
    }
}
