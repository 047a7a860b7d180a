import Foundation
import KVClient
import KVCore
import MetricsTestKit
import Testing

/// Four real nodes, N=3: the SDK coordinates quorum reads and writes and keeps serving with a node down.
extension RealProcessTests.FirstHalf {
    @Suite(.timeLimit(.minutes(5)))
    struct QuorumClusterTests {
        @Test func quorumReadsAndWritesGoOnWithOneNodeDown() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 111)
            defer { cluster.tearDown() }
            try cluster.startAll()
            let metrics = TestMetrics()
            let client = try cluster.client { $0.metricsFactory = metrics }

            let keys = (0..<200).map { "key-\($0)" }
            for key in keys {
                try await client.put(Array(key.utf8), value: Array("v1-\(key)".utf8))
            }

            cluster.stop("n2", signal: SIGKILL)

            for key in keys {
                let found = try await client.get(Array(key.utf8))
                #expect(found.map { String(decoding: $0.value, as: UTF8.self) } == "v1-\(key)")
            }
            for key in keys {
                try await client.put(Array(key.utf8), value: Array("v2-\(key)".utf8))
            }
            for key in keys {
                let found = try await client.get(Array(key.utf8), consistency: .quorum)
                #expect(found.map { String(decoding: $0.value, as: UTF8.self) } == "v2-\(key)")
            }

            // ALL cannot be met for keys that n2 replicates, and says so at once, naming n2.
            let onDownNode = try #require(try keys.first { try cluster.replicas(of: $0).contains("n2") })
            let started = ContinuousClock.now
            do {
                try await client.put(Array(onDownNode.utf8), value: Array("v3".utf8), consistency: .all)
                Issue.record("a write at ALL succeeded with a replica down")
            } catch let error as KVClientError {
                #expect(error.isUnavailable)
                #expect(error.description.contains("3 of 3"))
                #expect(error.description.contains("n2"))
            }
            #expect(ContinuousClock.now - started < .seconds(10), "ALL must fail fast, not wait for the 20 s deadline")
            let elsewhere = try #require(try keys.first { try !cluster.replicas(of: $0).contains("n2") })
            try await client.put(Array(elsewhere.utf8), value: Array("v3".utf8), consistency: .all)
            await #expect(throws: KVClientError.self) { try await client.put([], value: [1]) }

            await client.close()
            // What the application saw, as the client reports it: every operation, the consistency it
            // asked for (its own or the configuration's QUORUM) and its outcome, the successful ones
            // timed, and the hints it left for n2.
            func operations(_ operation: String, _ consistency: String, _ outcome: String) -> Int64 {
                (try? metrics.expectCounter(
                    "quorumkv_client_operations_total",
                    [
                        ("operation", operation), ("consistency", consistency), ("keyspace", "default"),
                        ("outcome", outcome),
                    ]))?
                    .totalValue ?? 0
            }
            #expect(operations("put", "quorum", "ok") == 400)
            #expect(operations("put", "all", "ok") == 1)
            #expect(operations("put", "all", "unavailable") == 1)
            #expect(operations("put", "quorum", "invalid_argument") == 1)
            #expect(operations("get", "quorum", "ok") == 400)
            let putTimes = try metrics.expectTimer(
                "quorumkv_client_operation_duration_seconds",
                [("operation", "put"), ("consistency", "quorum"), ("keyspace", "default")])
            #expect(putTimes.values.count == 400)
            #expect(putTimes.values.allSatisfy { $0 > 0 && $0 < 20_000_000_000 })
            let allTimes = try metrics.expectTimer(
                "quorumkv_client_operation_duration_seconds",
                [("operation", "put"), ("consistency", "all"), ("keyspace", "default")])
            #expect(allTimes.values.count == 1)
            #expect(client.hintsHandedOff > 0)
            #expect(try metrics.expectCounter("quorumkv_client_hints_total").totalValue == Int64(client.hintsHandedOff))
        }

        @Test func quorumThatCannotBeReachedFailsFastNamingTheReplicas() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 121)
            defer { cluster.tearDown() }
            try cluster.startAll()
            let client = try cluster.client()
            let key = "lonely"
            let replicas = try cluster.replicas(of: key)
            cluster.stop(replicas[0], signal: SIGKILL)
            cluster.stop(replicas[1], signal: SIGKILL)

            let started = ContinuousClock.now
            do {
                try await client.put(Array(key.utf8), value: Array("x".utf8))
                Issue.record("a QUORUM write succeeded with 2 of 3 replicas down")
            } catch let error as KVClientError {
                #expect(error.description.contains("2 of 3"), "\(error)")
                #expect(error.description.contains(replicas[0]) && error.description.contains(replicas[1]), "\(error)")
            }
            #expect(ContinuousClock.now - started < .seconds(10), "must fail fast, not wait for the 20 s deadline")
            // ONE still works: one replica is up.
            try await client.put(Array(key.utf8), value: Array("x".utf8), consistency: .one)
            #expect(try await client.get(Array(key.utf8), consistency: .one)?.value == Array("x".utf8))
            await client.close()
        }

        @Test func kvctlCoordinatesAndReadsSingleReplicas() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 131)
            defer { cluster.tearDown() }
            try cluster.startAll()

            expectSuccess(try cluster.kvctl(["put", "colour", "blue", "--consistency", "all"]))
            #expect(try cluster.kvctl(["get", "colour", "--r", "3"]).stdout == "blue")

            let ring = try cluster.kvctl(["ring", "colour", "--json"])
            expectSuccess(ring)
            let document = try JSONSerialization.jsonObject(with: Data(ring.stdout.utf8)) as? [String: Any]
            let replicas = try #require(document?["replicas"] as? [String])
            #expect(replicas == (try cluster.replicas(of: "colour")))

            for node in cluster.ids {
                let direct = try cluster.kvctl(["get", "colour", "--node", node])
                if replicas.contains(node) {
                    #expect(direct.stdout == "blue", "\(node): \(direct.stderr)")
                    #expect(direct.stderr.contains("version"))
                } else {
                    #expect(direct.status == 2, "\(node) is not a replica of the key")
                }
            }

            // A direct write reaches one replica only; a quorum read still answers the newest version.
            expectSuccess(try cluster.kvctl(["put", "colour", "green", "--node", replicas[0]]))
            #expect(try cluster.kvctl(["get", "colour", "--node", replicas[1]]).stdout == "blue")
            #expect(try cluster.kvctl(["get", "colour", "--r", "3", "--repair", "blocking"]).stdout == "green")
            // That read repaired the replicas that still held blue.
            #expect(try cluster.kvctl(["get", "colour", "--node", replicas[1]]).stdout == "green")

            // Direct access needs an admin certificate.
            let refused = try cluster.kvctl(["get", "colour", "--node", replicas[0]], as: "client")
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("admin"))

            let status = try cluster.kvctl(["status"])
            expectSuccess(status)
            for node in cluster.ids {
                #expect(status.stdout.contains(node))
            }
            cluster.stop("n4", signal: SIGKILL)
            let degraded = try cluster.kvctl(["status", "--json"])
            #expect(degraded.status == 1)
            #expect(degraded.stdout.contains("\"up\":false"))
        }
    }
}
