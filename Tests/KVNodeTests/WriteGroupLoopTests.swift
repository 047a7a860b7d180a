import Foundation
import KVCore
import KVNode
import KVStorage
import MetricsTestKit
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Issue 21: a write handed to the group commit on an event loop (as `ReplicaService` does with a `Put`
/// taken there) is written on that loop when the store fsyncs no write of its own: what one tick
/// brought goes as one batch, answered on the loop, with no thread hop. Otherwise, or when the loop
/// cannot write without waiting, the pool writes it, as before.
@Suite(.timeLimit(.minutes(3)))
struct WriteGroupLoopTests {
    /// What each write's completion saw.
    struct Answer: Sendable {
        var onLoop: Bool
        var outcome: ApplyOutcome?
    }

    @Test func writesOfOneTickAreOneBatchOnTheLoop() async throws {
        try await Self.withQueue(durability: .none) { queue, replica, loop in
            let answers = try await Self.put(
                (0..<40).map { (key: "k-\($0 % 10)", hlc: UInt64(100 + $0)) }, queue: queue, replica: replica,
                loop: loop)
            #expect(answers.allSatisfy { $0.onLoop }, "answered on the loop that wrote them")
            #expect(answers.allSatisfy { $0.outcome == .applied }, "each newer than the key's last")
            #expect(queue.writeBatches == 1, "one tick, one store write")
            #expect(queue.writeBatchesOnEventLoop == 1)
            for key in 0..<10 {
                #expect(try replica.store.get(key: Array("k-\(key)".utf8))?.version.hlc == UInt64(130 + key))
            }
            #expect(queue.count == 0)
        }
    }

    /// `sync`: the loop writes the batch unsynced and answers it, on the loop, only after the WAL
    /// syncer's fsync (held here until the batch is written, so no answer can come before it).
    @Test func aSyncStoreIsAnsweredAfterTheSyncersFsync() async throws {
        try await Self.withQueue(durability: .sync) { queue, replica, loop in
            let store = try #require(replica.store as? RocksDBStore)
            #expect(store.holdWALSyncsForTesting(true))
            let answers = Mutex([Answer]())
            loop.execute {
                for index in 0..<20 {
                    queue.put(key: Array("s-\(index)".utf8), record: Self.record(hlc: 100), to: replica, keyspace: 0) {
                        result in
                        let answer = Answer(onLoop: loop.inEventLoop, outcome: try? result.get().outcome)
                        answers.withLock { $0.append(answer) }
                    }
                }
            }
            try await Self.waitUntil { queue.writeBatchesOnEventLoop == 1 }
            // The loop has finished the task that wrote the batch: an answer not held back is in by now.
            try await loop.submit {}.get()
            #expect(answers.withLock { $0.isEmpty }, "no answer before the fsync")
            #expect(try replica.store.get(key: Array("s-0".utf8)) != nil, "written, in the log")
            store.holdWALSyncsForTesting(false)
            try await Self.waitUntil { answers.withLock { $0.count } == 20 }
            #expect(answers.withLock { $0.allSatisfy { $0.onLoop && $0.outcome == .applied } })
            #expect(store.walSyncCountForTesting >= 1)
            #expect(queue.writeBatches == 1)
        }
    }

    /// `sync` with `WALSyncMode.caller`: the loop writes the batch, fsyncs it itself and answers it in
    /// the same task, one fsync a batch; nothing waits for a syncer thread (none runs to be held).
    @Test func aSyncStoreFsyncingOnTheLoopAnswersAfterItsOwnFsync() async throws {
        try await Self.withQueue(durability: .sync, walSync: .caller, loops: 1) { queue, replica, loops in
            let loop = loops[0]
            let store = try #require(replica.store as? RocksDBStore)
            #expect(!store.holdWALSyncsForTesting(false), "no syncer thread to hold or let go")
            let syncsSeen = Mutex([Int]())
            let answers = try await Self.put(
                (0..<20).map { (key: "c-\($0)", hlc: 100) }, queue: queue, replica: replica, loop: loop
            ) { syncsSeen.withLock { $0.append(store.walSyncCountForTesting) } }
            #expect(answers.allSatisfy { $0.onLoop && $0.outcome == .applied })
            #expect(queue.writeBatches == 1)
            #expect(syncsSeen.withLock { $0 } == Array(repeating: 1, count: 20), "each answered after the fsync")
            #expect(store.walSyncCountForTesting == 1, "one fsync for the batch")
        }
    }

    /// A key whose current version is only on disk: the loop declines the batch, and the pool writes
    /// all of it, in order, with the same outcomes.
    @Test func aBatchTheLoopCannotWriteGoesToThePool() async throws {
        try await Self.withQueue(durability: .none) { queue, replica, loop in
            _ = try replica.put(key: Array("old".utf8), record: Self.record(hlc: 50))
            try replica.store.flush()
            // As after a restart: the store no longer remembers what it wrote.
            try #require(replica.store as? RocksDBStore).forgetHeadersForTesting()
            let answers = try await Self.put(
                [("fresh", 1), ("old", 40), ("old", 60), ("fresh", 2)], queue: queue, replica: replica, loop: loop)
            #expect(answers.allSatisfy { !$0.onLoop })
            #expect(
                answers.map(\.outcome) == [
                    .applied, .superseded(current: Version(hlc: 50, writer: 1)), .applied, .applied,
                ])
            #expect(queue.writeBatchesOnEventLoop == 0)
            #expect(try replica.store.get(key: Array("old".utf8))?.version.hlc == 60)
            #expect(try replica.store.get(key: Array("fresh".utf8))?.version.hlc == 2)
        }
    }

    /// Each event loop writes the puts it read in a lane of its own: while loop A holds its lane
    /// (as a `PutBatch` does while it hands its writes over), loop B's puts are written and answered
    /// on B. With one group for both loops, B's puts waited in A's held queue, to be written and
    /// answered by A.
    @Test func eachLoopWritesThePutsItReadInALaneOfItsOwn() async throws {
        try await Self.withQueue(durability: .none, loops: 2) { queue, replica, loops in
            let (a, b) = (loops[0], loops[1])
            let answers = Mutex([String: Answer]())
            let bAnswered = DispatchSemaphore(value: 0)
            let heldWhileBAnswered = a.makePromise(of: Bool.self)
            let put = { @Sendable (key: String, loop: any EventLoop, then: @escaping @Sendable () -> Void) in
                queue.put(key: Array(key.utf8), record: Self.record(hlc: 10), to: replica, keyspace: 0) { result in
                    answers.withLock { $0[key] = Answer(onLoop: loop.inEventLoop, outcome: try? result.get().outcome) }
                    then()
                }
            }
            a.execute {
                queue.holdingWrites(to: replica, keyspace: 0) {
                    put("a-0", a) {}
                    b.execute {
                        for index in 0..<5 {
                            put("b-\(index)", b) {
                                if answers.withLock({ $0.keys.filter { $0.hasPrefix("b-") }.count }) == 5 {
                                    bAnswered.signal()
                                }
                            }
                        }
                    }
                    heldWhileBAnswered.succeed(bAnswered.wait(timeout: .now() + 30) == .success)
                }
            }
            #expect(try await heldWhileBAnswered.futureResult.get(), "B's puts answered while A held its lane")
            try await Self.waitUntil { answers.withLock { $0.count } == 6 }
            answers.withLock { answers in
                for (key, answer) in answers {
                    #expect(answer.onLoop, "\(key) answered on the loop that read it")
                    #expect(answer.outcome == .applied, "\(key)")
                }
            }
            #expect(queue.writeBatchesOnEventLoop == 2, "one batch on each loop")
        }
    }

    /// Polls `condition` every 10 ms for at most 30 s.
    static func waitUntil(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("condition not met within 30 s")
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    static func record(hlc: UInt64) -> StoredRecord {
        StoredRecord(version: Version(hlc: hlc, writer: 1), tombstone: false, value: Array("v\(hlc)".utf8))
    }

    /// Hands `writes` to `queue` from one task on `loop` (one tick), and waits for every answer.
    static func put(
        _ writes: [(key: String, hlc: UInt64)], queue: StorageQueue, replica: Replica, loop: any EventLoop,
        onAnswer: @escaping @Sendable () -> Void = {}
    ) async throws -> [Answer] {
        let answers = Mutex([Int: Answer]())
        let done = loop.makePromise(of: Void.self)
        loop.execute {
            for (index, write) in writes.enumerated() {
                queue.put(key: Array(write.key.utf8), record: record(hlc: write.hlc), to: replica, keyspace: 0) {
                    result in
                    let answer = Answer(onLoop: loop.inEventLoop, outcome: try? result.get().outcome)
                    onAnswer()
                    let all = answers.withLock {
                        $0[index] = answer
                        return $0.count == writes.count
                    }
                    if all { done.succeed() }
                }
            }
        }
        try await done.futureResult.get()
        return answers.withLock { answers in (0..<writes.count).map { answers[$0]! } }
    }

    static func withQueue(
        durability: Durability,
        _ body: (StorageQueue, Replica, any EventLoop) async throws -> Void
    ) async throws {
        try await withQueue(durability: durability, loops: 1) { queue, replica, loops in
            try await body(queue, replica, loops[0])
        }
    }

    static func withQueue(
        durability: Durability, walSync: WALSyncMode = .thread, loops: Int,
        _ body: (StorageQueue, Replica, [any EventLoop]) async throws -> Void
    ) async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("quorumkv-loop-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try RocksDBStore(directory: path, durability: durability, walSync: walSync)
        defer { store.close() }
        let replica = Replica(nodeID: "n1", store: store, wallMillis: { 1_800_000_000_000 })
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: loops)
        let queue = StorageQueue(pool: pool, statistics: NodeStatistics(nodeID: "n1", metricsFactory: TestMetrics()))
        do {
            try await body(queue, replica, Array(group.makeIterator()))
        } catch {
            try? await group.shutdownGracefully()
            try? await pool.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
        try await pool.shutdownGracefully()
    }
}
