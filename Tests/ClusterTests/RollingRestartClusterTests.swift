import Foundation
import KVClient
import Synchronization
import Testing

extension RealProcessTests.SecondHalf {
    /// Real processes: `scripts/rolling-restart.sh` restarts each of 4 nodes (N=3) in turn under a
    /// bounded QUORUM load, with no failed request, and every acknowledged write reads back after.
    @Suite(.timeLimit(.minutes(6)))
    struct RollingRestartClusterTests {
        static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()

        /// A drained node refuses data requests with `shuttingDown` and still answers admin ones and
        /// cluster-map reads (a fresh kvctl bootstraps from it); it is not ready while drained;
        /// `--resume` takes requests again.
        @Test func aDrainedNodeRefusesRequestsUntilResumed() throws {
            let node = try NodeHarness(host: 119)
            defer { node.tearDown() }
            try node.start()
            expectSuccess(try node.kvctl(["put", "before", "1"]))
            let drained = try node.kvctl(["drain", "n1"])
            expectSuccess(drained)
            #expect(drained.stdout.contains("n1: drained (0 request(s) still in flight, store flushed)"))
            let refused = try node.kvctl(["get", "before"])
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("draining"), "\(refused.stderr)")
            // Status reaches it and says why it is out of service.
            let status = try node.kvctl(["status"])
            #expect((status.stdout + status.stderr).contains("the node is draining"), "\(status.stdout)")
            let notReady = try node.kvctl(["wait-ready", "n1", "--wait-timeout", "1"])
            #expect(notReady.status == 1)
            #expect(notReady.stderr.contains("n1 to take requests"), "\(notReady.stderr)")
            expectSuccess(try node.kvctl(["drain", "n1", "--resume"]))
            #expect(try node.kvctl(["get", "before"]).stdout == "1")
            expectSuccess(try node.kvctl(["wait-ready", "n1", "--wait-timeout", "30"]))
            #expect(try node.kvctl(["drain", "n1", "--drain-timeout", "61"]).status == 64)
        }

        @Test func aRollingRestartUnderLoadFailsNoRequest() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 115)
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client(timeout: .seconds(10)) { $0.healthCheckInterval = .milliseconds(500) }
            let keys = 500
            for index in 0..<keys {
                try await client.put(Array("r-\(index)".utf8), value: Array("v-\(index)".utf8))
            }

            let restarted = Mutex<[String]>([])
            let load = MembershipChangeClusterTests.Load(client: client, keys: keys, prefix: "r")
            let script = try await Self.rollingRestart(cluster) { id in
                // kvd drains again on SIGTERM; the script drained it already.
                cluster.stop(id, signal: SIGTERM)
                try await offThePool { try cluster.start(id) }
                restarted.withLock { $0.append(id) }
            }
            let operations = await load.finish()
            #expect(script.status == 0, "rolling-restart.sh failed:\n\(script.stderr)")
            #expect(restarted.withLock { $0 } == ["n1", "n2", "n3", "n4"], "\(script.stderr)")
            #expect(script.stderr.contains("restarted n1 n2 n3 n4"))
            print("rolling restart under load: \(operations) operations\n\(script.stderr)")
            #expect(operations > 50)
            let failures = load.failures.withLock { $0 }
            #expect(failures.isEmpty, "\(failures.count) failed: \(failures.prefix(5))")

            var expected = Dictionary(uniqueKeysWithValues: (0..<keys).map { ("r-\($0)", "v-\($0)") })
            expected.merge(load.acknowledged.withLock { $0 }) { $1 }
            let wrong = try await MembershipChangeClusterTests.checkReadable(expected, with: client)
            #expect(wrong.isEmpty, "\(wrong.count) keys read wrong: \(wrong.prefix(5))")
            await client.close()
        }

        /// Runs `scripts/rolling-restart.sh` on `cluster` (admin certificate) and returns its result. The
        /// script's restart command asks this test to restart each node (the harness owns the
        /// processes, so that they are stopped when the test ends) and waits until `restart` did it.
        static func rollingRestart(
            _ cluster: ClusterHarness, restart: @escaping @Sendable (String) async throws -> Void
        ) async throws -> CommandResult {
            let requests = cluster.directory.path + "/restarts"
            try FileManager.default.createDirectory(atPath: requests, withIntermediateDirectories: true)
            let command = "touch \(requests)/{id}.asked; while [ ! -e \(requests)/{id}.done ]; do sleep 0.05; done"
            let restarter = Task {
                let deadline = ContinuousClock.now + .seconds(300)
                while !Task.isCancelled, ContinuousClock.now < deadline {
                    let asked = (try? FileManager.default.contentsOfDirectory(atPath: requests)) ?? []
                    for file in asked where file.hasSuffix(".asked") {
                        let id = String(file.dropLast(".asked".count))
                        try? FileManager.default.removeItem(atPath: "\(requests)/\(file)")
                        try await restart(id)
                        _ = FileManager.default.createFile(atPath: "\(requests)/\(id).done", contents: nil)
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            defer { restarter.cancel() }
            return try await offThePool {
                try run(
                    "/usr/bin/env",
                    [
                        "KVCTL=\(binDirectory.appendingPathComponent("kvctl").path)",
                        "QUORUMKV_CLUSTER=\(cluster.clusterFile)", "QUORUMKV_CA=\(cluster.certs)/ca.pem",
                        "QUORUMKV_CERT=\(cluster.certs)/admin.pem", "QUORUMKV_KEY=\(cluster.certs)/admin-key.pem",
                        "bash", repositoryRoot.appendingPathComponent("scripts/rolling-restart.sh").path,
                        "--restart", command, "--wait-timeout", "120",
                    ], timeout: .seconds(300))
            }
        }
    }
}
