import Foundation
import KVClient
import KVCore
import KVWire
import Synchronization
import Testing

extension RealProcessTests.SecondHalf {
    /// Real processes: nodes join and leave while clients read and write at QUORUM; ranges stream to
    /// their new owners, survive a SIGKILL of the receiver, and old copies are dropped only after.
    @Suite(.timeLimit(.minutes(5)))
    struct MembershipChangeClusterTests {
        /// Writes and reads at QUORUM until stopped (bounded in count and time), remembering the last
        /// acknowledged value of every key and every failure.
        final class Load: Sendable {
            let failures = Mutex<[String]>([])
            let acknowledged = Mutex<[String: String]>([:])
            /// Operations done so far (a put and a get each), failed or not.
            let progress = Progress()
            private let stop = Atomic<Bool>(false)
            private let task: Mutex<Task<Int, Never>?> = Mutex(nil)

            init(client: KVClient, keys: Int, prefix: String) {
                let task = Task {
                    var operations = 0
                    let deadline = ContinuousClock.now + .seconds(240)
                    while !self.stop.load(ordering: .relaxed), operations < 200_000, ContinuousClock.now < deadline {
                        let key = "\(prefix)-\(operations % keys)"
                        let value = "v\(operations)"
                        do {
                            try await client.put(Array(key.utf8), value: Array(value.utf8))
                            self.acknowledged.withLock { $0[key] = value }
                            _ = try await client.get(Array("\(prefix)-\((operations * 7) % keys)".utf8))
                        } catch {
                            self.failures.withLock { $0.append("\(key): \(error)") }
                        }
                        operations += 1
                        self.progress.advance()
                    }
                    return operations
                }
                self.task.withLock { $0 = task }
            }

            /// Stops and returns how many operations ran.
            func finish() async -> Int {
                stop.store(true, ordering: .relaxed)
                return await task.withLock { $0 }!.value
            }
        }

        /// Every key of `expected` reads back its value at QUORUM.
        static func checkReadable(_ expected: [String: String], with client: KVClient) async throws -> [String] {
            var wrong: [String] = []
            for (key, value) in expected {
                let read = try await client.get(Array(key.utf8))
                if read?.value != Array(value.utf8) {
                    wrong.append(
                        "\(key): \(read.map { String(decoding: $0.value, as: UTF8.self) } ?? "absent") ≠ \(value)")
                }
            }
            return wrong
        }

        static func statistic(_ name: KeyPath<NodeStats, UInt64>, of node: String, _ admin: KVClient) async throws
            -> Int
        {
            Int(clamping: try await admin.nodeStatistics(node: node)[keyPath: name])
        }

        @Test func aNodeJoinsUnderLoadSurvivesASigkillMidStreamAndLeavesAgain() async throws {
            let cluster = try ClusterHarness(nodes: 3, firstHost: 91, joiners: 1)
            defer { cluster.tearDown() }
            // n4 pulls slowly (64 KiB/s), so that it can be killed in the middle of its transfer.
            cluster.nodeArguments["n4"] = ["--stream-rate", "65536"]
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client(timeout: .seconds(5)) { $0.healthCheckInterval = .milliseconds(200) }
            let admin = try cluster.client(certificate: "admin")
            // 3,000 keys of 200 bytes before the join: about 600 KB per replica.
            let value = [UInt8](repeating: 0x61, count: 200)
            var preloaded: [String: String] = [:]
            for index in 0..<3000 {
                try await client.put(Array("pre-\(index)".utf8), value: value)
                preloaded["pre-\(index)"] = String(decoding: value, as: UTF8.self)
            }
            try await offThePool { try cluster.start("n4") }
            let load = Load(client: client, keys: 500, prefix: "live")

            let join = try await offThePool {
                try cluster.kvctl(["join", "--node", "n4", "--address", cluster.address("n4"), "--no-wait"])
            }
            #expect(join.status == 0, "\(join.stderr)")
            // SIGKILL n4 once it has received part of its ranges, then restart it.
            let deadline = ContinuousClock.now + .seconds(60)
            var received = 0
            while received < 300, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
                received = (try? await Self.statistic(\.streamKeysReceived, of: "n4", admin)) ?? 0
            }
            #expect(received >= 300, "n4 received \(received) keys")
            cluster.stop("n4")
            try await offThePool { try cluster.start("n4") }

            // The join completes: n4 is normal, nobody is streaming.
            var map = try await admin.latestClusterMap()
            while map.isChanging, ContinuousClock.now < deadline + .seconds(60) {
                try await Task.sleep(for: .milliseconds(500))
                map = try await admin.latestClusterMap()
            }
            #expect(map.node("n4")?.state == .normal, "\(map.changeSummary)")
            let operations = await load.finish()
            #expect(operations > 100)
            #expect(load.failures.withLock { $0 }.isEmpty, "failed: \(load.failures.withLock { Array($0.prefix(5)) })")

            // What n4 received: every key it now replicates, once, plus at most one page resent.
            let n4Keys = try preloaded.keys.filter {
                try map.ring().preferenceList(forKey: Array($0.utf8)).contains("n4")
            }
            let statistics = try await admin.nodeStatistics(node: "n4")
            let keys = statistics.transfers.reduce(0) { $0 + Int(clamping: $1.keys) }
            let resent = Int(clamping: statistics.streamKeysResent)
            #expect(keys >= n4Keys.count, "n4 received \(keys) keys of the \(n4Keys.count) preloaded it replicates")
            #expect(keys <= n4Keys.count + 500 + n4Keys.count / 10, "n4 received \(keys) keys")
            #expect((0...max(1, keys / 10)).contains(resent), "resent \(resent) of \(keys)")
            // After the restart n4 went on where it was: it did not receive again what it had before.
            let afterRestart = Int(clamping: statistics.streamKeysReceived)
            #expect(
                afterRestart <= keys - received + resent,
                "received \(afterRestart) after the restart, \(received) before")

            // Every acknowledged write reads back, and the old owners dropped what n4 took over.
            let expected = preloaded.merging(load.acknowledged.withLock { $0 }) { $1 }
            #expect(try await Self.checkReadable(expected, with: client).isEmpty)
            var dropped = 0
            let dropDeadline = ContinuousClock.now + .seconds(30)
            repeat {
                try await Task.sleep(for: .milliseconds(500))
                dropped = 0
                for node in ["n1", "n2", "n3"] {
                    dropped += try await Self.statistic(\.handoffKeysDeleted, of: node, admin)
                }
            } while dropped < n4Keys.count && ContinuousClock.now < dropDeadline
            #expect(dropped >= n4Keys.count, "old owners dropped \(dropped) keys; n4 took \(n4Keys.count)")

            // Decommission n4 under load: its ranges go back, then it is removed.
            let second = Load(client: client, keys: 500, prefix: "leave")
            let leave = try await offThePool { try cluster.kvctl(["leave", "n4", "--wait-timeout", "120"]) }
            #expect(leave.status == 0, "\(leave.stderr)")
            let left = try await admin.latestClusterMap()
            #expect(left.node("n4")?.state == .removed)
            _ = await second.finish()
            #expect(
                second.failures.withLock { $0 }.isEmpty, "failed: \(second.failures.withLock { Array($0.prefix(5)) })")
            cluster.stop("n4", signal: SIGTERM)
            let all = expected.merging(second.acknowledged.withLock { $0 }) { $1 }
            #expect(try await Self.checkReadable(all, with: client).isEmpty)
            await admin.close()
            await client.close()
        }
    }
}
