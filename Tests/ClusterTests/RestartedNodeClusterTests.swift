import Foundation
import KVClient
import KVCore
import KVWire
import Testing

extension RealProcessTests.SecondHalf {
    /// Real processes: a node SIGKILLed and restarted is used again by its peers as soon as it answers,
    /// not after their connections' backoff windows (up to 5 s) ran out (issue 15: a co-replica's
    /// anti-entropy failed with "connection refused" remembered from while the node was down).
    @Suite(.timeLimit(.minutes(3)))
    struct RestartedNodeClusterTests {
        @Test func peersUseARestartedNodeAsSoonAsItAnswers() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 65)
            defer { cluster.tearDown() }
            cluster.extraArguments = ["--anti-entropy-interval", "0"]
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client()
            let admin = try cluster.client(certificate: "admin")
            let keys = try (0..<200).map { "back-\($0)" }.filter { try cluster.replicas(of: $0).contains("n3") }
                .prefix(20)
            for key in keys {
                try await client.put(Array(key.utf8), value: Array("old".utf8), consistency: .all)
            }
            cluster.stop("n3", signal: SIGKILL)
            for key in keys {
                try await client.put(Array(key.utf8), value: Array("new".utf8), consistency: .quorum)
            }
            #expect(client.hintsHandedOff > 0, "writes with n3 down leave hints for it")

            // While n3 is down its peers fail to reach it, again and again, until their connections
            // to it back off for the longest window (the pings dial every second; repair sessions fail).
            let holders = ["n1", "n2", "n4"]
            let downSince = ContinuousClock.now
            repeat {
                for node in holders {
                    let whileDown = try await admin.repair(node: node)
                    #expect(whileDown.errors > 0, "\(node) compared with n3 while it was down: \(whileDown)")
                }
                try await Task.sleep(for: .seconds(1))
            } while ContinuousClock.now - downSince < .seconds(8)
            let queued = try await Self.hintsQueued(for: "n3", on: holders, admin: admin)
            #expect(queued.queued > 0, "hints for n3 are queued while it is down")

            // n3 back: the harness returns once it answers.
            try await offThePool { try cluster.start("n3") }
            let answered = ContinuousClock.now
            // The hints queued for it start replaying within about a second (a bound with room for a
            // busy machine, under the 5 s backoff window that used to hold them back).
            var replayed = queued.replayed
            let deadline = answered + .seconds(3)
            while replayed == queued.replayed, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                replayed = try await Self.hintsQueued(for: "n3", on: holders, admin: admin).replayed
            }
            #expect(
                replayed > queued.replayed,
                "no hint for n3 replayed within \(ContinuousClock.now - answered) of it answering")
            // And its peers' anti-entropy with it succeeds at the first try: through the SDK and kvctl.
            for node in holders {
                let summary = try await admin.repair(node: node)
                #expect(summary.errors == 0, "\(node)'s pass right after n3 answered: \(summary)")
            }
            let repair = try await offThePool { try cluster.kvctl(["repair", "--node", "n1"]) }
            #expect(repair.status == 0, "kvctl repair right after n3 answered: \(repair.stderr)")
            // The client's own connection to n3 is used again too, once its pinger (every second, dialling
            // through the backoff window) has heard from n3: until then a request skips n3 with the error
            // remembered from while it was down, as documented. A read at ALL needs n3.
            let heard = ContinuousClock.now + .seconds(10)
            while client.suspectedNodes().contains("n3"), ContinuousClock.now < heard {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(
                !client.suspectedNodes().contains("n3"),
                "the client's pinger did not find n3 within \(ContinuousClock.now - answered) of it answering")
            for key in keys {
                let read = try await client.get(Array(key.utf8), consistency: .all)
                #expect(read?.value == Array("new".utf8), "\(key)")
            }
            await client.close()
            await admin.close()
        }

        /// Hints queued for `target` and hints replayed, summed over `holders`.
        static func hintsQueued(for target: String, on holders: [String], admin: KVClient) async throws
            -> (queued: Int, replayed: Int)
        {
            var queued = 0
            var replayed = 0
            for node in holders {
                let statistics = try await admin.nodeStatistics(node: node)
                queued += Int(clamping: statistics.hintsQueued(for: target))
                replayed += Int(clamping: statistics.hintsReplayed)
            }
            return (queued, replayed)
        }
    }
}
