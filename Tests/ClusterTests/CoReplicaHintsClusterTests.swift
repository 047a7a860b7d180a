import Foundation
import KVClient
import KVCore
import Testing

extension RealProcessTests.FirstHalf {
    /// Three nodes with N = 3: no node past a key's replicas to hold a hint. A node that was down came
    /// back without what it missed, and nothing said so (no hint queued, `kvctl status` healthy, `kvctl
    /// wait-ready` ready) until anti-entropy's next pass (a probe found it). The replicas now hold each
    /// other's hints (`WriteOperation.Configuration.hintsToCoReplicas`), replayed when it returns.
    @Suite(.timeLimit(.minutes(3)))
    struct CoReplicaHintsClusterTests {
        @Test func aNodeBackFromTheDeadGetsWhatItMissedWithoutAFallback() async throws {
            let cluster = try ClusterHarness(hosts: [20, 29, 110], replicationFactor: 3)
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client()
            let admin = try cluster.client(certificate: "admin")
            cluster.stop("n3", signal: SIGKILL)
            var versions: [String: Version] = [:]
            for index in 0..<200 {
                let key = "missed-\(index)"
                versions[key] = Version(try await client.put(Array(key.utf8), value: Array(key.utf8)))
            }
            // Hand-off runs in the background, after each write was acknowledged.
            try await eventually { client.hintsHandedOff >= 200 }
            #expect(client.hintsHandedOff >= 200, "every write n3 missed needs a hint")
            let held = try await admin.status().filter { $0.nodeID != "n3" }.compactMap(\.hintsQueued).reduce(0, +)
            #expect(held >= 200, "the other replicas hold them: \(held)")

            try await offThePool { try cluster.start("n3") }
            let queued = try await admin.hintsQueuedOnceDrained(within: .seconds(60))
            #expect(queued == 0, "hint queues did not drain within 60 s")
            var behind: [String] = []
            for (key, version) in versions.sorted(by: { $0.key < $1.key }) {
                let record = try await admin.replicaRecord(Array(key.utf8), node: "n3")
                if record?.version != version { behind.append(key) }
            }
            #expect(behind.isEmpty, "\(behind.count) of 200 keys are not on n3")
            await client.close()
            await admin.close()
        }
    }
}
