import Dispatch
import KVCore
import KVNode
import KVRPC
import KVStorage
import KVWire
import MetricsTestKit
import NIOPosix
import Testing

/// Issue 16: the queue in front of the storage pool is bounded; past it a request is answered
/// `overloaded` at once, counted, instead of waiting without bound.
@Suite(.timeLimit(.minutes(3)))
struct StorageQueueTests {
    @Test func jobsPastTheBoundAreOverloadedAtOnceAndCounted() async throws {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let gate = DispatchSemaphore(value: 0)
        let statistics = NodeStatistics(nodeID: "n1", metricsFactory: TestMetrics())
        let queue = StorageQueue(pool: pool, jobsMax: 2, statistics: statistics)
        // One job holds the pool's only thread, the next waits for it: the queue is full.
        let running = Task { try await queue.run { gate.wait() } }
        let waiting = Task { try await queue.run { 2 } }
        defer {
            gate.signal()
            pool.shutdownGracefully { _ in }
        }
        let deadline = ContinuousClock.now + .seconds(30)
        while queue.count < 2, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(queue.count == 2)

        await #expect(throws: RPCError.remote(.overloaded, message: "")) {
            _ = try await queue.run { 3 }
        }
        #expect(statistics.refusedCount(.queueFull) == 1)
        #expect(queue.count == 2, "a refused job takes no place")

        gate.signal()
        try await running.value
        #expect(try await waiting.value == 2)
        #expect(queue.count == 0)
        #expect(try await queue.run { 4 } == 4)
        #expect(statistics.refusedCount(.queueFull) == 1)
    }

    /// Issue 21: writes that arrive while the pool is busy go to the store together, as one batch
    /// (one RocksDB write group and fsync), and each gets its own outcome, as if written alone in
    /// arrival order.
    @Test func writesWaitingTogetherAreWrittenAsOneBatch() async throws {
        let store = InMemoryStore()
        let replica = Replica(nodeID: "n1", store: store, wallMillis: { 1_800_000_000_000 })
        let writes = 60
        let (outcomes, queue) = try await Self.whilePoolIsBusy(jobs: writes) { queue in
            try await withThrowingTaskGroup(of: (Int, ApplyOutcome).self) { group in
                for index in 0..<writes {
                    group.addTask {
                        // Ten keys; the versions of a key in arrival order are not sorted.
                        let version = Version(hlc: UInt64(1000 + (index * 37) % writes), writer: 1)
                        let record = StoredRecord(version: version, tombstone: false, value: [UInt8(index)])
                        let answer = try await queue.put(
                            key: Array("key-\(index % 10)".utf8), record: record, to: replica, keyspace: 0)
                        return (index, answer.outcome)
                    }
                }
                return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
        }
        #expect(queue.writeBatches == 1, "60 writes waiting together: one store write")
        #expect(queue.count == 0)
        for key in 0..<10 {
            let indexes = (0..<writes).filter { $0 % 10 == key }
            let newest = indexes.max { (($0 * 37) % writes) < (($1 * 37) % writes) }!
            let stored = try store.get(key: Array("key-\(key)".utf8))
            #expect(stored?.value == [UInt8(newest)], "key-\(key) holds its newest version")
            #expect(outcomes[newest] == ApplyOutcome.applied)
            for index in indexes where index != newest {
                if case .superseded(let current) = outcomes[index] {
                    #expect(current.hlc > UInt64(1000 + (index * 37) % writes))
                }
            }
        }
    }

    /// A batch that fails (one record refused) is written again one record at a time: only the bad
    /// record's write fails.
    @Test func oneBadRecordFailsOnlyItsOwnWrite() async throws {
        let store = InMemoryStore()
        let now: UInt64 = 1_800_000_000_000
        let replica = Replica(nodeID: "n1", store: store, maxClockOffset: .seconds(1), wallMillis: { now })
        let (written, _) = try await Self.whilePoolIsBusy(jobs: 5) { queue in
            try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
                for index in 0..<5 {
                    group.addTask {
                        // Write 2's version is an hour ahead of the node's clock.
                        let millis = index == 2 ? now + 3_600_000 : now
                        let record = StoredRecord(
                            version: Version(hlc: millis << 16, writer: 1), tombstone: false, value: [UInt8(index)])
                        do {
                            _ = try await queue.put(
                                key: Array("key-\(index)".utf8), record: record, to: replica, keyspace: 0)
                            return (index, true)
                        } catch {
                            return (index, false)
                        }
                    }
                }
                return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
        }
        #expect(written == [0: true, 1: true, 2: false, 3: true, 4: true])
        #expect(try store.get(key: Array("key-2".utf8)) == nil)
        #expect(try store.get(key: Array("key-4".utf8))?.value == [4])
    }

    /// Runs `body` with a storage queue whose pool's only thread is held until `jobs` jobs of
    /// `body` wait in the queue, then let go: every one of them waited while the pool was busy.
    static func whilePoolIsBusy<T: Sendable>(
        jobs: Int, _ body: @escaping @Sendable (StorageQueue) async throws -> T
    ) async throws -> (T, StorageQueue) {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        defer { pool.shutdownGracefully { _ in } }
        let gate = DispatchSemaphore(value: 0)
        let queue = StorageQueue(
            pool: pool, jobsMax: 1000, statistics: NodeStatistics(nodeID: "n1", metricsFactory: TestMetrics()))
        let holder = Task { try await queue.run { gate.wait() } }
        let answers = Task { try await body(queue) }
        let deadline = ContinuousClock.now + .seconds(30)
        while queue.count < jobs + 1, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(queue.count == jobs + 1, "every job waits behind the one holding the pool")
        gate.signal()
        try await holder.value
        return (try await answers.value, queue)
    }
}
