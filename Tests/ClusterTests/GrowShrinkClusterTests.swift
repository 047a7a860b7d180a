import Foundation
import KVClient
import KVCore
import KVWire
import Synchronization
import Testing

extension RealProcessTests.SecondHalf {
    /// Real processes: 4 nodes holding 8,000 keys grow to 8, one node at a time, under a bounded mixed
    /// load at QUORUM; each join copies within 5 % of the minimum (the keys the new node replicates).
    /// `QUORUMKV_GROW_KEYS` sets more: 100,000 ran past the time limit on the 2-core machine with both
    /// cores busy beside it.
    @Suite(.timeLimit(.minutes(8)))
    struct GrowShrinkClusterTests {
        static let keyCount = Int(ProcessInfo.processInfo.environment["QUORUMKV_GROW_KEYS"] ?? "") ?? 8_000

        /// Runs `body` for every index in `0..<count`, `width` at a time.
        static func concurrently(
            _ count: Int, width: Int = 64, _ body: @escaping @Sendable (Int) async throws -> Void
        ) async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<width {
                    group.addTask {
                        for index in stride(from: worker, to: count, by: width) { try await body(index) }
                    }
                }
                try await group.waitForAll()
            }
        }

        @Test func fourNodesGrowToEightUnderLoadMovingTheMinimum() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 31, joiners: 4)
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client(timeout: .seconds(10)) { $0.healthCheckInterval = .milliseconds(500) }
            let admin = try cluster.client(certificate: "admin")
            let keys = Self.keyCount
            try await Self.concurrently(keys) { index in
                try await client.put(Array("g-\(index)".utf8), value: Array("v0-\(index)".utf8))
            }
            // The live load overwrites keys of the same set, so the keys each join must copy are known.
            let load = MembershipChangeClusterTests.Load(client: client, keys: keys, prefix: "g")
            var copied: [(node: String, copied: Int, minimum: Int)] = []
            for id in ["n5", "n6", "n7", "n8"] {
                try await offThePool { try cluster.start(id) }
                let join = try await offThePool {
                    try cluster.kvctl(
                        ["join", "--node", id, "--address", cluster.address(id), "--wait-timeout", "240"],
                        timeout: .seconds(250))
                }
                #expect(join.status == 0, "\(join.stderr)")
                let ring = try await admin.latestClusterMap().ring()
                let minimum = (0..<keys).count { ring.preferenceList(forKey: Array("g-\($0)".utf8)).contains(id) }
                let statistics = try await admin.nodeStatistics(node: id)
                let received = statistics.transfers.reduce(0) { $0 + Int(clamping: $1.keys) }
                copied.append((id, received, minimum))
            }
            let operations = await load.finish()
            #expect(operations > 100)
            #expect(load.failures.withLock { $0 }.isEmpty, "failed: \(load.failures.withLock { Array($0.prefix(5)) })")
            for join in copied {
                #expect(
                    abs(join.copied - join.minimum) <= join.minimum / 20,
                    "\(join.node) received \(join.copied) keys; the minimum is \(join.minimum)")
            }
            let total = copied.map(\.copied).reduce(0, +)
            print(
                "4 → 8 nodes, \(keys) keys × 3 replicas: copied \(total) records (\(copied.map { "\($0.node) \($0.copied)/\($0.minimum)" }))"
            )

            // Every acknowledged write reads back at QUORUM from the eight nodes.
            let acknowledged = load.acknowledged.withLock { $0 }
            let wrong = Mutex<[String]>([])
            try await Self.concurrently(keys) { index in
                let key = "g-\(index)"
                let expected = acknowledged[key] ?? "v0-\(index)"
                let read = try await client.get(Array(key.utf8))
                if read?.value != Array(expected.utf8) { wrong.withLock { $0.append(key) } }
            }
            #expect(wrong.withLock { $0 }.isEmpty, "\(wrong.withLock { $0.count }) keys read wrong")
            let map = try await admin.latestClusterMap()
            #expect(map.voters.count == 8 && !map.isChanging)
            await admin.close()
            await client.close()
        }
    }
}
