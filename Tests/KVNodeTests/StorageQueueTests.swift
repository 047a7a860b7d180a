import Dispatch
import KVNode
import KVRPC
import KVWire
import MetricsTestKit
import NIOPosix
import Testing

/// Issue 16: the queue in front of the storage pool is bounded; past it a request is answered
/// `overloaded` at once, counted, instead of waiting without bound.
@Suite(.timeLimit(.minutes(1)))
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
}
