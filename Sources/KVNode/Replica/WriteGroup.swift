import KVCore
import KVStorage
import NIOCore
import NIOPosix
import Synchronization

/// Group commit for one keyspace's replica, in one lane (`WriteGroups`: the puts one event loop
/// read, or those from other threads): the writes that arrive while a batch is being written
/// wait together and go as the next batch (`GroupCommitQueue`), one RocksDB write batch
/// (`Replica.put(_:setting:)`), so one fsync and one thread hop answer them all, up to `batchMax`
/// writes. A record's outcome is what it would have been written alone in arrival order: a
/// batch compares each record with what an earlier record of the same key in it wrote. Lanes write
/// at the same time; the store's lock stripes order the writes of one key.
///
/// The writer is a pool thread, or, when the store can write without waiting
/// (`Replica.putsWithoutBlocking`) and the write that starts it was handed over on an event loop,
/// that event loop: a task queued behind the loop's current read burst writes what the burst brought
/// (one batch per tick, no thread hop), with `Replica.putWithoutBlocking`, and answers once the
/// batch is durable (`Replica.whenDurable`: with `sync`, after the WAL syncer's next fsync, or, with
/// `WALSyncMode.caller`, after the loop's own fsync of it). What
/// that cannot write without waiting (a current version only on disk, a stripe another writer holds,
/// a write stall) or refuses goes to a pool thread as before, in order.
final class WriteGroup: Sendable {
    /// The records of one batch at most: bounds the time the segments' stripes are held.
    static let batchMax = 512

    typealias Answer = (outcome: ApplyOutcome, clock: UInt64)

    /// What a write's caller is told, on the pool thread that wrote it.
    typealias Completion = @Sendable (Result<Answer, any Error>) -> Void

    private struct Waiting {
        let record: StreamedRecord
        let completion: Completion
    }

    let replica: Replica
    private let pool: NIOThreadPool
    private let state = Mutex(GroupCommitQueue<Waiting>())
    /// Counts each batch (on the pool as it is written, on a loop once it was), with whether an event
    /// loop wrote it.
    private let countBatch: @Sendable (_ onEventLoop: Bool) -> Void

    init(
        replica: Replica, pool: NIOThreadPool, countBatch: @escaping @Sendable (_ onEventLoop: Bool) -> Void = { _ in }
    ) {
        self.replica = replica
        self.pool = pool
        self.countBatch = countBatch
    }

    /// Writes `record` of `key` in the next batch, then calls `completion` (on the pool thread that
    /// wrote it) with its outcome, or with the `ReplicaError` its write gave (a batch that fails is
    /// written again one record at a time, so one record's refusal fails only its own write), or
    /// `CancellationError` when the pool is shutting down.
    func put(key: [UInt8], record: StoredRecord, completion: @escaping Completion) {
        let starts = state.withLock {
            $0.enqueue(Waiting(record: StreamedRecord(key: key, record: record), completion: completion))
        }
        if starts {
            startWriter(on: MultiThreadedEventLoopGroup.currentEventLoop)
        }
    }

    /// Starts the writer on `loop` when it may write there, else on a pool thread.
    private func startWriter(on loop: (any EventLoop)?) {
        if let loop, replica.putsWithoutBlocking {
            loop.execute { self.writeOnLoop(loop) }
        } else {
            pool.submit { work in self.writeWhileWaiting(work) }
        }
    }

    /// Writes one batch on `loop` without blocking, then yields to the loop's I/O before the next; hands
    /// the batch (back at the head of the queue) and what follows it to a pool thread when it cannot.
    private func writeOnLoop(_ loop: any EventLoop) {
        guard let batch = nextBatch() else { return }
        let written = try? replica.putWithoutBlocking(batch.map(\.record))
        guard let (outcomes, clock) = written ?? nil else {
            state.withLock { $0.requeue(batch) }
            pool.submit { work in self.writeWhileWaiting(work) }
            return
        }
        countBatch(true)
        // With `sync` the batch is in the log, not yet fsynced: answered after the WAL syncer's
        // fsync, back on this loop, while the loop writes the next batches; or, with the fsyncs on
        // their callers, here, after this loop's fsync.
        replica.whenDurable { error in
            let answer = { @Sendable in
                for (waiting, outcome) in zip(batch, outcomes) {
                    waiting.completion(error.map { .failure($0) } ?? .success((outcome, clock)))
                }
            }
            if loop.inEventLoop { answer() } else { loop.execute(answer) }
        }
        loop.execute { self.writeOnLoop(loop) }
    }

    /// The next batch to write, taken from the queue; nil, and the writer stopped, when nobody waits.
    private func nextBatch() -> [Waiting]? {
        state.withLock { $0.nextBatch(max: Self.batchMax) }
    }

    /// Runs `body`, which hands over several writes (`put`), and starts the writer only after it: the
    /// writes go in one batch even when a pool thread would have written the first alone before the
    /// second arrived (a `PutBatch`'s writes).
    func holding<T>(_ body: () -> T) -> T {
        state.withLock { $0.hold() }
        let result = body()
        let starts = state.withLock { $0.release() }
        if starts {
            startWriter(on: MultiThreadedEventLoopGroup.currentEventLoop)
        }
        return result
    }

    /// Writes batches until nobody waits (on a pool thread).
    private func writeWhileWaiting(_ work: NIOThreadPool.WorkItemState) {
        while let batch = nextBatch() {
            guard case .active = work else {
                for waiting in batch { waiting.completion(.failure(CancellationError())) }
                continue
            }
            write(batch)
        }
    }

    private func write(_ batch: [Waiting]) {
        countBatch(false)
        do throws(ReplicaError) {
            let (outcomes, clock) = try replica.put(batch.map(\.record))
            for (waiting, outcome) in zip(batch, outcomes) {
                waiting.completion(.success((outcome, clock)))
            }
        } catch {
            guard batch.count > 1 else {
                batch[0].completion(.failure(error))
                return
            }
            // One record may be the cause (a clock too far ahead, a value too large): each alone.
            for waiting in batch {
                waiting.completion(
                    Result { () throws(ReplicaError) -> Answer in
                        try replica.put(key: waiting.record.key, record: waiting.record.record)
                    }.mapError { $0 as any Error })
            }
        }
    }
}

/// The write groups of each keyspace's replica: one per event loop (a lane), and one for the writes
/// handed over elsewhere (a pool thread, a task), each created at its first write.
///
/// A lane per loop lets each loop write the puts it read, on itself, while the other loops do the
/// same. With one group per keyspace, the loop whose writer ran wrote every loop's puts and woke each
/// other loop to answer its own: the loops took turns, and one node under puts kept its two loops
/// about half busy (docs/benchmarks.md, "A write lane per event loop"). With `sync` the lanes'
/// batches share the WAL syncer's fsyncs (`Replica.whenDurable`); a store that cannot write
/// without waiting keeps one group per keyspace, written by the pool.
final class WriteGroups: Sendable {
    /// A keyspace's lane: the event loop whose puts it writes; nil for puts from other threads, and
    /// for every put to a store that cannot write without waiting.
    private struct Lane: Hashable {
        let keyspace: UInt32
        let loop: ObjectIdentifier?
    }

    private let pool: NIOThreadPool
    private let groups = Mutex<[Lane: WriteGroup]>([:])
    /// Counts the batches every group writes (`quorumkv_write_batches_total{writer}`).
    private let statistics: NodeStatistics

    init(pool: NIOThreadPool, statistics: NodeStatistics) {
        self.pool = pool
        self.statistics = statistics
    }

    /// Keyspaces with a group (for tests).
    var keyspaces: Set<UInt32> { groups.withLock { Set($0.keys.map(\.keyspace)) } }

    /// Drops the groups of `keyspaces`; a write still in one finishes (its caller holds the group).
    func forget(_ keyspaces: [UInt32]) {
        let forgotten = Set(keyspaces)
        groups.withLock { groups in groups = groups.filter { !forgotten.contains($0.key.keyspace) } }
    }

    /// The group writing to `replica`, keyspace `keyspace`'s, in the calling thread's lane (a new one
    /// when the keyspace's replica changed: dropped and served again).
    func group(keyspace: UInt32, replica: Replica) -> WriteGroup {
        let loop = replica.putsWithoutBlocking ? MultiThreadedEventLoopGroup.currentEventLoop : nil
        let lane = Lane(keyspace: keyspace, loop: loop.map(ObjectIdentifier.init))
        return groups.withLock { groups in
            if let group = groups[lane], group.replica === replica { return group }
            let statistics = self.statistics
            let group = WriteGroup(replica: replica, pool: pool) { onEventLoop in
                (onEventLoop ? statistics.writeBatchesOnEventLoop : statistics.writeBatchesOnPool)
                    .add(1, ordering: .relaxed)
            }
            groups[lane] = group
            return group
        }
    }
}
