import Foundation
import KVCore
import KVRPC
import KVTLS
import KVWire
import NIOCore
import NIOPosix
import Testing

extension RealProcessTests.FirstHalf {
    /// Real processes, issue 16 ("no limits on connections or memory"): a flood of idle and half-open
    /// connections from one certificate takes no more than its share of a node, which goes on serving
    /// everyone else and counts what it refused.
    @Suite(.timeLimit(.minutes(5)))
    struct ConnectionLimitsClusterTests {
        @Test func aFloodFromOneCertificateDoesNotStopAnotherClientAndIsCounted() async throws {
            let node = try NodeHarness(host: 76)
            defer { node.tearDown() }
            expectSuccess(
                try run("kvctl", ["certs", "issue", "--dir", node.certs, "--role", "client", "--name", "reader"]))
            try node.start(extraArguments: ["--connections-per-identity-max", "8", "--idle-timeout", "5"])
            let flooder = try node.tls(as: "client")

            var held: [RPCConnection] = []
            var halfOpen: [any Channel] = []
            defer {
                for connection in held { connection.startClosing() }
                for channel in halfOpen { channel.close(promise: nil) }
            }
            for _ in 0..<8 {
                held.append(try await Self.connect(node, tls: flooder, as: "client"))
            }
            var refused = 0
            for _ in 0..<12 {
                do {
                    let extra = try await Self.connect(node, tls: flooder, as: "client")
                    extra.startClosing()
                } catch let error as RPCError where error.remoteCode == .overloaded {
                    refused += 1
                }
            }
            // Sockets that never start TLS.
            for _ in 0..<20 {
                halfOpen.append(
                    try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                        .connect(host: node.host, port: node.port).get())
            }
            if held.allSatisfy(\.isActive) {
                // All within the idle timeout, as on any machine not starved for seconds.
                #expect(refused == 12)
            }
            #expect(refused >= 1)

            // Another client reads and writes meanwhile.
            let written = try await offThePool { try node.kvctl(["put", "while-flooded", "yes"], as: "reader") }
            expectSuccess(written)
            let read = try await offThePool { try node.kvctl(["get", "while-flooded"], as: "reader") }
            expectSuccess(read)
            #expect(read.stdout == "yes")

            // Counted, not logged one line each.
            let stats = try await Self.adminStats(node)
            #expect(stats.refused("per_identity") == UInt64(refused), "\(stats)")
            let logged = node.log(tail: 1000).split(separator: "\n").filter {
                $0.contains("refusing connections or requests")
            }
            #expect(logged.count <= 2, "refusals are logged one by one: \(logged)")

            // The idle flood is closed after --idle-timeout, and the certificate may connect again.
            let deadline = ContinuousClock.now + .seconds(60)
            while held.contains(where: \.isActive), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            let stillOpen = held.filter(\.isActive).count
            #expect(stillOpen == 0, "idle connections were not closed")
            let later = try await Self.adminStats(node)
            #expect(later.refused("idle") >= 8, "\(later)")
            let again = try await Self.connect(node, tls: flooder, as: "client")
            defer { again.startClosing() }
            let answer = try await again.call(.pingRequest(PingRequest(epoch: 0, clock: 0)), timeout: .seconds(10))
            #expect(answer.type == .pingResponse)
        }

        static func connect(_ node: NodeHarness, tls: TLSContext, as name: String) async throws -> RPCConnection {
            try await RPCConnection.connect(
                host: node.host, port: node.port, tls: tls,
                hello: Hello(
                    protocolVersion: WireProtocol.version, clusterId: "quorumkv", senderId: name, role: .client,
                    epoch: 0),
                timeout: .seconds(10))
        }

        /// The node's `Admin` stats, through an admin certificate.
        static func adminStats(_ node: NodeHarness) async throws -> NodeStats {
            try await ClusterTests.adminStats(
                host: node.host, port: node.port, certs: node.certs, clusterID: "quorumkv")
        }
    }
}
