import Foundation
import KVClient
import KVConfig
import KVCore
import MetricsTestKit
import Synchronization
import Testing

extension RealProcessTests.SecondHalf {
    /// Real processes with keyspaces (issue 20): one 6-node cluster holds the seed's caching keyspace
    /// (N=3, R=1, W=1) and its accounts keyspace (N=5, R=3, W=3), made with `kvctl keyspace create`.
    /// The same key bytes are three keys, and each keyspace tolerates exactly the replica failures the
    /// seed's table says for its N, R and W (as `QuorumTableTests` checks for the default keyspace).
    @Suite(.timeLimit(.minutes(5)))
    struct KeyspaceClusterTests {
        /// The addresses of n1…n6; no other test uses them.
        static let hosts = [100, 120, 150, 155, 160, 165]

        /// What `kvctl ring KEY --keyspace NAME --json` prints.
        struct KeyRing: Decodable {
            var keyspace: String
            var replicas: [String]
            var replicationFactor: Int
        }

        /// Runs `kvctl` (admin) and expects it to succeed; returns its stdout.
        @discardableResult
        static func kvctl(_ arguments: [String], in cluster: ClusterHarness) async throws -> String {
            let result = try await offThePool { try cluster.kvctl(arguments) }
            guard result.status == 0 else {
                throw HarnessError("kvctl \(arguments.joined(separator: " ")): exit \(result.status): \(result.stderr)")
            }
            return result.stdout
        }

        /// Keys of `keyspace` that share one preference list in its ring, and that list.
        static func keys(sharingReplicasIn keyspace: KVKeyspace, prefix: String) async throws -> (
            keys: [String], replicas: [String]
        ) {
            let candidates = (0..<2000).map { "\(prefix)\($0)" }
            let replicas = try await keyspace.replicas(ofKey: Array(candidates[0].utf8))
            var keys: [String] = []
            for key in candidates where keys.count < 8 {
                if try await keyspace.replicas(ofKey: Array(key.utf8)) == replicas { keys.append(key) }
            }
            return (keys, replicas)
        }

        /// Kills the replicas of `keys` in `keyspace` one by one (up to `tolerated + 1`) and checks,
        /// after each kill, that a put and a get at the keyspace's default levels succeed exactly while
        /// `tolerated` or fewer are dead, and otherwise fail fast naming the counts.
        static func checkTolerance(
            of keyspace: KVKeyspace, keys: [String], replicas: [String], tolerated: Int, r: Int, w: Int,
            in cluster: ClusterHarness
        ) async throws {
            let n = replicas.count
            var survivedBoth = -1
            for failures in 0...(tolerated + 1) {
                if failures > 0 {
                    try await offThePool { cluster.stop(replicas[failures - 1], signal: SIGKILL) }
                }
                let alive = n - failures
                var worked = true
                for key in keys {
                    let value = Array("\(keyspace.name)-after-\(failures)".utf8)
                    let started = ContinuousClock.now
                    do {
                        // No level named: the keyspace's own W.
                        try await keyspace.put(Array(key.utf8), value: value)
                        #expect(alive >= w, "\(keyspace.name): a write at W=\(w) succeeded with \(alive) alive")
                    } catch let error as KVClientError {
                        worked = false
                        #expect(alive < w, "\(keyspace.name): write at W=\(w) failed with \(alive) alive: \(error)")
                        #expect(error.description.contains("needs \(w) of \(n)"), "\(error)")
                        #expect(error.description.contains("in keyspace '\(keyspace.name)'"), "\(error)")
                        #expect(ContinuousClock.now - started < .seconds(10), "must fail fast: \(error)")
                    }
                    let readStarted = ContinuousClock.now
                    do {
                        let found = try await keyspace.get(Array(key.utf8))
                        #expect(alive >= r, "\(keyspace.name): a read at R=\(r) succeeded with \(alive) alive")
                        if r + w > n && alive >= w {
                            #expect(found?.value == value, "R+W>N: the read must see the write just acknowledged")
                        }
                    } catch let error as KVClientError {
                        worked = false
                        #expect(alive < r, "\(keyspace.name): read at R=\(r) failed with \(alive) alive: \(error)")
                        #expect(error.description.contains("needs \(r) of \(n)"), "\(error)")
                        #expect(ContinuousClock.now - readStarted < .seconds(10), "must fail fast: \(error)")
                    }
                }
                if worked { survivedBoth = failures }
            }
            #expect(survivedBoth == tolerated, "\(keyspace.name) survived \(survivedBoth) failures, not \(tolerated)")
        }

        @Test func twoKeyspacesToleratePerTheirOwnNRAndW() async throws {
            let cluster = try ClusterHarness(hosts: Self.hosts, replicationFactor: 3)
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            // Made before the keyspaces exist: it must find them in the cluster's map by itself.
            let metrics = TestMetrics()
            let client = try cluster.client(timeout: .seconds(20)) { $0.metricsFactory = metrics }

            try await Self.kvctl(
                ["keyspace", "create", "cache", "--rf", "3", "--read", "one", "--write", "one", "--ttl", "1h"],
                in: cluster)
            try await Self.kvctl(
                ["keyspace", "create", "accounts", "--rf", "5", "--read", "quorum", "--write", "quorum"], in: cluster)
            let listed = try await Self.kvctl(["keyspace", "list"], in: cluster)
            #expect(listed.contains("cache") && listed.contains("accounts"), "\(listed)")
            let cache = client.keyspace("cache")
            let accounts = client.keyspace("accounts")

            // The same bytes are three keys: one per keyspace.
            let key = Array("user:42".utf8)
            try await client.put(key, value: Array("in default".utf8))
            // cache is R=W=1 (R+W not above N): a read may miss a write still in flight, so these checks
            // name ALL, as an application needing to read its write in that keyspace would.
            try await cache.put(key, value: Array("in cache".utf8), consistency: .all)
            try await accounts.put(key, value: Array("in accounts".utf8))
            #expect(try await client.get(key)?.value == Array("in default".utf8))
            #expect(try await cache.get(key)?.value == Array("in cache".utf8))
            #expect(try await accounts.get(key)?.value == Array("in accounts".utf8))
            // The keyspace's default TTL travels with writes that name none; a put's own TTL wins.
            let cached = try #require(try await cache.get(key, consistency: .all))
            #expect(cached.expiresAtMillis == cached.version.millis + 3_600_000, "\(cached)")
            try await cache.put(key, value: Array("in cache".utf8), consistency: .all, timeToLive: .seconds(600))
            let shorter = try #require(try await cache.get(key, consistency: .all))
            #expect(shorter.expiresAtMillis == shorter.version.millis + 600_000, "\(shorter)")
            #expect(try await accounts.get(key)?.expiresAtMillis == nil)
            #expect(try await client.get(key)?.expiresAtMillis == nil)
            let shown = try await Self.kvctl(["get", "user:42", "--keyspace", "accounts"], in: cluster)
            #expect(shown.hasPrefix("in accounts"), "\(shown)")
            // `kvctl cluster show` counts each keyspace's keys as `keyspace list` does (it printed "-").
            let show = try await Self.kvctl(["cluster", "show", "--json"], in: cluster)
            let document = try JSONSerialization.jsonObject(with: Data(show.utf8)) as? [String: Any]
            let counted = (document?["keyspaces"] as? [[String: Any]])?.first { $0["name"] as? String == "accounts" }
            #expect(counted?["keys"] as? Int ?? 0 >= 1, "\(show)")
            let ring = try JSONDecoder().decode(
                KeyRing.self,
                from: Data(
                    try await Self.kvctl(["ring", "user:42", "--keyspace", "accounts", "--json"], in: cluster).utf8))
            #expect(ring.keyspace == "accounts" && ring.replicationFactor == 5)
            #expect(ring.replicas == (try await accounts.replicas(ofKey: key)))
            // An unknown keyspace is an error naming it.
            let unknown = try await #require(throws: KVClientError.self) {
                try await client.keyspace("sessions").put(key, value: [1])
            }
            #expect(unknown.isInvalidArgument && unknown.description.contains("no keyspace 'sessions'"), "\(unknown)")
            // The client's metrics name each operation's keyspace; one the map does not have is `unknown`.
            func operations(_ operation: String, _ level: String, _ keyspace: String, _ outcome: String) -> Int64 {
                (try? metrics.expectCounter(
                    "quorumkv_client_operations_total",
                    [("operation", operation), ("consistency", level), ("keyspace", keyspace), ("outcome", outcome)]))?
                    .totalValue ?? 0
            }
            #expect(operations("put", "all", "cache", "ok") == 2)
            #expect(operations("put", "quorum", "accounts", "ok") == 1)
            #expect(operations("get", "quorum", "accounts", "ok") == 2)
            #expect(operations("put", "quorum", "default", "ok") == 1)
            #expect(operations("put", "quorum", "unknown", "invalid_argument") == 1)
            #expect(operations("put", "quorum", "sessions", "invalid_argument") == 0)

            // A client that starts from the cluster file kvctl would write knows the keyspaces.
            let rendered = ClusterFile.render(try await client.latestClusterMap())
            let fresh = try ClusterFile.parse(rendered)
            #expect(fresh.keyspace(named: "cache")?.writeLevel == .one)
            #expect(fresh.keyspace(named: "accounts")?.placement == .simple(replicas: 5))

            // cache, N=3 R=1 W=1: reads and writes go on with 2 of a key's 3 replicas dead.
            let cacheKeys = try await Self.keys(sharingReplicasIn: cache, prefix: "c")
            #expect(cacheKeys.replicas.count == 3 && cacheKeys.keys.count >= 2)
            try await Self.checkTolerance(
                of: cache, keys: cacheKeys.keys, replicas: cacheKeys.replicas, tolerated: 2, r: 1, w: 1, in: cluster)
            await client.close()
            for node in cacheKeys.replicas { try await offThePool { try cluster.start(node) } }

            // accounts, N=5 R=3 W=3: 2 of 5 dead are tolerated, 3 fail fast. A new client: the one before
            // holds the restarted nodes in its reconnect backoff.
            let second = try cluster.client(timeout: .seconds(20))
            let accountKeys = try await Self.keys(sharingReplicasIn: second.keyspace("accounts"), prefix: "a")
            #expect(accountKeys.replicas.count == 5 && accountKeys.keys.count >= 2)
            try await Self.checkTolerance(
                of: second.keyspace("accounts"), keys: accountKeys.keys, replicas: accountKeys.replicas, tolerated: 2,
                r: 3, w: 3, in: cluster)
            await second.close()
        }

        /// The addresses of the placement-change test's n1…n6; no other test uses them.
        static let placementHosts = [13, 14, 15, 17, 18, 19]

        /// `kvctl keyspace alter --rf` streams: the nodes that become replicas of a keyspace's ranges
        /// receive them under load, with no failed request, while the default keyspace moves nothing.
        @Test func raisingAKeyspacesNUnderLoadStreamsItsRanges() async throws {
            let cluster = try ClusterHarness(hosts: Self.placementHosts, replicationFactor: 3)
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            try await Self.kvctl(["keyspace", "create", "sessions", "--rf", "3"], in: cluster)
            let client = try cluster.client(timeout: .seconds(20))
            let admin = try cluster.client(certificate: "admin", timeout: .seconds(10))
            let sessions = client.keyspace("sessions")
            // Keys the load never touches: only the transfer can put them on their new replicas.
            let still = (0..<200).map { "still-\($0)" }
            for key in still { try await sessions.put(Array(key.utf8), value: Array("v-\(key)".utf8)) }
            let before = try await client.latestClusterMap()
            let beforeRing = try before.ring(of: #require(before.keyspace(named: "sessions")))

            let load = RingSplitClusterTests.Load(users: sessions, workers: 4)
            try await load.advance(by: 40)
            let raised = try await offThePool {
                try cluster.kvctl(
                    ["keyspace", "alter", "sessions", "--rf", "5", "--wait-timeout", "240"], timeout: .seconds(300))
            }
            try await load.advance(by: 40)
            await load.finish()
            #expect(raised.status == 0, "alter: \(raised.stdout) \(raised.stderr)")
            let failures = load.failures.withLock { $0 }
            let operations = load.operations.load(ordering: .relaxed)
            #expect(failures.isEmpty, "\(failures.count) of \(operations) failed: \(failures.prefix(5))")

            let map = try await client.latestClusterMap()
            let keyspace = try #require(map.keyspace(named: "sessions"))
            #expect(keyspace.placement == .simple(replicas: 5) && keyspace.pendingPlacement == nil && !map.isChanging)
            #expect(map.placement == before.placement)
            let ring = try map.ring(of: keyspace)
            // Each untouched key is on all five of its replicas, read one node at a time.
            var under: [String] = []
            for key in still {
                let replicas = ring.preferenceList(forKey: Array(key.utf8))
                #expect(replicas.count == 5)
                var copies = 0
                for node in replicas
                where try await admin.keyspace("sessions").replicaRecord(Array(key.utf8), node: node)?.value
                    == Array("v-\(key)".utf8)
                {
                    copies += 1
                }
                if copies < 5 {
                    under.append(
                        "\(key): \(copies) of \(replicas) (before: \(beforeRing.preferenceList(forKey: Array(key.utf8))))"
                    )
                }
            }
            #expect(under.isEmpty, "\(under.count) keys on fewer than 5 replicas: \(under.prefix(3))")
            for (key, value) in load.acknowledged.withLock({ $0 }) {
                #expect(try await sessions.get(Array(key.utf8))?.value == Array(value.utf8), "\(key)")
            }
            // Dropped: every node deletes the keyspace's data, and its keys are an error naming it.
            try await Self.kvctl(["keyspace", "drop", "sessions", "--force"], in: cluster)
            let deadline = ContinuousClock.now + .seconds(60)
            var kept = cluster.ids
            while !kept.isEmpty, ContinuousClock.now < deadline {
                kept.removeAll { cluster.log($0, tail: 400).contains("keyspace dropped") }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(kept.isEmpty, "nodes that did not delete the dropped keyspace: \(kept)")
            let gone = await #expect(throws: KVClientError.self) {
                _ = try await client.keyspace("sessions").get(Array("still-0".utf8))
            }
            #expect("\(gone.map { "\($0)" } ?? "")".contains("dropped"), "\(String(describing: gone))")
            await admin.close()
            await client.close()
        }
    }
}
