import Foundation
import KVTLS
import NIOCore
import NIOPosix
import Testing

/// `kvd --metrics`: Prometheus text over HTTPS, for scrapers holding a certificate of the cluster CA.
extension RealProcessTests {
    @Suite(.timeLimit(.minutes(5)))
    struct MetricsEndpointTests {
        @Test func aNodeServesItsMetricsToCertifiedScrapersOnly() async throws {
            let node = try NodeHarness(host: "127.0.0.51")
            defer { node.tearDown() }
            try node.start(extraArguments: ["--metrics", "127.0.0.51:9411"])
            expectSuccess(try node.kvctl(["put", "k", "v"]))

            let client = try node.tls(as: "client")
            let scrape = try await httpsExchange(
                "GET /metrics HTTP/1.1\r\nHost: 127.0.0.51\r\nConnection: close\r\n\r\n", host: "127.0.0.51",
                port: 9411, tls: client)
            #expect(scrape.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(scrape.prefix(200))")
            #expect(scrape.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
            #expect(scrape.contains("# TYPE quorumkv_hints_stored_total counter\n"))
            #expect(scrape.contains("quorumkv_hints_stored_total{node=\"n1\"} 0\n"))
            #expect(scrape.contains("# TYPE quorumkv_cluster_epoch gauge\n"))
            #expect(scrape.contains("quorumkv_anti_entropy_ranges_due{node=\"n1\"} 0\n"))
            // The put above, counted and timed.
            #expect(scrape.contains("quorumkv_requests_total{node=\"n1\",type=\"putRequest\"} 1\n"))
            #expect(scrape.contains("quorumkv_request_errors_total{node=\"n1\",type=\"putRequest\"} 0\n"))
            #expect(
                scrape.contains(
                    "quorumkv_request_duration_seconds_bucket{node=\"n1\",type=\"putRequest\",le=\"+Inf\"} 1\n"))

            let other = try await httpsExchange(
                "GET / HTTP/1.1\r\nHost: 127.0.0.51\r\nConnection: close\r\n\r\n", host: "127.0.0.51", port: 9411,
                tls: client)
            #expect(other.hasPrefix("HTTP/1.1 404 Not Found\r\n"), "\(other.prefix(200))")
            let post = try await httpsExchange(
                "POST /metrics HTTP/1.1\r\nHost: 127.0.0.51\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                host: "127.0.0.51", port: 9411, tls: client)
            #expect(post.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"), "\(post.prefix(200))")

            // A certificate from another CA gets no answer: the handshake fails.
            let stranger = try TemporaryDirectory()
            defer { stranger.remove() }
            expectSuccess(try run("kvctl", ["certs", "init", "--dir", stranger.path]))
            expectSuccess(
                try run("kvctl", ["certs", "issue", "--dir", stranger.path, "--role", "client", "--name", "eve"]))
            let eve = try TLSContext(
                configuration: TLSConfiguration(
                    caFile: "\(node.certs)/ca.pem", certificateFile: "\(stranger.path)/eve.pem",
                    keyFile: "\(stranger.path)/eve-key.pem"),
                side: .client)
            let refused = try? await httpsExchange(
                "GET /metrics HTTP/1.1\r\nHost: 127.0.0.51\r\nConnection: close\r\n\r\n", host: "127.0.0.51",
                port: 9411, tls: eve)
            #expect(refused == nil || refused == "", "a stranger read: \(refused?.prefix(200) ?? "")")

            // The node still serves after all that.
            expectSuccess(try node.kvctl(["get", "k"]))
        }

        @Test func aBadMetricsAddressIsAClearError() throws {
            let node = try NodeHarness(host: "127.0.0.52")
            defer { node.tearDown() }
            #expect(throws: HarnessError.self) { try node.start(extraArguments: ["--metrics", "127.0.0.52:99999"]) }
            #expect(node.log(tail: 5).contains("is not HOST:PORT"), "\(node.log(tail: 5))")
        }
    }
}

extension NodeHarness {
    /// The client side of TLS with one of this node's certificates.
    func tls(as name: String) throws -> TLSContext {
        try TLSContext(
            configuration: TLSConfiguration(
                caFile: "\(certs)/ca.pem", certificateFile: "\(certs)/\(name).pem", keyFile: "\(certs)/\(name)-key.pem"),
            side: .client)
    }
}

/// Sends `request` over TLS and returns everything the server sent until it closed (within 30 s).
func httpsExchange(_ request: String, host: String, port: Int, tls: TLSContext) async throws -> String {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connectTimeout(.seconds(5))
        .connect(host: host, port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(OpenSSLHandler(context: tls, expectedServerName: host))
                return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    let closer = channel.channel
    let watchdog = Task {
        try await Task.sleep(for: .seconds(30))
        try await closer.close()
    }
    defer { watchdog.cancel() }
    return try await channel.executeThenClose { inbound, outbound in
        try await outbound.write(ByteBuffer(string: request))
        var received = ""
        for try await chunk in inbound { received += String(buffer: chunk) }
        return received
    }
}
