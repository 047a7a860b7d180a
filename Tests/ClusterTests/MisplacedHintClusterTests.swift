import Foundation
import KVCore
import KVRPC
import KVTLS
import KVWire
import NIOCore
import Testing

extension RealProcessTests.FirstHalf {
    /// A hint whose target no longer keeps its key (the key moved in a change after the hint was
    /// stored) must reach the key's replicas, not sit on a node that will never serve it (issue 16).
    @Suite(.timeLimit(.minutes(3)))
    struct MisplacedHintClusterTests {
        /// Two nodes, N=1: n1 holds a hint for n2 of a key only n1 keeps, as it would after the key
        /// moved away from n2. n2 refuses the replay (`notReplica`), so n1 writes the hint's record to
        /// the key's replica (itself) and deletes the hint: the key reads back at ALL. Before, n2
        /// took the write, the hint was deleted, and the key was gone for its readers.
        @Test func aHintForANodeThatDoesNotKeepItsKeyGoesToTheKeysReplicas() async throws {
            let cluster = try ClusterHarness(nodes: 2, firstHost: 69, replicationFactor: 1)
            defer { cluster.tearDown() }
            try cluster.startAll()
            let key = try #require(
                try (0..<10_000).map { "misplaced-\($0)" }.first { try cluster.replicas(of: $0) == ["n1"] })

            let connection = try await Self.connect(cluster, to: "n1", as: "client", role: .client)
            let nowMillis = UInt64(Date().timeIntervalSince1970 * 1000)
            let record = Record(
                key: ByteBuffer(string: key), version: Version(hlc: nowMillis << 16, writer: 7), tombstone: false,
                value: ByteBuffer(string: "kept"), expiresAtMillis: nil)
            let answer = try await connection.call(
                .hintRequest(HintRequest(target: "n2", record: record, keyspace: 0)), timeout: .seconds(10))
            await connection.close()
            guard case .hintResponse(let stored) = answer, stored.outcome == .stored else {
                Issue.record("the hint was answered \(answer)")
                return
            }

            let deadline = ContinuousClock.now + .seconds(60)
            var read = try cluster.kvctl(["get", key, "--consistency", "all"])
            while read.stdout != "kept", ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
                read = try cluster.kvctl(["get", key, "--consistency", "all"])
            }
            #expect(read.stdout == "kept", "\(read.stderr)")
            let stats = try await adminStats(
                host: String(cluster.address("n1").split(separator: ":")[0]), port: cluster.port, certs: cluster.certs,
                clusterID: "test")
            #expect(stats.hintsRehomed == 1, "\(stats)")
            #expect(stats.hintsQueued(for: "n2") == 0, "\(stats)")
        }

        /// A raw connection to node `id` holding the `name` certificate.
        static func connect(_ cluster: ClusterHarness, to id: String, as name: String, role: Role) async throws
            -> RPCConnection
        {
            try await rawConnection(
                host: String(cluster.address(id).split(separator: ":")[0]), port: cluster.port, certs: cluster.certs,
                as: name, role: role, clusterID: "test")
        }
    }
}
