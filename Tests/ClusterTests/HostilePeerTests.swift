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
    }
}
