import Foundation
import KVClient
import KVCore
import KVRPC
import KVWire
import Testing

extension RealProcessTests.SecondHalf {
    /// Real processes: the SDK's phi-accrual failure detector notices a hung node (SIGSTOP: its
    /// connections stay open, nothing answers), reads ask the other replicas first meanwhile, and the
    /// node is trusted again once it answers.
    @Suite(.timeLimit(.minutes(2)))
    struct FailureDetectionClusterTests {
        @Test func aHungNodeIsSuspectedAndReadsAskTheOthersFirst() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 71)
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client(timeout: .seconds(3)) { configuration in
                configuration.healthCheckInterval = .milliseconds(200)
                configuration.speculativeReads = false
            }
            // Keys whose reads ask n2 first while it is trusted.
            let keys = try (0..<200).map { "fd-\($0)" }.filter { try cluster.replicas(of: $0).first == "n2" }.prefix(10)
            #expect(keys.count == 10)
            for key in keys {
                try await client.put(Array(key.utf8), value: Array("v".utf8), consistency: .all)
            }
            #expect(client.suspectedNodes().isEmpty)
            #expect(try await client.readOrder(forKey: Array(keys.first!.utf8)).first == "n2")

            cluster.signal("n2", SIGSTOP)
            let deadline = ContinuousClock.now + .seconds(30)
            while !client.suspectedNodes().contains("n2") && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(client.suspectedNodes() == ["n2"], "phi: \(client.nodePhi())")
            // The other nodes' detectors suspect it too (they ping each other every second).
            let admin = try cluster.client(certificate: "admin")
            var viewers: [String] = []
            while viewers.count < 3 && ContinuousClock.now < deadline + .seconds(10) {
                try await Task.sleep(for: .milliseconds(200))
                viewers = []
                for node in ["n1", "n3", "n4"]
                where try await admin.nodeStatistics(node: node).peersSuspected.contains("n2") {
                    viewers.append(node)
                }
            }
            #expect(viewers == ["n1", "n3", "n4"], "nodes suspecting n2: \(viewers)")
            let status = try await offThePool { try cluster.kvctl(["status", "--json"]) }
            #expect(status.stdout.contains("\"peersSuspected\""), "\(status.stdout)")
            for key in keys {
                #expect(try await client.readOrder(forKey: Array(key.utf8)).last == "n2")
                // At QUORUM the two replicas asked first are up: the read does not wait for n2.
                let value = try await client.get(Array(key.utf8), consistency: .quorum)
                #expect(value?.value == Array("v".utf8))
            }

            cluster.signal("n2", SIGCONT)
            let back = ContinuousClock.now + .seconds(30)
            while client.suspectedNodes().contains("n2") && ContinuousClock.now < back {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(client.suspectedNodes().isEmpty, "phi: \(client.nodePhi())")
            #expect(try await client.readOrder(forKey: Array(keys.first!.utf8)).first == "n2")
            let trusted = ContinuousClock.now + .seconds(30)
            var stillSuspecting = ["n1"]
            while !stillSuspecting.isEmpty && ContinuousClock.now < trusted {
                try await Task.sleep(for: .milliseconds(200))
                stillSuspecting = []
                for node in ["n1", "n3", "n4"]
                where try await admin.nodeStatistics(node: node).peersSuspected.contains("n2") {
                    stillSuspecting.append(node)
                }
            }
            #expect(stillSuspecting.isEmpty, "still suspecting n2 after SIGCONT: \(stillSuspecting)")

            // Issue 21: a node that refuses connections (SIGKILLed) is asked last at once, by a client
            // whose detector has no pings to go on: the refused dial starts the connection's backoff
            // window (a minute here, so the check cannot race its end), and reads skip it meanwhile.
            let unpinged = try cluster.client(timeout: .seconds(3)) { configuration in
                configuration.healthCheckInterval = nil
                configuration.speculativeReads = false
                configuration.reconnect.backoffInitial = .seconds(60)
                configuration.reconnect.backoffMax = .seconds(60)
            }
            let key = Array(keys.first!.utf8)
            #expect(try await unpinged.readOrder(forKey: key).first == "n2")
            try await offThePool { cluster.stop("n2") }
            // The first write may meet the connection the kill closed; the next dials and is refused.
            for _ in 0..<3 where try await unpinged.readOrder(forKey: key).last != "n2" {
                _ = try? await unpinged.put(key, value: Array("w".utf8), consistency: .all)
            }
            #expect(unpinged.suspectedNodes().isEmpty)
            #expect(try await unpinged.readOrder(forKey: key).last == "n2")
            #expect(try await unpinged.get(key, consistency: .quorum)?.value != nil)
            await unpinged.close()
            await admin.close()
            await client.close()
        }
    }
}
