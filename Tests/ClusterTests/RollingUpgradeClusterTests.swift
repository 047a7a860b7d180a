import Foundation
import KVClient
import KVTLS
import Synchronization
import Testing

extension RealProcessTests.SecondHalf {
    /// Real processes: a rolling upgrade from protocol version 3 to 4 under load. Four nodes start as
    /// the previous release (`kvd --protocol-max 3`); `scripts/rolling-restart.sh` restarts each in
    /// turn without the flag, under a bounded QUORUM load from a version-4 SDK, with no failed request.
    /// The version-4 feature that needs every node (`Heartbeat` probes) stays off while any member is
    /// at 3, and is on once all are at 4.
    @Suite(.timeLimit(.minutes(6)))
    struct RollingUpgradeClusterTests {
        /// What the SDK saw after each restart: the node restarted, whether Heartbeat was on, and the
        /// versions the upgraded node reported.
        struct Step: Sendable {
            var node: String
            var heartbeats: Bool
            var reported: [String: UInt16]
            /// Heartbeats each node upgraded so far had answered (`quorumkv_requests_total`).
            var heartbeatsAnswered: [String: Double]
        }

        static let metricsPort = 9411

        /// Each node's `protocolVersion` in `kvctl status --json`, in the order listed (nil: absent).
        static func protocolVersions(inStatus json: String) -> [Int?] {
            let document = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
            let nodes = document?["nodes"] as? [[String: Any]] ?? []
            return nodes.map { $0["protocolVersion"] as? Int }
        }

        /// The series counting the heartbeats `id` answered.
        static func heartbeatSeries(_ id: String) -> String {
            "quorumkv_requests_total{node=\"\(id)\",type=\"heartbeatRequest\",keyspace=\"none\"}"
        }

        /// `--protocol-max` takes only a version this build speaks (3 or 4): anything else is refused
        /// at start, before the node touches its data.
        @Test(arguments: ["2", "5", "0", "x"])
        func kvdRefusesAProtocolMaxItCannotSpeak(_ value: String) throws {
            let result = try run("kvd", ["--protocol-max", value])
            #expect(result.status == 64, "\(result.stderr)")
            #expect(result.stderr.contains("--protocol-max"), "\(result.stderr)")
            // kvctl's flag takes the same versions (it fails before it connects anywhere).
            let kvctl = try run(
                "kvctl",
                [
                    "status", "--protocol-max", value, "--endpoints", Loopback.host(15) + ":1", "--ca", "-", "--cert",
                    "-",
                ])
            #expect(kvctl.status == 64, "\(kvctl.stderr)")
        }

        @Test func aRollingUpgradeFrom3To4UnderLoadFailsNoRequest() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 15)
            defer { cluster.tearDown() }
            // Each node serves /metrics, where the heartbeats it answered are counted.
            let metrics = Dictionary(
                uniqueKeysWithValues: zip(cluster.ids, cluster.hosts).map {
                    ($0, ["--metrics", "\($1):\(Self.metricsPort)"])
                })
            for id in cluster.ids { cluster.nodeArguments[id] = ["--protocol-max", "3"] + metrics[id, default: []] }
            try await offThePool { try cluster.startAll() }
            let tls = try TLSContext(
                configuration: TLSConfiguration(
                    caFile: "\(cluster.certs)/ca.pem", certificateFile: "\(cluster.certs)/client.pem",
                    keyFile: "\(cluster.certs)/client-key.pem"),
                side: .client)
            let hosts = Dictionary(uniqueKeysWithValues: zip(cluster.ids, cluster.hosts))
            /// The heartbeats `id` has answered, once `condition` holds of the count (60 s at most).
            @Sendable func heartbeatsAnswered(_ id: String, until condition: @escaping (Double) -> Bool = { _ in true })
                async throws -> Double
            {
                let samples = try await scrapeSamples(host: hosts[id] ?? "", port: Self.metricsPort, tls: tls) {
                    condition($0[Self.heartbeatSeries(id)] ?? 0)
                }
                return samples[Self.heartbeatSeries(id)] ?? 0
            }
            let client = try cluster.client(timeout: .seconds(10)) { $0.healthCheckInterval = .milliseconds(500) }
            let keys = 300
            for index in 0..<keys {
                try await client.put(Array("u-\(index)".utf8), value: Array("v-\(index)".utf8))
            }
            // Every node speaks 3: the SDK (version 4) fell back to 3 with each, and keeps Ping.
            #expect(client.protocolVersions().values.allSatisfy { $0 == 3 }, "\(client.protocolVersions())")
            #expect(try await client.usesHeartbeats() == false)
            // kvctl as the previous release (no retry needed) sees every node at 3.
            let before = try await offThePool { try cluster.kvctl(["status", "--json", "--protocol-max", "3"]) }
            expectSuccess(before)
            #expect(Self.protocolVersions(inStatus: before.stdout) == [3, 3, 3, 3], "\(before.stdout)")

            let steps = Mutex<[Step]>([])
            let load = MembershipChangeClusterTests.Load(client: client, keys: keys, prefix: "u")
            let script = try await RollingRestartClusterTests.rollingRestart(cluster) { id in
                // The upgrade: the same node, restarted without `--protocol-max 3`.
                cluster.stop(id, signal: SIGTERM)
                cluster.nodeArguments[id] = metrics[id, default: []]
                try await offThePool { try cluster.start(id) }
                let reported = (try? await client.memberProtocolVersions(node: id)) ?? [:]
                let heartbeats = (try? await client.usesHeartbeats()) ?? false
                var answered: [String: Double] = [:]
                let upgraded = steps.withLock { $0.map(\.node) } + [id]
                for node in upgraded {
                    answered[node] = (try? await heartbeatsAnswered(node)) ?? -1
                }
                steps.withLock {
                    $0.append(Step(node: id, heartbeats: heartbeats, reported: reported, heartbeatsAnswered: answered))
                }
            }
            let operations = await load.finish()
            #expect(script.status == 0, "rolling-restart.sh failed:\n\(script.stderr)")
            let seen = steps.withLock { $0 }
            #expect(seen.map(\.node) == ["n1", "n2", "n3", "n4"], "\(script.stderr)")
            print("rolling upgrade under load: \(operations) operations\n\(script.stderr)")
            #expect(operations > 50)
            let failures = load.failures.withLock { $0 }
            #expect(failures.isEmpty, "\(failures.count) failed: \(failures.prefix(5))")

            // While any member was at 3 the feature stayed off; each upgraded node reported itself at
            // 4 (a version-4 answer to the version-4 SDK) and no member above what it spoke.
            for step in seen.dropLast() {
                #expect(!step.heartbeats, "Heartbeat on after \(step.node) with members still at 3")
                // Neither the SDK nor an upgraded node sent one: every node's switch was off too.
                #expect(step.heartbeatsAnswered.values.allSatisfy { $0 == 0 }, "\(step.heartbeatsAnswered)")
            }
            for step in seen {
                #expect(step.reported[step.node] == 4, "\(step.node) reported \(step.reported)")
            }

            // At the end every node reports every member at 4, and the SDK switches Heartbeat on.
            let members = Set(cluster.ids)
            let deadline = ContinuousClock.now + .seconds(60)
            var reports: [String: [String: UInt16]] = [:]
            var heartbeats = false
            while ContinuousClock.now < deadline {
                for id in cluster.ids {
                    reports[id] = (try? await client.memberProtocolVersions(node: id)) ?? [:]
                }
                heartbeats = try await client.usesHeartbeats()
                let allAt4 = reports.values.allSatisfy { report in
                    Set(report.keys) == members && report.values.allSatisfy { $0 == 4 }
                }
                if allAt4 && heartbeats { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            for id in cluster.ids {
                let report = reports[id] ?? [:]
                #expect(
                    Set(report.keys) == members && report.values.allSatisfy { $0 == 4 }, "\(id) reported \(report)")
            }
            #expect(heartbeats, "the SDK did not switch Heartbeat on: \(client.protocolVersions())")
            let status = try await offThePool { try cluster.kvctl(["status", "--json"]) }
            expectSuccess(status)
            #expect(Self.protocolVersions(inStatus: status.stdout) == [4, 4, 4, 4], "\(status.stdout)")

            var expected = Dictionary(uniqueKeysWithValues: (0..<keys).map { ("u-\($0)", "v-\($0)") })
            expected.merge(load.acknowledged.withLock { $0 }) { $1 }
            let wrong = try await MembershipChangeClusterTests.checkReadable(expected, with: client)
            #expect(wrong.isEmpty, "\(wrong.count) keys read wrong: \(wrong.prefix(5))")
            await client.close()

            // With the SDK gone (at most one of its heartbeats still in flight per node), the heartbeats
            // each node still answers come from its three peers, one a second each: the nodes switched
            // Heartbeat on by the same rule.
            for id in cluster.ids {
                let before = try await heartbeatsAnswered(id)
                let after = try await heartbeatsAnswered(id) { $0 >= before + 3 }
                #expect(after >= before + 3, "\(id) answered no heartbeats from its peers")
            }
        }
    }
}
