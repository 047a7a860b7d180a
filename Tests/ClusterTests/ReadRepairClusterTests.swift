import Foundation
import KVClient
import KVCore
import Testing

extension RealProcessTests.FirstHalf {
    /// Real processes: a replica that missed writes while down is fixed by the reads that notice it.
    @Suite(.timeLimit(.minutes(3)))
    struct ReadRepairClusterTests {
        @Test func readsRepairAStaleReplicaBlockingAndInTheBackground() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 201)
            defer { cluster.tearDown() }
            try cluster.startAll()
            // No hints: the stale replica must stay stale until a read notices it.
            let client = try cluster.client(hintedHandoff: false)
            let admin = try cluster.client(certificate: "admin")
            // Three keys that node n1 replicates; n1 is down while they change.
            func key(_ name: String) throws -> String {
                try (0..<1000).map { "\(name)-\($0)" }.first { try cluster.replicas(of: $0).contains("n1") }!
            }
            let keys = [try key("blocking"), try key("background"), try key("deleted")]
            for key in keys {
                try await client.put(Array(key.utf8), value: Array("old".utf8), consistency: .all)
            }
            let stale = ["n1", "n1", "n1"]
            cluster.stop("n1", signal: SIGKILL)
            try await client.put(Array(keys[0].utf8), value: Array("new".utf8))
            try await client.put(Array(keys[1].utf8), value: Array("new".utf8))
            try await client.delete(Array(keys[2].utf8))
            try cluster.start("n1")
            for (key, node) in zip(keys, stale) {
                let record = try await admin.replicaRecord(Array(key.utf8), node: node)
                #expect(record?.value == Array("old".utf8), "\(node) should still hold the old \(key)")
            }

            // Blocking: the stale replica holds the newest version before the read returns.
            let found = try await client.get(Array(keys[0].utf8), consistency: .all, repair: .blocking)
            #expect(found?.value == Array("new".utf8))
            let repaired = try await admin.replicaRecord(Array(keys[0].utf8), node: stale[0])
            #expect(repaired?.value == Array("new".utf8))
            #expect(repaired?.version == found.map { Version($0.version) })

            // Background (the default): repaired shortly after the read.
            #expect(try await client.get(Array(keys[1].utf8), consistency: .all)?.value == Array("new".utf8))
            #expect(try await client.get(Array(keys[2].utf8), consistency: .all) == nil)
            for (key, node) in zip(keys.dropFirst(), stale.dropFirst()) {
                let deadline = ContinuousClock.now + .seconds(20)
                var record = try await admin.replicaRecord(Array(key.utf8), node: node)
                while record?.value == Array("old".utf8) && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                    record = try await admin.replicaRecord(Array(key.utf8), node: node)
                }
                if key == keys[2] {
                    #expect(record?.tombstone == true, "the delete must reach \(node) too")
                } else {
                    #expect(record?.value == Array("new".utf8))
                }
            }
            #expect(client.readRepairsSent >= 3)
            // n1 counted the repairs it received (origin readRepair), and that each changed its data;
            // `status()` reads them with the admin certificate.
            let deadline = ContinuousClock.now + .seconds(20)
            var n1 = try await admin.status().first { $0.nodeID == "n1" }
            while (n1?.readRepairsApplied ?? 0) < 3 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                n1 = try await admin.status().first { $0.nodeID == "n1" }
            }
            #expect((n1?.readRepairsReceived ?? 0) >= 3)
            #expect((n1?.readRepairsApplied ?? 0) >= 3)
            #expect(n1?.countersError == nil)
            await client.close()
            await admin.close()
        }
    }
}
