import Foundation
import KVClient
import KVCore
import KVRPC
import KVTLS
import KVWire
import NIOCore
import Testing

extension RealProcessTests.FirstHalf {
    /// Real processes: a node keeps hints for other replicas durably, bounded per target.
    @Suite(.timeLimit(.minutes(3)))
    struct HintStorageClusterTests {
        @Test func nodesKeepHintsDurablyAndRefuseThemPastTheQueueBound() async throws {
            let cluster = try ClusterHarness(nodes: 3, firstHost: 211)
            defer { cluster.tearDown() }
            cluster.extraArguments = ["--hint-queue-max", "2"]
            try cluster.startAll()
            // The targets are down, so that n1 keeps the hints instead of replaying them at once.
            cluster.stop("n2", signal: SIGKILL)
            cluster.stop("n3", signal: SIGKILL)

            func hint(_ target: String, _ index: Int) -> Message {
                .hintRequest(
                    HintRequest(
                        target: target,
                        record: Record(
                            key: ByteBuffer(string: "hinted-\(index)"),
                            version: Version(hlc: UInt64(100 + index), writer: 7),
                            tombstone: false, value: ByteBuffer(string: "v\(index)"), expiresAtMillis: nil), keyspace: 0
                    ))
            }
            let host = String(cluster.address("n1").split(separator: ":")[0])
            let tls = try TLSContext(
                configuration: TLSConfiguration(
                    caFile: "\(cluster.certs)/ca.pem", certificateFile: "\(cluster.certs)/client.pem",
                    keyFile: "\(cluster.certs)/client-key.pem"),
                side: .client)
            let connection = try await RPCConnection.connect(
                host: host, port: cluster.port, tls: tls,
                hello: Hello(
                    protocolVersion: WireProtocol.version, clusterId: "test", senderId: "client", role: .client,
                    epoch: 0),
                timeout: .seconds(10))
            for index in 0..<2 {
                let answer = try await connection.call(hint("n2", index), timeout: .seconds(10))
                guard case .hintResponse(let response) = answer else {
                    Issue.record("expected a HintResponse, got \(answer.type)")
                    return
                }
                #expect(response.outcome == .stored)
            }
            let refused = try await connection.call(hint("n2", 9), timeout: .seconds(10))
            if case .hintResponse(let response) = refused {
                #expect(response.outcome == .refused, "the queue for n2 holds 2 hints at most")
            } else {
                Issue.record("expected a HintResponse, got \(refused.type)")
            }
            // Another target has its own queue; an unknown node is refused.
            let other = try await connection.call(hint("n3", 1), timeout: .seconds(10))
            #expect(other == .hintResponse(HintResponse(outcome: .stored, clock: (other.hintClock ?? 0))))
            await #expect(throws: RPCError.remote(.unknownNode, message: "")) {
                _ = try await connection.call(hint("n9", 1), timeout: .seconds(10))
            }
            await connection.close()

            // kvctl status shows the counters (admin certificate): the refusal is counted, and the
            // refused hint's range is due for anti-entropy on n2.
            let before = try n1Status()
            #expect(before?["hintsStored"] as? Int == 3)
            #expect(before?["hintsRefused"] as? Int == 1)
            #expect(before?["hintsReplayed"] as? Int == 0)
            #expect(before?["hintsExpired"] as? Int == 0)
            #expect(before?["antiEntropyRangesDue"] as? Int == 1)
            #expect(before?["hintsQueuedPerTarget"] as? [String: Int] == ["n2": 2, "n3": 1])
            #expect(before?["up"] as? Bool == true)
            // The node's last health reading (taken at start, then every 5 s) and its share of the ring.
            #expect((before?["diskUsedBytes"] as? Int ?? 0) > 0, "\(before ?? [:])")
            #expect((before?["diskFreeBytes"] as? Int ?? 0) > 0, "\(before ?? [:])")
            #expect((before?["ownership"] as? Double).map { $0 > 0 && $0 <= 1 } == true, "\(before ?? [:])")
            #expect((before?["latencyMillis"] as? Double).map { $0 > 0 } == true, "\(before ?? [:])")
            let text = try cluster.kvctl(["status"])
            #expect(text.stdout.contains("REFUSED"), "\(text.stdout)")
            // The verdict first: n2 and n3 down with the hints queued for them, the quorum lost where
            // both are replicas, n1's range due.
            let verdict = text.stdout.split(separator: "\n").first.map(String.init) ?? ""
            #expect(verdict.hasPrefix("n2 down"), "\(verdict)")
            #expect(verdict.contains("2 hints queued for it") && verdict.contains("n3 down"), "\(verdict)")
            #expect(verdict.contains("at QUORUM fail for"), "\(verdict)")
            #expect(verdict.contains("n1 has 1 ranges due for anti-entropy"), "\(verdict)")
            #expect(text.stdout.contains("n2=2 n3=1"), "\(text.stdout)")
            #expect(text.stdout.contains("OWNS") && text.stdout.contains("DISK-USED"), "\(text.stdout)")
            let asClient = try cluster.kvctl(["status"], as: "client")
            #expect(asClient.stdout.contains("(admin certificate needed for counters)"), "\(asClient.stdout)")

            // The hints and the mark survive a SIGKILL of the node that holds them; the counters start
            // again from zero.
            cluster.stop("n1", signal: SIGKILL)
            try cluster.start("n1")
            let after = try n1Status()
            #expect(after?["hintsQueued"] as? Int == 3, "n1 must still hold 2 hints for n2 and 1 for n3")
            #expect(after?["antiEntropyRangesDue"] as? Int == 1, "the mark is durable")
            #expect(after?["hintsRefused"] as? Int == 0)

            /// n1's entry in `kvctl status --json`.
            func n1Status() throws -> [String: Any]? {
                let status = try cluster.kvctl(["status", "--json"])
                #expect(status.status == 1, "n2 and n3 are down")
                let document = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
                #expect(document?["counters"] as? Bool == true)
                #expect((document?["verdict"] as? String)?.hasPrefix("n2 down") == true, "\(document ?? [:])")
                #expect((document?["problems"] as? [String])?.count ?? 0 >= 3, "\(document ?? [:])")
                let nodes = document?["nodes"] as? [[String: Any]] ?? []
                return nodes.first { $0["node"] as? String == "n1" }
            }
        }
    }
}

extension Message {
    /// The clock of a HintResponse, to compare the rest of it.
    fileprivate var hintClock: UInt64? {
        if case .hintResponse(let response) = self { return response.clock }
        return nil
    }
}
