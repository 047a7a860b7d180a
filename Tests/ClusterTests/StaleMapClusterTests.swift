import Foundation
import KVClient
import KVCore
import Synchronization
import Testing

extension RealProcessTests.SecondHalf {
    /// Real processes: clients that know an older cluster map than the cluster's. A client made from
    /// the cluster file after nodes joined and left, a one-shot `kvctl get`, and a client idle through
    /// the changes all read and write every key at QUORUM, without a failed request (issue 15: reads
    /// refused with `notReplica` used to fail instead of learning the newer map).
    @Suite(.timeLimit(.minutes(6)))
    struct StaleMapClusterTests {
        /// 4 nodes grow to 6 and shrink back to 5 (`kvctl leave n2`), with keys written before, during
        /// and after the changes (`GrowShrinkClusterTests` grows to 8 and back).
        @Test func clientsWithTheClusterFileOrAnIdleOneReadEveryKeyAfterTheClusterGrewAndShrank() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 53, joiners: 2)
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            // No pinger: it hears of no newer map until a replica refuses it.
            let idle = try cluster.client { $0.healthCheckInterval = nil }
            var expected: [String: String] = [:]
            for index in 0..<40 {
                let key = "before-\(index)"
                try await idle.put(Array(key.utf8), value: Array("b\(index)".utf8))
                expected[key] = "b\(index)"
            }
            let epochBefore = try await idle.clusterMap().epoch

            // Writes go on while nodes join and leave (bounded in count and time).
            let writer = try cluster.client(timeout: .seconds(10))
            let stop = Atomic<Bool>(false)
            let during = Task { () -> (written: [String: String], failures: [String]) in
                var written: [String: String] = [:]
                var failures: [String] = []
                let deadline = ContinuousClock.now + .seconds(200)
                var index = 0
                while !stop.load(ordering: .relaxed), index < 5_000, ContinuousClock.now < deadline {
                    let key = "during-\(index % 200)"
                    do {
                        try await writer.put(Array(key.utf8), value: Array("d\(index)".utf8))
                        written[key] = "d\(index)"
                    } catch {
                        failures.append("\(key): \(error)")
                    }
                    index += 1
                }
                return (written, failures)
            }
            for id in ["n5", "n6"] {
                try await offThePool { try cluster.start(id) }
                let join = try await offThePool {
                    try cluster.kvctl(
                        ["join", "--node", id, "--address", cluster.address(id), "--wait-timeout", "120"],
                        timeout: .seconds(130))
                }
                #expect(join.status == 0, "\(join.stderr)")
            }
            let leave = try await offThePool {
                try cluster.kvctl(["leave", "n2", "--wait-timeout", "120"], timeout: .seconds(130))
            }
            #expect(leave.status == 0, "\(leave.stderr)")
            cluster.stop("n2", signal: SIGTERM)
            stop.store(true, ordering: .relaxed)
            let load = await during.value
            #expect(load.failures.isEmpty, "writes during the changes failed: \(load.failures.prefix(3))")
            #expect(!load.written.isEmpty)
            expected.merge(load.written) { $1 }
            await writer.close()

            let after = try cluster.client()
            for index in 0..<40 {
                let key = "after-\(index)"
                try await after.put(Array(key.utf8), value: Array("a\(index)".utf8))
                expected[key] = "a\(index)"
            }
            await after.close()

            // A one-shot kvctl made from the cluster file (epoch 1, n2 still in it), one process per key,
            // for every fourth key of each kind (a process each costs CI time; the SDK reads them all).
            let written = expected.sorted { $0.key < $1.key }.enumerated().filter { $0.offset % 4 == 0 }.map(\.element)
            let kvctlFailures = try await offThePool { () -> [String] in
                var failures: [String] = []
                for (key, value) in written {
                    let result = try cluster.kvctl(["get", key, "--consistency", "quorum"])
                    if result.status != 0 || result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) != value {
                        failures.append("\(key): exit \(result.status) \(result.stdout) \(result.stderr)")
                    }
                }
                return failures
            }
            #expect(kvctlFailures.isEmpty, "\(kvctlFailures.count) kvctl reads failed: \(kvctlFailures.prefix(3))")

            // A fresh SDK client from the same file.
            let fresh = try cluster.client()
            let freshWrong = try await MembershipChangeClusterTests.checkReadable(expected, with: fresh)
            #expect(freshWrong.isEmpty, "\(freshWrong.count) keys read wrong: \(freshWrong.prefix(3))")
            #expect(try await fresh.clusterMap().epoch > epochBefore + 2)
            await fresh.close()

            // The client idle through every change: each read and write succeeds.
            let idleWrong = try await MembershipChangeClusterTests.checkReadable(expected, with: idle)
            #expect(idleWrong.isEmpty, "\(idleWrong.count) keys read wrong: \(idleWrong.prefix(3))")
            for key in expected.keys.sorted() {
                try await idle.put(Array(key.utf8), value: Array("idle".utf8))
            }
            #expect(try await idle.clusterMap().epoch > epochBefore + 2, "the idle client learned the newer map")
            await idle.close()
        }
    }
}
