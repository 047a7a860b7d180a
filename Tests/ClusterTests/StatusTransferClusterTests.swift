import Foundation
import KVClient
import KVTLS
import Testing

extension RealProcessTests.SecondHalf {
    /// `kvctl status --json` on a real cluster with a dead node, queued hints and a node joining, and
    /// the per-peer network and RocksDB byte counters in a real scrape.
    @Suite(.timeLimit(.minutes(5)))
    struct StatusTransferClusterTests {
        /// n4 is SIGKILLed and writes queue hints for it; n5 joins and pulls its ranges slowly (4 KiB/s).
        /// The status says n4 is down with its hints and their age, n5 is joining, and how far its
        /// transfer is with an ETA, in the verdict, the problems and the node's fields.
        @Test func statusShowsADeadNodeItsHintsAndAJoinWithItsETA() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 214, replicationFactor: 3, joiners: 1)
            defer { cluster.tearDown() }
            cluster.nodeArguments["n5"] = ["--stream-rate", "4096"]
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client(timeout: .seconds(5)) { $0.healthCheckInterval = .milliseconds(200) }
            // 1,500 keys of 400 bytes: n5 will hold about 360 KB of them, 90 s at its rate.
            let value = [UInt8](repeating: 0x62, count: 400)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<8 {
                    group.addTask {
                        for index in stride(from: lane, to: 1500, by: 8) {
                            try await client.put(Array("status-\(index)".utf8), value: value)
                        }
                    }
                }
                try await group.waitForAll()
            }
            cluster.stop("n4")
            // The keys n4 replicates get a hint for it, on the fallback node.
            for index in 0..<200 {
                try await client.put(Array("status-\(index)".utf8), value: Array("n4 is down".utf8))
            }
            try await offThePool { try cluster.start("n5") }
            let join = try await offThePool {
                try cluster.kvctl(["join", "--node", "n5", "--address", cluster.address("n5"), "--no-wait"])
            }
            #expect(join.status == 0, "\(join.stderr)")

            /// Reads the status until `condition` holds (hint ages and disk figures are read every 5 s),
            /// 120 s at most; returns the last document and its exit status.
            func status(until condition: ([String: Any]) -> Bool) async throws -> ([String: Any], Int32) {
                let deadline = ContinuousClock.now + .seconds(120)
                while true {
                    let result = try await offThePool { try cluster.kvctl(["status", "--json"]) }
                    let document = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
                    if let document, condition(document) || ContinuousClock.now > deadline {
                        return (document, result.status)
                    }
                    if document == nil && ContinuousClock.now > deadline {
                        Issue.record("no JSON: \(result.stdout) \(result.stderr)")
                        return ([:], result.status)
                    }
                    try await Task.sleep(for: .milliseconds(500))
                }
            }
            func nodes(_ document: [String: Any]) -> [String: [String: Any]] {
                var nodes: [String: [String: Any]] = [:]
                for case let node as [String: Any] in document["nodes"] as? [Any] ?? [] {
                    if let id = node["node"] as? String { nodes[id] = node }
                }
                return nodes
            }
            func hintsFor4(_ document: [String: Any]) -> Int {
                nodes(document).values.reduce(0) {
                    $0 + ((($1["hintsQueuedPerTarget"] as? [String: Any])?["n4"] as? Int) ?? 0)
                }
            }
            func oldestHintFor4(_ document: [String: Any]) -> Double {
                nodes(document).values.compactMap { (($0["oldestHintAgeSeconds"] as? [String: Any])?["n4"] as? Double) }
                    .max() ?? 0
            }
            func transfer(_ document: [String: Any]) -> [String: Any] {
                nodes(document)["n5"]?["transfer"] as? [String: Any] ?? [:]
            }
            let (document, exitStatus) = try await status { document in
                let moving = transfer(document)
                return nodes(document)["n4"]?["up"] as? Bool == false && hintsFor4(document) > 0
                    && oldestHintFor4(document) >= 1 && nodes(document)["n5"]?["state"] as? String == "joining"
                    && (moving["share"] as? Double ?? 0) > 0 && (moving["etaSeconds"] as? Double ?? 0) > 0
            }
            let all = nodes(document)
            let log = "\(document)\nn5: \(cluster.log("n5", tail: 10))"
            #expect(exitStatus == 1, "a node is down")
            #expect(document["ok"] as? Bool == false)
            #expect(all["n4"]?["up"] as? Bool == false, "\(log)")
            #expect(all["n4"]?["error"] as? String != nil)
            #expect(all["n1"]?["up"] as? Bool == true && all["n1"]?["state"] as? String == "normal")
            #expect(all["n5"]?["state"] as? String == "joining", "\(log)")
            #expect(hintsFor4(document) > 0, "\(log)")
            #expect(oldestHintFor4(document) >= 1, "\(log)")
            let moving = transfer(document)
            let total = moving["rangesTotal"] as? Int ?? 0
            #expect(total > 0, "\(log)")
            #expect((moving["rangesDone"] as? Int ?? total) < total, "\(log)")
            #expect((moving["share"] as? Double ?? 0) > 0 && (moving["share"] as? Double ?? 1) < 1, "\(log)")
            #expect((moving["keys"] as? Int ?? 0) > 0, "\(log)")
            #expect((moving["etaSeconds"] as? Double ?? 0) > 0, "\(log)")
            #expect(moving["stalled"] == nil, "\(log)")
            let verdict = document["verdict"] as? String ?? ""
            let problems = document["problems"] as? [String] ?? []
            #expect(verdict.hasPrefix("n4 down"), "\(verdict)")
            #expect(problems.first?.contains("hints queued for it") == true, "\(problems)")
            let change = problems.first { $0.hasPrefix("membership change in progress") } ?? ""
            #expect(change.contains("n5 receiving: ") && change.contains(" left"), "\(problems)")

            // The text form: n5's row says the same in its TRANSFER column.
            let text = try await offThePool { try cluster.kvctl(["status"]) }
            let row = text.stdout.split(separator: "\n").first { $0.hasPrefix("n5 ") } ?? ""
            #expect(row.contains("joining") && row.contains("receiving: "), "\(text.stdout)")
            await client.close()
        }

        /// The per-peer network counters and the RocksDB byte counters in a real scrape, moving with
        /// the traffic: node-to-node bytes under the peer's id (both directions), the SDK's under
        /// `client`, RocksDB's written and read bytes with the puts and gets.
        @Test func networkAndRocksDBByteCountersMoveInARealScrape() async throws {
            let cluster = try ClusterHarness(nodes: 2, firstHost: 219, replicationFactor: 2)
            defer { cluster.tearDown() }
            cluster.nodeArguments["n1"] = ["--metrics", cluster.hosts[0] + ":9411"]
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client()
            func load(_ round: Int) async throws {
                for index in 0..<100 {
                    let key = Array("bytes-\(round)-\(index)".utf8)
                    try await client.put(key, value: [UInt8](repeating: 9, count: 1000))
                    _ = try await client.get(key)
                }
            }
            let tls = try TLSContext(
                configuration: TLSConfiguration(
                    caFile: "\(cluster.certs)/ca.pem", certificateFile: "\(cluster.certs)/client.pem",
                    keyFile: "\(cluster.certs)/client-key.pem"),
                side: .client)
            func scrape(until condition: ([String: Double]) -> Bool) async throws -> [String: Double] {
                try await scrapeSamples(host: cluster.hosts[0], port: 9411, tls: tls, until: condition)
            }
            let sentTo2 = "quorumkv_peer_sent_bytes_total{node=\"n1\",peer=\"n2\"}"
            let receivedFrom2 = "quorumkv_peer_received_bytes_total{node=\"n1\",peer=\"n2\"}"
            let fromClients = "quorumkv_peer_received_bytes_total{node=\"n1\",peer=\"client\"}"
            let toClients = "quorumkv_peer_sent_bytes_total{node=\"n1\",peer=\"client\"}"
            let written = "quorumkv_rocksdb_written_bytes_total{node=\"n1\"}"
            let read = "quorumkv_rocksdb_read_bytes_total{node=\"n1\"}"
            try await load(1)
            // 100 puts of 1000 bytes: both replicas hold them all (N = 2).
            let first = try await scrape {
                ($0[written] ?? 0) >= 100_000 && ($0[read] ?? 0) >= 100_000 && ($0[fromClients] ?? 0) >= 100_000
                    && ($0[sentTo2] ?? 0) > 0 && ($0[receivedFrom2] ?? 0) > 0
            }
            #expect(first[written] ?? 0 >= 100_000, "\(first.filter { $0.key.contains("bytes_total") })")
            #expect(first[read] ?? 0 >= 100_000)
            #expect(first[fromClients] ?? 0 >= 100_000, "the puts' values came from the SDK")
            #expect(first[toClients] ?? 0 >= 100_000, "the gets' values went to the SDK")
            #expect(first[sentTo2] ?? 0 > 0, "pings to n2")
            #expect(first[receivedFrom2] ?? 0 > 0, "pings from n2")
            #expect(first["quorumkv_rocksdb_wal_written_bytes_total{node=\"n1\"}"] ?? 0 >= 100_000)

            try await load(2)
            let second = try await scrape {
                ($0[written] ?? 0) >= (first[written] ?? 0) + 100_000
                    && ($0[fromClients] ?? 0) >= (first[fromClients] ?? 0) + 100_000
                    && ($0[sentTo2] ?? 0) > (first[sentTo2] ?? 0)
            }
            #expect(second[written] ?? 0 >= (first[written] ?? 0) + 100_000)
            #expect(second[read] ?? 0 >= (first[read] ?? 0) + 100_000)
            #expect(second[fromClients] ?? 0 >= (first[fromClients] ?? 0) + 100_000)
            #expect(second[sentTo2] ?? 0 > first[sentTo2] ?? 0)
            #expect(second[receivedFrom2] ?? 0 > first[receivedFrom2] ?? 0)
            // Counters, typed as such.
            let text = try await httpsExchange(
                "GET /metrics HTTP/1.1\r\nHost: \(cluster.hosts[0])\r\nConnection: close\r\n\r\n",
                host: cluster.hosts[0],
                port: 9411, tls: tls)
            #expect(text.contains("# TYPE quorumkv_peer_sent_bytes_total counter\n"))
            #expect(text.contains("# TYPE quorumkv_peer_received_bytes_total counter\n"))
            #expect(text.contains("# TYPE quorumkv_rocksdb_written_bytes_total counter\n"))
            #expect(
                text.contains(
                    "# HELP quorumkv_peer_sent_bytes_total Bytes sent on RPC connections to each peer, as TLS records"))
            await client.close()
        }
    }
}
