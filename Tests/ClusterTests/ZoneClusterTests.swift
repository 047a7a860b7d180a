import Foundation
import KVClient
import KVCore
import Synchronization
import Testing

extension RealProcessTests.SecondHalf {
    /// Real processes with zones (issue 20): six nodes, two in each of zones a, b and c; a placement
    /// that puts one replica in each zone survives the loss of a whole zone, and a cluster can move to
    /// such a placement under load.
    @Suite(.timeLimit(.minutes(5)))
    struct ZoneClusterTests {
        typealias Load = MembershipChangeClusterTests.Load

        /// The addresses of n1…n6 (no other test uses them) and their zones.
        static let hosts = [78, 79, 80, 139, 140, 149]
        static let zones = ["a", "a", "b", "b", "c", "c"]

        static func zone(of node: String) -> String? {
            Int(node.dropFirst()).flatMap { zones.indices.contains($0 - 1) ? zones[$0 - 1] : nil }
        }

        /// What `kvctl ring KEY --json` prints.
        struct KeyRing: Decodable {
            var replicas: [String]
            var replicaZones: [String]
            var placement: String
        }

        /// One key's replicas as an operator sees them: `kvctl ring KEY --json`.
        static func ring(of key: String, in cluster: ClusterHarness) throws -> KeyRing {
            let result = try cluster.kvctl(["ring", key, "--json"])
            guard result.status == 0 else { throw HarnessError("kvctl ring \(key): \(result.stderr)") }
            return try JSONDecoder().decode(KeyRing.self, from: Data(result.stdout.utf8))
        }

        /// The keys of `keys` whose replicas in `ring` are not in three distinct zones, with their zones.
        static func keysNotSpread(_ keys: some Sequence<String>, in ring: Ring) -> [String] {
            keys.compactMap { key in
                let zones = ring.preferenceList(forKey: Array(key.utf8)).map { zone(of: $0) ?? "?" }
                return Set(zones).count == 3 ? nil : "\(key): \(zones)"
            }
        }

        /// Waits (bounded) until `load` has done `count` operations.
        static func waitForProgress(of load: Load, to count: Int, within limit: Duration) async throws {
            let deadline = ContinuousClock.now + limit
            while load.progress.count < count, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
        }

        /// Runs `body` while `load` goes on, then stops the load, also when `body` throws.
        ///
        /// - Returns: what `body` returned, and how many operations the load ran.
        static func finish<T>(_ load: Load, after body: () async throws -> T) async throws -> (T, operations: Int) {
            let result: T
            do {
                result = try await body()
            } catch {
                _ = await load.finish()
                throw error
            }
            return (result, await load.finish())
        }

        @Test func oneReplicaPerZoneSurvivesAWholeZoneKilledUnderLoad() async throws {
            let cluster = try ClusterHarness(hosts: Self.hosts, placement: "spread:3/1", zones: Self.zones)
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            // A client in zone a at LOCAL_QUORUM: a majority of each key's replicas in zone a (its one
            // replica there) must answer; the other zones' replicas still receive every write.
            let client = try cluster.client(timeout: .seconds(5)) {
                $0.healthCheckInterval = .milliseconds(200)
                $0.zone = "a"
                $0.readConsistency = .localQuorum
                $0.writeConsistency = .localQuorum
            }
            let keys = (0..<300).map { "z-\($0)" }

            // What an operator sees: each sampled key has one replica in each zone, the zones kvctl
            // names are the nodes' zones, and the SDK's ring (which its quorums follow) agrees.
            let ring = try await client.latestClusterMap().ring()
            #expect(ring.placement == .spread(replicas: 3, perZone: 1))
            var wrong: [String] = []
            for key in keys.prefix(24) {
                let shown = try await offThePool { try Self.ring(of: key, in: cluster) }
                if shown.placement != "spread:3/1" || Set(shown.replicaZones).count != 3
                    || shown.replicaZones != shown.replicas.map({ Self.zone(of: $0) ?? "?" })
                    || shown.replicas != ring.preferenceList(forKey: Array(key.utf8))
                {
                    wrong.append("\(key): \(shown.replicas) in \(shown.replicaZones), \(shown.placement)")
                }
            }
            #expect(wrong.isEmpty, "kvctl ring shows replicas not one per zone: \(wrong.prefix(3))")
            let notSpread = Self.keysNotSpread(keys, in: ring)
            #expect(notSpread.isEmpty, "keys without a replica in each zone: \(notSpread.prefix(3))")

            // Kill both nodes of zone b midway through the load, and keep it going a while.
            let load = Load(client: client, keys: keys.count, prefix: "z")
            let (atKill, operations) = try await Self.finish(load) {
                try await Self.waitForProgress(of: load, to: 600, within: .seconds(60))
                let atKill = load.progress.count
                try await offThePool {
                    cluster.stop("n3", signal: SIGKILL)
                    cluster.stop("n4", signal: SIGKILL)
                }
                try await Self.waitForProgress(of: load, to: atKill + 1000, within: .seconds(90))
                return atKill
            }
            #expect(atKill >= 600, "the load did \(atKill) operations before the kill")
            #expect(operations >= atKill + 1000, "the load did \(operations - atKill) operations after the kill")
            let failures = load.failures.withLock { $0 }
            #expect(failures.isEmpty, "\(failures.count) requests failed, e.g. \(failures.prefix(5))")

            // With zone b gone, every acknowledged write reads back at LOCAL_QUORUM, and at QUORUM from
            // zones a and c: the writes reached zone c too, not only the client's zone.
            let acknowledged = load.acknowledged.withLock { $0 }
            #expect(acknowledged.count == keys.count)
            let unreadable = try await MembershipChangeClusterTests.checkReadable(acknowledged, with: client)
            #expect(unreadable.isEmpty, "\(unreadable.count) acknowledged writes unreadable: \(unreadable.prefix(5))")
            let quorumClient = try cluster.client(timeout: .seconds(5))
            let unreadableAtQuorum = try await MembershipChangeClusterTests.checkReadable(
                acknowledged, with: quorumClient)
            #expect(unreadableAtQuorum.isEmpty, "\(unreadableAtQuorum.count) unreadable at QUORUM")
            // A client in zone b, whose nodes are all dead, fails at LOCAL_QUORUM, naming the count.
            let zoneB = try cluster.client(timeout: .seconds(5)) {
                $0.zone = "b"
                $0.readConsistency = .localQuorum
            }
            let refusal = await #expect(throws: KVClientError.self) { _ = try await zoneB.get(Array("z-1".utf8)) }
            #expect(
                "\(refusal.map { "\($0)" } ?? "")".contains("needs 1 of 3 replicas (1 of n"),
                "\(String(describing: refusal))")
            await zoneB.close()
            await quorumClient.close()
            await client.close()
        }

        @Test func aPlacementChangeUnderLoadStreamsRangesAndLosesNoAcknowledgedWrite() async throws {
            let cluster = try ClusterHarness(hosts: Self.hosts, placement: "simple:3", zones: Self.zones)
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client(timeout: .seconds(5)) { $0.healthCheckInterval = .milliseconds(200) }
            var expected: [String: String] = [:]
            for index in 0..<1000 {
                try await client.put(Array("zp-\(index)".utf8), value: Array("v\(index)".utf8))
                expected["zp-\(index)"] = "v\(index)"
            }
            // Under simple:3 some keys have two replicas in one zone: the change has ranges to move.
            let before = try await client.latestClusterMap().ring()
            #expect(!Self.keysNotSpread(expected.keys, in: before).isEmpty)

            // The change starts while the load is going, and the load goes on until the change is done.
            let load = Load(client: client, keys: 300, prefix: "zp-live")
            let (change, operations) = try await Self.finish(load) {
                try await Self.waitForProgress(of: load, to: 100, within: .seconds(60))
                return try await offThePool {
                    try cluster.kvctl(["cluster", "set-placement", "spread:3/1", "--wait-timeout", "120"])
                }
            }
            #expect(change.status == 0, "\(change.stderr)")
            #expect(operations > 100)
            let failures = load.failures.withLock { $0 }
            #expect(failures.isEmpty, "\(failures.count) requests failed, e.g. \(failures.prefix(5))")
            expected.merge(load.acknowledged.withLock { $0 }) { $1 }

            let map = try await client.latestClusterMap()
            #expect(map.placement == .spread(replicas: 3, perZone: 1) && !map.isChanging, "\(map.changeSummary)")
            let ring = try map.ring()
            let notSpread = Self.keysNotSpread(expected.keys, in: ring)
            #expect(notSpread.isEmpty, "keys without a replica in each zone: \(notSpread.prefix(3))")
            let shown = try await offThePool { try Self.ring(of: "zp-0", in: cluster) }
            #expect(shown.placement == "spread:3/1" && Set(shown.replicaZones).count == 3, "\(shown)")

            // The nodes that became replicas of a preloaded key received it: each such key is on all
            // three of its new replicas, read one by one (the load never reads these keys, so no read
            // repair put them there).
            let admin = try cluster.client(certificate: "admin")
            var moved = 0
            var under: [String] = []
            for index in 0..<1000 {
                let key = Array("zp-\(index)".utf8)
                let replicas = ring.preferenceList(forKey: key)
                guard replicas != before.preferenceList(forKey: key) else { continue }
                moved += 1
                var copies = 0
                for node in replicas
                where try await admin.replicaRecord(key, node: node)?.value == Array("v\(index)".utf8) {
                    copies += 1
                }
                if copies < 3 { under.append("zp-\(index): \(copies) on \(replicas)") }
            }
            #expect(moved > 0, "no preloaded key changed replicas")
            #expect(under.isEmpty, "\(under.count) of \(moved) moved keys on fewer than 3 replicas: \(under.prefix(5))")
            await admin.close()

            let unreadable = try await MembershipChangeClusterTests.checkReadable(expected, with: client)
            #expect(unreadable.isEmpty, "\(unreadable.count) acknowledged writes unreadable: \(unreadable.prefix(5))")
            await client.close()

            // A node restarted with a zone other than the map's refuses to serve, saying why; with its
            // own zone it starts.
            try await offThePool {
                cluster.stop("n1", signal: SIGTERM)
                cluster.nodeArguments["n1"] = ["--zone", "b"]
                #expect(throws: HarnessError.self) { try cluster.start("n1") }
                #expect(cluster.log("n1", tail: 5).contains("puts n1 in zone 'a'"), "\(cluster.log("n1", tail: 5))")
                cluster.nodeArguments["n1"] = ["--zone", "a"]
                try cluster.start("n1")
            }
        }
    }
}
