import Foundation
import KVCore
import KVRPC
import KVTLS
import KVWire
import NIOCore
import Testing

extension RealProcessTests {
    /// Real processes: a holder of a valid certificate sends numbers no honest peer sends (issue 16).
    /// The node refuses them and goes on serving, its data intact.
    @Suite(.timeLimit(.minutes(2)))
    struct HostilePeerTests {
        /// A raw connection to `node` holding its `name` certificate.
        static func connect(_ node: NodeHarness, as name: String, role: Role) async throws -> RPCConnection {
            let tls = try TLSContext(
                configuration: TLSConfiguration(
                    caFile: "\(node.certs)/ca.pem", certificateFile: "\(node.certs)/\(name).pem",
                    keyFile: "\(node.certs)/\(name)-key.pem"),
                side: .client)
            return try await RPCConnection.connect(
                host: node.host, port: node.port, tls: tls,
                hello: Hello(
                    protocolVersion: WireProtocol.version, clusterId: "quorumkv", senderId: name, role: role, epoch: 0),
                timeout: .seconds(10))
        }

        /// One `Ping` with clock 2^64−1 killed a release node at once; a `Put` whose version is near
        /// 2^64 would have trapped every later reader of its key. Both are refused now (counted), and
        /// the node's clock is not dragged along.
        @Test func clocksAndVersionsFromTheFarFutureAreRefused() async throws {
            let node = try NodeHarness(host: "127.0.0.108")
            defer { node.tearDown() }
            try node.start()
            expectSuccess(try node.kvctl(["put", "kept", "value"]))
            let connection = try await Self.connect(node, as: "client", role: .client)
            await #expect(throws: RPCError.remote(.invalidRequest, message: "")) {
                _ = try await connection.call(.pingRequest(PingRequest(epoch: 0, clock: .max)), timeout: .seconds(10))
            }
            let future = Version(hlc: .max - 1, writer: 7)
            await #expect(throws: RPCError.remote(.invalidRequest, message: "")) {
                _ = try await connection.call(
                    .putRequest(
                        PutRequest(
                            key: ByteBuffer(string: "kept"), value: ByteBuffer(string: "from the future"),
                            version: future, tombstone: false, origin: .client, epoch: 0)),
                    timeout: .seconds(10))
            }
            // Still serving, on the same connection: the clock it answers with is today's.
            let answer = try await connection.call(
                .pingRequest(PingRequest(epoch: 0, clock: 0)), timeout: .seconds(10))
            guard case .pingResponse(let pong) = answer else {
                Issue.record("answered \(answer.type)")
                return
            }
            let nowMillis = UInt64(Date().timeIntervalSince1970 * 1000)
            #expect(pong.clock >> 16 <= nowMillis + 1000, "the node's clock was dragged into the future")
            await connection.close()
            let read = try node.kvctl(["get", "kept"])
            #expect(read.stdout == "value")
        }

        /// A private key readable by others stops `kvd` with a clear message; leaf certificates live
        /// 90 days by default, and `kvctl status` shows when each node's expires.
        @Test func keysMustBePrivateAndCertificateExpiryIsShown() async throws {
            let node = try NodeHarness(host: "127.0.0.109")
            defer { node.tearDown() }
            let key = "\(node.certs)/n1-key.pem"
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: key)
            #expect(throws: HarnessError.self) { try node.start() }
            #expect(node.log(tail: 5).contains("chmod 600"), "\(node.log(tail: 5))")
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key)
            try node.start()
            let status = try node.kvctl(["status", "--json"])
            expectSuccess(status)
            let document = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
            let nodes = document?["nodes"] as? [[String: Any]] ?? []
            let notAfter = try #require(nodes.first?["certificateNotAfterSeconds"] as? Double, "\(status.stdout)")
            let days = (notAfter - Date().timeIntervalSince1970) / 86_400
            #expect((89...90).contains(days.rounded(.down)), "the certificate expires in \(days) days")
        }
    }
}
