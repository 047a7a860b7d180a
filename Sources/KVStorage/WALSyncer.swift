import CRocksDB
import Foundation

/// The thread that fsyncs RocksDB's write-ahead log for the writes that do not fsync it themselves:
///
/// - `Durability.interval` (`.every`): every interval, until stopped. A failed sync is not reported
///   here: RocksDB records a failed WAL sync as a background error and refuses the following writes,
///   so callers learn of it on their next `apply`.
/// - `Durability.sync` (`.whenAsked`), for the writes an event loop makes without waiting
///   (`RocksDBStore.applyWithoutBlocking`): such a write goes to the log unsynced, and its caller asks
///   `whenDurable` to hear once the log is fsynced past it. The thread fsyncs for every caller waiting
///   (RocksDB's `FlushWAL(sync: true)`), then tells them; callers arriving meanwhile wait for the next
///   fsync, which starts as soon as this one ends. While writes arrive the fsyncs follow each other
///   back to back, and the event loops write the next batches during each one; a write that fsyncs
///   itself (`sync` write options) made the next batch wait for its fsync, and its fsync for the
///   batch's CPU work.
/// - `Durability.sync` with `WALSyncMode.caller` (`.onCaller`): no thread; `whenDurable` fsyncs on
///   the calling thread, the event loop that wrote the batch, and calls back before it returns, as
///   Redis fsyncs its log on its one thread before it answers. With one event loop this spares the
///   two thread wake-ups of each fsync's round trip through the thread (docs/benchmarks.md, "The
///   fsync on the event loop"); the loop reads nothing meanwhile.
final class WALSyncer: @unchecked Sendable {
    // @unchecked: `db` is only used by the thread or, `.onCaller`, by the callers counted in
    // `callersSyncing`, which `stop()` waits for before the owner frees it; everything else is
    // guarded by `condition`.
    enum Schedule {
        case every(TimeInterval)
        case whenAsked
        case onCaller
    }

    typealias Completion = @Sendable (StorageError?) -> Void

    private let db: OpaquePointer
    private let schedule: Schedule
    /// Where a failed fsync is kept, and after which none is tried.
    private let fault: StorageFault
    private let condition = NSCondition()
    private var waiting: [Completion] = []
    private var stopRequested = false
    private var finished = false
    /// Tests: no fsync asked for starts while true (`RocksDBStore.holdWALSyncsForTesting`).
    private var held = false
    /// The fsyncs made so far (tests).
    private var syncs = 0
    /// `.onCaller`: the callers fsyncing now; `stop()` waits for them.
    private var callersSyncing = 0

    init(db: OpaquePointer, schedule: Schedule, fault: StorageFault) {
        self.db = db
        self.schedule = schedule
        self.fault = fault
        if case .onCaller = schedule { return }
        let thread = Thread { [self] in run() }
        thread.name = "quorumkv-wal-sync"
        thread.start()
    }

    /// Calls `completion` once every write that returned before this call is fsynced, on the syncer's
    /// thread (`.whenAsked`) or on the calling thread before returning (`.onCaller`): with nil, or with
    /// the fsync's error (the writes are then in the store, not durable). With `.closed` at once when
    /// the syncer is stopped.
    func whenDurable(_ completion: @escaping Completion) {
        condition.lock()
        guard !finished else {
            condition.unlock()
            completion(.closed)
            return
        }
        if case .onCaller = schedule {
            callersSyncing += 1
            condition.unlock()
            let failure = syncLog()
            condition.lock()
            syncs += 1
            callersSyncing -= 1
            if callersSyncing == 0 { condition.broadcast() }
            condition.unlock()
            completion(failure)
            return
        }
        waiting.append(completion)
        condition.broadcast()
        condition.unlock()
    }

    private func run() {
        condition.lock()
        while true {
            switch schedule {
            case .every(let interval):
                // A stop asked for before this thread first waits (it starts late on a busy
                // machine) must not wait out the interval: its broadcast came before the wait.
                if !stopRequested {
                    _ = condition.wait(until: Date(timeIntervalSinceNow: interval))
                }
            case .whenAsked:
                while (waiting.isEmpty || held) && !stopRequested {
                    condition.wait()
                }
            case .onCaller:
                preconditionFailure("no thread runs for a syncer that fsyncs on its callers")
            }
            // Stopping: what waits is still synced and told.
            if stopRequested && waiting.isEmpty { break }
            let asked = waiting
            waiting = []
            condition.unlock()
            let failure = syncLog()
            // Counted before the callers hear of it: one told its write is durable sees the fsync counted.
            condition.lock()
            syncs += 1
            condition.unlock()
            for completion in asked { completion(failure) }
            condition.lock()
        }
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    /// Writes out and fsyncs the log (RocksDB's `FlushWAL(sync: true)`); the error if that failed, or
    /// if an earlier write or fsync did (`StorageFault`: the log writer keeps its error, and RocksDB
    /// would abort on it).
    private func syncLog() -> StorageError? {
        do throws(StorageError) { try fault.check() } catch { return error }
        var error: UnsafeMutablePointer<CChar>?
        rocksdb_flush_wal(db, 1, &error)
        return RocksDBStore.takeMessage(error).map { fault.record(StorageError.fromRocksDB($0, path: fault.path)) }
    }

    /// Syncs for and tells the callers still waiting, stops the thread, and waits until it no longer
    /// touches the database; `.onCaller`: refuses new callers and waits for those fsyncing.
    func stop() {
        condition.lock()
        if case .onCaller = schedule {
            finished = true
            while callersSyncing > 0 {
                condition.wait()
            }
            condition.unlock()
            return
        }
        stopRequested = true
        condition.broadcast()
        while !finished {
            condition.wait()
        }
        condition.unlock()
    }

    /// Tests: holds (or lets go of) the fsyncs asked for; `.onCaller` holds none (false).
    func hold(_ hold: Bool) -> Bool {
        if case .onCaller = schedule { return false }
        condition.lock()
        held = hold
        condition.broadcast()
        condition.unlock()
        return true
    }

    /// Tests: the callers waiting for the next fsync (`.whenAsked`).
    var waitingCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return waiting.count
    }

    /// Tests: the fsyncs made so far.
    var syncCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return syncs
    }
}
