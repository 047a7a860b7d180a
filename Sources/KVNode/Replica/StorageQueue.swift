package import KVCore
import KVRPC
import KVWire
package import NIOPosix
import Synchronization

/// The bounded queue in front of the storage thread pool, through which every request's store call
/// goes (`ReplicaService`): a job waits there for one of the pool's threads, and past `jobsMax` jobs
/// waiting or running, a request is answered `overloaded` at once (counted as `queue_full`) rather
/// than queued without bound, so a flood of requests costs memory no longer than the bound.
///
/// The node's own background work (hint replay, anti-entropy, range transfers) runs on the same pool
/// but not through this queue: each of those is throttled and bounded by itself.
package final class StorageQueue: Sendable {
    private let pool: NIOThreadPool
    private let jobsMax: Int
    private let jobs = Atomic<Int>(0)
    private let statistics: NodeStatistics
    /// Each keyspace's group commit, which single writes go through (`put(_:key:record:)`).
    private let writeGroups: WriteGroups

    /// - Parameters:
    ///   - jobsMax: jobs waiting or running at once; at least 1.
    ///   - statistics: counts each refusal (`queue_full`) and each batch the group commits write.
    package init(pool: NIOThreadPool, jobsMax: Int = Limits.storageQueueMax, statistics: NodeStatistics) {
        precondition(jobsMax >= 1, "the storage queue must hold at least one job")
        self.pool = pool
        self.jobsMax = jobsMax
        self.statistics = statistics
        self.writeGroups = WriteGroups(pool: pool, statistics: statistics)
    }

    /// Jobs waiting or running now.
    package var count: Int { jobs.load(ordering: .relaxed) }

    /// Store writes the group commits made so far (each one batch of single writes).
    package var writeBatches: Int { writeBatchesOnEventLoop + statistics.writeBatchesOnPool.load(ordering: .relaxed) }

    /// Those of `writeBatches` an event loop wrote (`WriteGroup`: no fsync of their own, nothing to wait for).
    package var writeBatchesOnEventLoop: Int { statistics.writeBatchesOnEventLoop.load(ordering: .relaxed) }

    /// Runs `body` on the pool once a thread is free.
    ///
    /// - Throws: `RPCError.remote(.overloaded)` at once when `jobsMax` jobs are queued or running;
    ///   `CancellationError` when the pool is shutting down or the task was cancelled while waiting;
    ///   whatever `body` throws.
    package func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await counted { try await pool.runIfActive(body) }
    }

    /// Writes `record` of `key` to `replica` (keyspace `keyspace`'s) in its group commit
    /// (`WriteGroup`): with the writes that wait beside it, in one store write on the pool. Counted
    /// as a job while it waits, as `run` is.
    ///
    /// - Throws: as `run`, and the `ReplicaError` of the write.
    package func put(
        key: [UInt8], record: StoredRecord, to replica: Replica, keyspace: UInt32
    ) async throws -> (outcome: ApplyOutcome, clock: UInt64) {
        try await withCheckedThrowingContinuation { continuation in
            put(key: key, record: record, to: replica, keyspace: keyspace) { continuation.resume(with: $0) }
        }
    }

    /// `put(key:record:to:keyspace:)` without a task: `completion` is called once, on the thread that
    /// wrote the record (a pool thread, or the caller's event loop: `WriteGroup`), or at once when the
    /// queue is full.
    package func put(
        key: [UInt8], record: StoredRecord, to replica: Replica, keyspace: UInt32,
        completion: @escaping @Sendable (Result<(outcome: ApplyOutcome, clock: UInt64), any Error>) -> Void
    ) {
        do {
            try take()
        } catch {
            completion(.failure(error))
            return
        }
        writeGroups.group(keyspace: keyspace, replica: replica).put(key: key, record: record) { result in
            self.jobs.subtract(1, ordering: .relaxed)
            completion(result)
        }
    }

    /// Admits `offer` in `group`'s next batch (`HintGroup`: one store write for the hints that wait
    /// together). Counted as a job while it waits, as `run` is: `completion` is called once, on the
    /// pool thread that stored it, or at once when the queue is full.
    func admit(
        _ offer: HintAdmission.Offer, in group: HintGroup,
        completion: @escaping @Sendable (Result<HintAdmission.Admitted, any Error>) -> Void
    ) {
        do {
            try take()
        } catch {
            completion(.failure(error))
            return
        }
        group.admit(offer) { result in
            self.jobs.subtract(1, ordering: .relaxed)
            completion(result)
        }
    }

    /// Lets go of the write groups of `keyspaces` (dropped: their replicas and stores are gone).
    package func forget(keyspaces: [UInt32]) {
        writeGroups.forget(keyspaces)
    }

    /// The keyspaces with a write group (for tests).
    package var writeGroupKeyspaces: Set<UInt32> { writeGroups.keyspaces }

    /// Runs `body`, whose `put`s to `replica` of `keyspace` are written together after it (a batch's).
    package func holdingWrites<T>(to replica: Replica, keyspace: UInt32, _ body: () -> T) -> T {
        writeGroups.group(keyspace: keyspace, replica: replica).holding(body)
    }

    private func counted<T>(_ body: () async throws -> T) async throws -> T {
        try take()
        defer { jobs.subtract(1, ordering: .relaxed) }
        return try await body()
    }

    /// Counts one job, unless `jobsMax` are queued or running already.
    private func take() throws(RPCError) {
        guard jobs.wrappingAdd(1, ordering: .relaxed).oldValue < jobsMax else {
            jobs.subtract(1, ordering: .relaxed)
            statistics.recordRefusal(.queueFull)
            throw RPCError.remote(
                .overloaded, message: "the node's storage queue is full (\(jobsMax) jobs): retry later or elsewhere")
        }
    }
}
