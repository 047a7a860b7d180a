import Foundation
import KVClient
import KVConfig
import KVCore
import KVWire
import Synchronization
import Testing

extension RealProcessTests.SecondHalf {
    /// Real processes: raising N and replacing a dead node, with traffic going on.
    @Suite(.timeLimit(.minutes(4)))
    struct ReplicationChangeClusterTests {
        typealias Load = MembershipChangeClusterTests.Load

        @Test func raisingNFromTwoToThreeUnderLoadLetsQuorumsSurviveANodeDown() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 41, replicationFactor: 2)
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client(timeout: .seconds(5)) { $0.healthCheckInterval = .milliseconds(200) }
            var expected: [String: String] = [:]
            for index in 0..<2000 {
                try await client.put(Array("rf-\(index)".utf8), value: Array("v\(index)".utf8))
                expected["rf-\(index)"] = "v\(index)"
            }
            let load = Load(client: client, keys: 300, prefix: "rf-live")
            let change = try await offThePool {
                try cluster.kvctl(["cluster", "set-rf", "3", "--wait-timeout", "120"])
            }
            #expect(change.status == 0, "\(change.stderr)")
            _ = await load.finish()
            #expect(load.failures.withLock { $0 }.isEmpty, "failed: \(load.failures.withLock { Array($0.prefix(5)) })")
            expected.merge(load.acknowledged.withLock { $0 }) { $1 }
            let map = try await client.latestClusterMap()
            #expect(map.replicationFactor == 3 && !map.isChanging)

            // Every node that became a replica holds its keys: each key is on 3 nodes, read one by one.
            let admin = try cluster.client(certificate: "admin")
            let ring = try map.ring()
            var under: [String] = []
            for (key, value) in expected.prefix(300) {
                var copies = 0
                for node in ring.preferenceList(forKey: Array(key.utf8))
                where try await admin.replicaRecord(Array(key.utf8), node: node)?.value == Array(value.utf8) {
                    copies += 1
                }
                if copies < 3 { under.append("\(key): \(copies)") }
            }
            #expect(under.isEmpty, "keys on fewer than 3 replicas: \(under.prefix(5))")
            await admin.close()
            // N = 3, R = W = 2: one node down and every key still reads back, writes still succeed.
            cluster.stop("n2")
            var wrong: [String] = []
            for (key, value) in expected {
                let read = try await client.get(Array(key.utf8), consistency: .quorum)
                if read?.value != Array(value.utf8) { wrong.append(key) }
            }
            #expect(wrong.isEmpty, "\(wrong.count) keys read wrong with n2 down, e.g. \(wrong.prefix(3))")
            for index in 0..<50 {
                try await client.put(Array("rf-after-\(index)".utf8), value: Array("x".utf8), consistency: .quorum)
            }
            await client.close()
        }

        @Test func aDeadNodeIsReplacedByANewOneThatReceivesItsRanges() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 46, joiners: 1)
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client(timeout: .seconds(5)) { $0.healthCheckInterval = .milliseconds(200) }
            var expected: [String: String] = [:]
            for index in 0..<2000 {
                try await client.put(Array("rp-\(index)".utf8), value: Array("v\(index)".utf8))
                expected["rp-\(index)"] = "v\(index)"
            }
            cluster.stop("n2")
            // Written while n2 is dead: its fallbacks hold hints for it, which n2 will never take.
            for index in 0..<200 {
                try await client.put(Array("rd-\(index)".utf8), value: Array("d\(index)".utf8))
                expected["rd-\(index)"] = "d\(index)"
            }
            let admin = try cluster.client(certificate: "admin")
            func hintsForN2() async throws -> Int {
                var held = 0
                for node in ["n1", "n3", "n4"] {
                    held += Int(clamping: try await admin.nodeStatistics(node: node).hintsQueued(for: "n2"))
                }
                return held
            }
            let hinted = ContinuousClock.now + .seconds(10)
            var stored = try await hintsForN2()
            while stored == 0, ContinuousClock.now < hinted {
                try await Task.sleep(for: .milliseconds(200))
                stored = try await hintsForN2()
            }
            #expect(stored > 0, "writes while n2 is dead leave hints for it")
            try await offThePool { try cluster.start("n5") }
            let replace = try await offThePool {
                try cluster.kvctl([
                    "replace", "n2", "--with", "n5", "--address", cluster.address("n5"), "--wait-timeout", "120",
                ])
            }
            #expect(replace.status == 0, "\(replace.stderr)")
            let map = try await client.latestClusterMap()
            #expect(map.node("n2")?.state == .removed && map.node("n5")?.state == .normal, "\(map.changeSummary)")
            #expect(map.node("n5")?.tokens == (try ClusterFile.load(path: cluster.clusterFile).node("n2")?.tokens))
            // The hints for n2 go to their keys' replicas in the new ring, and are deleted.
            let deadline = ContinuousClock.now + .seconds(30)
            var remaining = try await hintsForN2()
            while remaining > 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(500))
                remaining = try await hintsForN2()
            }
            #expect(remaining == 0, "\(remaining) hints for the removed n2 are still held")
            // n5 holds exactly n2's keys: read from n5 alone, every one of them is there.
            let ring = try map.ring()
            var missing: [String] = []
            var held = 0
            for (key, value) in expected where ring.preferenceList(forKey: Array(key.utf8)).contains("n5") {
                held += 1
                let record = try await admin.replicaRecord(Array(key.utf8), node: "n5")
                if record?.value != Array(value.utf8) { missing.append(key) }
            }
            #expect(held > 1000, "n5 replicates \(held) of 2200 keys")
            #expect(missing.isEmpty, "n5 lacks \(missing.count) of its \(held) keys, e.g. \(missing.prefix(3))")
            var wrong: [String] = []
            for (key, value) in expected {
                let read = try await client.get(Array(key.utf8), consistency: .quorum)
                if read?.value != Array(value.utf8) { wrong.append(key) }
            }
            #expect(wrong.isEmpty, "\(wrong.count) keys read wrong, e.g. \(wrong.prefix(3))")
            await admin.close()
            await client.close()
        }
    }
}
