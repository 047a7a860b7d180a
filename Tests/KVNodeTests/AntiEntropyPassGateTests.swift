import KVCore
import KVNode
import KVStorage
import Logging
import MetricsTestKit
import NIOPosix
import Synchronization
import Testing

/// A node's anti-entropy passes never overlap, over all its keyspaces (`PassGate`, shared by
/// `AntiEntropy.serving`).
@Suite(.timeLimit(.minutes(3)))
struct AntiEntropyPassGateTests {
    /// Whether the peers of the default keyspace's pass are held, and the keyspaces whose peers were
    /// asked while they were and after.
    final class Peers: Sendable {
        private struct State {
            var held = true
            var waiting: [CheckedContinuation<Void, Never>] = []
            var calls: [(keyspace: UInt32, whileHeld: Bool)] = []
        }
        private let state = Mutex(State())
        /// The keyspace of each request, as it comes.
        let asked: AsyncStream<UInt32>
        private let ask: AsyncStream<UInt32>.Continuation

        init() { (asked, ask) = AsyncStream.makeStream(of: UInt32.self) }

        var calls: [(keyspace: UInt32, whileHeld: Bool)] { state.withLock { $0.calls } }

        /// A peer of `keyspace` that records each request, holds the default keyspace's until
        /// `release()`, then fails it.
        func peer(_ keyspace: UInt32) -> any AntiEntropyReplica {
            RemoteAntiEntropyReplica(nodeID: "n2", timeout: .seconds(60)) { _, _ in
                let held = self.state.withLock { state in
                    state.calls.append((keyspace, state.held))
                    return state.held && keyspace == Keyspace.defaultID
                }
                self.ask.yield(keyspace)
                if held {
                    await withCheckedContinuation { continuation in
                        let resume = self.state.withLock { state in
                            guard state.held else { return true }
                            state.waiting.append(continuation)
                            return false
                        }
                        if resume { continuation.resume() }
                    }
                }
                throw AntiEntropyReplicaError(description: "this peer answers nothing")
            }
        }

        func release() {
            let waiting = state.withLock { state in
                state.held = false
                defer { state.waiting = [] }
                return state.waiting
            }
            for continuation in waiting { continuation.resume() }
        }
    }

    @Test func anotherKeyspacesPassWaitsForTheRunningOne() async throws {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let peers = Peers()
        var configuration = AntiEntropy.Configuration()
        configuration.interval = nil
        let (defaultStore, otherStore) = (InMemoryStore(), InMemoryStore())
        func local(_ store: InMemoryStore) -> LocalAntiEntropyReplica {
            LocalAntiEntropyReplica(
                replica: Replica(nodeID: "n1", store: store, wallMillis: { 1 }), merkle: store, pool: pool)
        }
        let root = AntiEntropy(
            nodeID: "n1", ring: try ServiceFixture.cluster.ring(), local: local(defaultStore),
            peers: ["n2": peers.peer(Keyspace.defaultID), "n3": peers.peer(Keyspace.defaultID)],
            marks: defaultStore, configuration: configuration,
            statistics: NodeStatistics(nodeID: "n1", metricsFactory: TestMetrics()), wallMillis: { 1 },
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        let other = root.serving(7, local: local(otherStore), store: otherStore, makePeer: { _ in peers.peer(7) })

        let first = Task { await root.pass(within: nil) }
        var asked = peers.asked.makeAsyncIterator()
        #expect(await asked.next() == Keyspace.defaultID, "the default keyspace's pass asks its peers")
        let second = Task { await other.pass(within: nil) }
        // Time for keyspace 7's pass to ask its peers if it does not wait (it does so at once).
        try await Task.sleep(for: .seconds(1))
        peers.release()
        let (firstReport, secondReport) = (await first.value, await second.value)

        #expect(!peers.calls.contains { $0.keyspace == 7 && $0.whileHeld }, "keyspace 7's pass overlapped")
        #expect(peers.calls.contains { $0.keyspace == 7 }, "keyspace 7's pass ran once the other ended")
        #expect(firstReport.errors > 0 && secondReport.errors > 0)
        defaultStore.close()
        otherStore.close()
        try await pool.shutdownGracefully()
    }
}
