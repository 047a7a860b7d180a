import Foundation
import KVClient
import KVTLS
import NIOCore
import NIOPosix
import Testing

/// `kvd --metrics`: Prometheus text over HTTPS, for scrapers holding a certificate of the cluster CA.
extension RealProcessTests.SecondHalf {
    @Suite(.timeLimit(.minutes(5)))
    struct MetricsEndpointTests {
        @Test func aNodeServesItsMetricsToCertifiedScrapersOnly() async throws {
            let node = try NodeHarness(host: 51)
            defer { node.tearDown() }
            try node.start(extraArguments: ["--metrics", node.host + ":9411"])
            expectSuccess(try node.kvctl(["put", "k", "v"]))

            let client = try node.tls(as: "client")
            let scrape = try await httpsExchange(
                "GET /metrics HTTP/1.1\r\nHost: \(node.host)\r\nConnection: close\r\n\r\n", host: node.host,
                port: 9411, tls: client)
            #expect(scrape.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(scrape.prefix(200))")
            #expect(scrape.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
            #expect(scrape.contains("# TYPE quorumkv_hints_stored_total counter\n"))
            #expect(scrape.contains("quorumkv_hints_stored_total{node=\"n1\",keyspace=\"default\"} 0\n"))
            #expect(scrape.contains("# TYPE quorumkv_cluster_epoch gauge\n"))
            #expect(scrape.contains("quorumkv_anti_entropy_ranges_due{node=\"n1\",keyspace=\"default\"} 0\n"))
            // The put above, counted and timed.
            #expect(
                scrape.contains("quorumkv_requests_total{node=\"n1\",type=\"putRequest\",keyspace=\"default\"} 1\n"))
            #expect(
                scrape.contains(
                    "quorumkv_request_errors_total{node=\"n1\",type=\"putRequest\",keyspace=\"default\"} 0\n"))
            // Taken on the connection's event loop, straight to the group commit (issue 21).
            #expect(
                scrape.contains(
                    "quorumkv_requests_on_event_loop_total{node=\"n1\",type=\"putRequest\",keyspace=\"default\"} 1\n"))
            #expect(
                scrape.contains(
                    "quorumkv_request_duration_seconds_bucket{node=\"n1\",type=\"putRequest\",keyspace=\"default\",le=\"+Inf\"} 1\n"
                ))
            // Written by the group commit on that event loop, and answered after the WAL's fsync (this
            // node's durability is `sync`), not by a storage thread.
            #expect(scrape.contains("quorumkv_write_batches_total{node=\"n1\",writer=\"event_loop\"} 1\n"))
            #expect(scrape.contains("quorumkv_write_batches_total{node=\"n1\",writer=\"pool\"} 0\n"))
            // A keyspace's requests under its name, as the node's map names it.
            expectSuccess(try node.kvctl(["keyspace", "create", "sessions", "--rf", "1"]))
            expectSuccess(try node.kvctl(["put", "--keyspace", "sessions", "k", "v"]))
            let again = try await httpsExchange(
                "GET /metrics HTTP/1.1\r\nHost: \(node.host)\r\nConnection: close\r\n\r\n", host: node.host,
                port: 9411, tls: client)
            #expect(
                again.contains("quorumkv_requests_total{node=\"n1\",type=\"putRequest\",keyspace=\"sessions\"} 1\n"))
            #expect(again.contains("quorumkv_requests_total{node=\"n1\",type=\"putRequest\",keyspace=\"default\"} 1\n"))

            let other = try await httpsExchange(
                "GET / HTTP/1.1\r\nHost: \(node.host)\r\nConnection: close\r\n\r\n", host: node.host, port: 9411,
                tls: client)
            #expect(other.hasPrefix("HTTP/1.1 404 Not Found\r\n"), "\(other.prefix(200))")
            let post = try await httpsExchange(
                "POST /metrics HTTP/1.1\r\nHost: \(node.host)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                host: node.host, port: 9411, tls: client)
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
                "GET /metrics HTTP/1.1\r\nHost: \(node.host)\r\nConnection: close\r\n\r\n", host: node.host,
                port: 9411, tls: eve)
            #expect(refused == nil || refused == "", "a stranger read: \(refused?.prefix(200) ?? "")")

            // The node still serves after all that.
            expectSuccess(try node.kvctl(["get", "k"]))
        }

        /// The health gauges in a real scrape, moving when they should: process figures above 0, disk
        /// used within 5 % of `du`, the certificate's expiry; with n3 SIGKILLed and writes queued for
        /// it, healthy nodes drop from 4 to 3, ranges are under-replicated and the lag of n3's hints grows.
        @Test func healthGaugesFollowTheNodeAndTheCluster() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 225, replicationFactor: 3)
            defer { cluster.tearDown() }
            cluster.nodeArguments["n1"] = ["--metrics", cluster.hosts[0] + ":9411", "--anti-entropy-interval", "0"]
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client()
            for index in 0..<200 {
                _ = try await client.put(Array("health-\(index)".utf8), value: Array(repeating: 7, count: 1000))
            }
            let tls = try TLSContext(
                configuration: TLSConfiguration(
                    caFile: "\(cluster.certs)/ca.pem", certificateFile: "\(cluster.certs)/client.pem",
                    keyFile: "\(cluster.certs)/client-key.pem"),
                side: .client)
            func scrape(until condition: ([String: Double]) -> Bool = { _ in true }) async throws -> [String: Double] {
                try await scrapeSamples(host: cluster.hosts[0], port: 9411, tls: tls, until: condition)
            }
            let node = "{node=\"n1\"}"
            let inDefault = "{node=\"n1\",keyspace=\"default\"}"
            let defaultKeys = "quorumkv_keyspace_keys\(inDefault)"
            let up = try await scrape {
                ($0["quorumkv_healthy_nodes\(node)"] ?? 0) == 4
                    && ($0["quorumkv_peer_ping_seconds{node=\"n1\",peer=\"n2\"}"] ?? 0) > 0
                    && ($0[defaultKeys] ?? 0) > 0
            }
            #expect(up[defaultKeys] ?? 0 <= 200, "n1's share of the 200 keys, estimated")
            #expect(up["process_cpu_seconds_total\(node)"] ?? 0 > 0)
            #expect(up["process_resident_memory_bytes\(node)"] ?? 0 > 1_000_000)
            #expect(up["process_open_fds\(node)"] ?? 0 > 5)
            #expect(up["quorumkv_disk_free_bytes\(node)"] ?? 0 > 0)
            #expect(up["quorumkv_disk_reserve_bytes\(node)"] == 536_870_912, "the default --disk-reserve-bytes")
            #expect(up["quorumkv_storage_failed\(node)"] == 0)
            #expect(up["quorumkv_under_replicated_ranges\(inDefault)"] == 0)
            #expect(up["quorumkv_under_replicated_keys\(inDefault)"] == 0)
            #expect(up["quorumkv_hint_queue_bytes\(node)"] == 0)
            #expect(up["quorumkv_peer_ping_seconds{node=\"n1\",peer=\"n2\"}"] ?? 0 > 0, "a ping's round trip")
            #expect(up["quorumkv_rocksdb_memtable_bytes\(node)"] ?? 0 > 0, "the puts sit in the memtable")
            #expect(up["quorumkv_rocksdb_pending_compaction_bytes\(node)"] != nil)
            #expect(up["quorumkv_rocksdb_live_table_bytes\(node)"] != nil)
            let cacheCapacity = up["quorumkv_rocksdb_block_cache_capacity_bytes\(node)"]
            #expect(cacheCapacity.map { Int($0) } == 268_435_456, "the default --block-cache-bytes")
            #expect(up["quorumkv_rocksdb_bloom_filter_skips_total\(node)"] != nil)
            let notAfter = try #require(up["quorumkv_certificate_expiry_timestamp_seconds\(node)"])
            #expect(
                notAfter > Date().timeIntervalSince1970 + 86400, "the harness's certificates last longer than a day")
            // Disk used against du, with nothing written meanwhile: a scrape after the next reading.
            let du = try run("/usr/bin/du", ["-s", "-B1", "\(cluster.directory.path)/n1"])
            let duBytes = try #require(Double(du.stdout.split(separator: "\t").first ?? ""))
            let reported = try await scrape {
                abs(($0["quorumkv_disk_used_bytes\(node)"] ?? 0) - duBytes) <= duBytes * 0.05
            }
            let used = reported["quorumkv_disk_used_bytes\(node)"] ?? 0
            #expect(abs(used - duBytes) <= duBytes * 0.05, "disk used \(used), du \(duBytes)")

            expectSuccess(try cluster.kvctl(["keyspace", "create", "events", "--rf", "3"]))
            cluster.stop("n3")
            // 200 keys: n1 is the fallback, holding a hint for n3, of the keys it does not replicate.
            for index in 0..<200 {
                _ = try await client.put(Array("health-\(index)".utf8), value: Array("while n3 is down".utf8))
                _ = try await client.keyspace("events").put("event-\(index)", value: "while n3 is down")
            }
            let lagging = try await scrape {
                ($0["quorumkv_healthy_nodes\(node)"] ?? 0) == 3
                    && ($0["quorumkv_hint_oldest_age_seconds{node=\"n1\",target=\"n3\"}"] ?? 0) > 1
            }
            #expect(lagging["quorumkv_healthy_nodes\(node)"] == 3)
            #expect(lagging["quorumkv_under_replicated_ranges\(inDefault)"] ?? 0 > 0)
            // n3 replicates 3/4 of the 200 keys (150); RocksDB counts overwrites until compaction: a wide margin.
            let underKeys = lagging["quorumkv_under_replicated_keys\(inDefault)"] ?? 0
            #expect(underKeys >= 50 && underKeys <= 600, "keys estimated under-replicated: \(underKeys)")
            #expect(lagging["quorumkv_hint_queue_bytes\(node)"] ?? 0 > 0, "n1 holds hints for n3")
            #expect(lagging["quorumkv_hint_oldest_age_seconds{node=\"n1\",target=\"n3\"}"] ?? 0 > 1)
            #expect(lagging["quorumkv_hints_stored_total{node=\"n1\",keyspace=\"events\"}"] ?? 0 > 0)

            // n3 back: n1 replays its hints, counted under each hint's keyspace.
            try await offThePool { try cluster.start("n3") }
            func hints(_ what: String, _ keyspace: String) -> String {
                "quorumkv_hints_\(what)_total{node=\"n1\",keyspace=\"\(keyspace)\"}"
            }
            let caughtUp = try await scrape {
                ($0["quorumkv_hint_queue_bytes\(node)"] ?? 1) == 0 && ($0[hints("replayed", "events")] ?? 0) > 0
            }
            for keyspace in ["default", "events"] {
                let (stored, replayed) = (
                    caughtUp[hints("stored", keyspace)] ?? 0, caughtUp[hints("replayed", keyspace)]
                )
                #expect(
                    stored > 0 && replayed == stored, "\(keyspace): \(stored) hints stored, \(replayed ?? 0) replayed")
            }
            await client.close()
        }

        /// `--metrics-local`: plain HTTP on a loopback address, beside the HTTPS endpoint; any other
        /// address is refused at start, saying why. And `kvctl status --watch` on the same node.
        @Test func plainMetricsServeLoopbackOnly() async throws {
            let node = try NodeHarness(host: 129)
            defer { node.tearDown() }
            try node.start(extraArguments: ["--metrics", node.host + ":9411", "--metrics-local", node.host + ":9412"])
            let scrape = try await httpsExchange(
                "GET /metrics HTTP/1.1\r\nHost: \(node.host)\r\nConnection: close\r\n\r\n", host: node.host,
                port: 9412, tls: nil)
            #expect(scrape.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(scrape.prefix(200))")
            #expect(scrape.contains("# TYPE quorumkv_cluster_epoch gauge\n"))

            // `kvctl status --watch` redraws (home, clear) every second, the verdict first each time.
            let watch = try run(
                "/usr/bin/timeout",
                [
                    "3.5", binDirectory.appendingPathComponent("kvctl").path, "status", "--watch", "--endpoints",
                    node.endpoint, "--ca", "\(node.certs)/ca.pem", "--cert", "\(node.certs)/admin.pem", "--key",
                    "\(node.certs)/admin-key.pem",
                ], timeout: .seconds(30))
            #expect(watch.status == 124, "stopped by timeout: \(watch.stderr)")
            let frames = watch.stdout.components(separatedBy: "\u{1B}[H\u{1B}[2J").dropFirst()
            #expect(frames.count >= 2, "\(watch.stdout.prefix(400))")
            #expect(frames.allSatisfy { $0.contains("healthy\n") && $0.contains("NODE") }, "\(frames.first ?? "")")
            #expect(
                try run("kvctl", ["status", "--watch", "--json", "--endpoints", node.endpoint]).status == 64)
            node.tearDown()

            let exposed = try NodeHarness(host: 130)
            defer { exposed.tearDown() }
            #expect(throws: HarnessError.self) {
                try exposed.start(extraArguments: ["--metrics-local", "0.0.0.0:9412"])
            }
            #expect(exposed.log(tail: 5).contains("loopback address only"), "\(exposed.log(tail: 5))")
        }

        @Test func aBadMetricsAddressIsAClearError() throws {
            let node = try NodeHarness(host: 52)
            defer { node.tearDown() }
            #expect(throws: HarnessError.self) { try node.start(extraArguments: ["--metrics", node.host + ":99999"]) }
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
/// One HTTP exchange, over TLS with `tls` (plain HTTP when nil): the whole answer, bounded by 30 s.
func httpsExchange(_ request: String, host: String, port: Int, tls: TLSContext?) async throws -> String {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connectTimeout(.seconds(5))
        .connect(host: host, port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                if let tls {
                    try channel.pipeline.syncOperations.addHandler(
                        OpenSSLHandler(context: tls, expectedServerName: host))
                }
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

/// The samples of a node's `/metrics` (over TLS with `tls`) by series, name and labels as written,
/// scraped again every half second until `condition` holds (the health gauges and byte counters
/// are read every 5 s), 60 s at most: the last scrape.
func scrapeSamples(
    host: String, port: Int, tls: TLSContext, until condition: ([String: Double]) -> Bool = { _ in true }
) async throws -> [String: Double] {
    func scrape() async throws -> [String: Double] {
        let text = try await httpsExchange(
            "GET /metrics HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n", host: host, port: port, tls: tls)
        var values: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let value = Double(parts[1]) { values[String(parts[0])] = value }
        }
        return values
    }
    let deadline = ContinuousClock.now + .seconds(60)
    var values = try await scrape()
    while !condition(values), ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(500))
        values = try await scrape()
    }
    return values
}
