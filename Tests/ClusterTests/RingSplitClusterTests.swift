import Foundation
import KVClient
import KVCore
import KVWire
import Synchronization
import Testing

extension RealProcessTests.SecondHalf {
    /// Real processes with two rings (issue 20): n1–n3 on the main ring, n4–n6 on ring `east` (from the
    /// cluster file); keyspace `users` split at `n` (`kvctl keyspace create --split n:east`) keeps each
    /// key range on its own ring's nodes only, and its upper part moves to the main ring under load
    /// (`kvctl keyspace move`) without a failed request or a lost write, the east ring's nodes then
    /// dropping it.
    @Suite(.timeLimit(.minutes(10)))
    struct RingSplitClusterTests {
        /// The addresses of n1…n6; no other test uses them.
        static let hosts = [170, 177, 184, 189, 194, 199]
        static let mainNodes = ["n1", "n2", "n3"]
        static let eastNodes = ["n4", "n5", "n6"]

        /// `a0-key` … `z7-key`: 208 keys, 104 below `n` and 104 from it on.
        static let keys = "abcdefghijklmnopqrstuvwxyz".flatMap { letter in (0..<8).map { "\(letter)\($0)-key" } }
        static func isEast(_ key: String) -> Bool { key >= "n" }

        /// Runs `kvctl` (admin) and expects it to succeed; returns its stdout.
        @discardableResult
        static func kvctl(_ arguments: [String], in cluster: ClusterHarness, timeout: Duration = .seconds(60))
            async throws -> String
        {
            let result = try await offThePool { try cluster.kvctl(arguments, timeout: timeout) }
            guard result.status == 0 else {
                throw HarnessError("kvctl \(arguments.joined(separator: " ")): exit \(result.status): \(result.stderr)")
            }
            return result.stdout
        }

        /// What one node alone holds for `key` in `users`: nil when it holds nothing or refuses the key
        /// as not its own (`notReplica`); any other failure is recorded.
        static func held(_ key: String, on node: String, _ users: KVKeyspace) async -> StoredRecord? {
            do {
                return try await users.replicaRecord(Array(key.utf8), node: node)
            } catch let error as KVClientError where error.refusalCode == .notReplica {
                return nil
            } catch {
                Issue.record("\(node) \(key): \(error)")
                return nil
            }
        }

        /// Puts and gets on keys of both parts at QUORUM (the keyspace's levels) until stopped, bounded
        /// in count and time; each worker owns its keys, so the last acknowledged value of each is known.
        final class Load: Sendable {
            let failures = Mutex<[String]>([])
            let acknowledged = Mutex<[String: String]>([:])
            let operations = Atomic<Int>(0)
            private let stop = Atomic<Bool>(false)
            private let tasks: Mutex<[Task<Void, Never>]> = Mutex([])

            init(users: KVKeyspace, workers: Int) {
                for worker in 0..<workers {
                    let owned = RingSplitClusterTests.keys.enumerated().filter { $0.offset % workers == worker }
                        .map(\.element)
                    let task = Task {
                        let deadline = ContinuousClock.now + .seconds(300)
                        var step = 0
                        while !self.stop.load(ordering: .relaxed), step < 20_000, ContinuousClock.now < deadline {
                            let key = owned[step % owned.count]
                            let value = "w\(worker)-\(step)"
                            do {
                                try await users.put(Array(key.utf8), value: Array(value.utf8))
                                self.acknowledged.withLock { $0[key] = value }
                                let read = try await users.get(Array(key.utf8))
                                if read?.value != Array(value.utf8) {
                                    self.failures.withLock {
                                        $0.append(
                                            "\(key): read \(read.map { String(decoding: $0.value, as: UTF8.self) } ?? "nothing") after acknowledged \(value)"
                                        )
                                    }
                                }
                            } catch {
                                self.failures.withLock { $0.append("\(key): \(error)") }
                            }
                            step += 1
                            self.operations.add(1, ordering: .relaxed)
                        }
                    }
                    tasks.withLock { $0.append(task) }
                }
            }

            /// Waits until `count` more operations have finished (60 s at most): the load is going.
            func advance(by count: Int) async throws {
                let target = operations.load(ordering: .relaxed) + count
                let deadline = ContinuousClock.now + .seconds(60)
                while operations.load(ordering: .relaxed) < target, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(operations.load(ordering: .relaxed) >= target, "the load stalled")
            }

            /// Stops every worker and waits for them.
            func finish() async {
                stop.store(true, ordering: .relaxed)
                for task in tasks.withLock({ $0 }) { await task.value }
            }
        }

        @Test func aSplitKeyspaceKeepsEachRangeOnItsRingAndMovesAPartUnderLoad() async throws {
            let cluster = try ClusterHarness(
                hosts: Self.hosts, replicationFactor: 3, rings: ["", "", "", "east", "east", "east"])
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            try await Self.kvctl(["keyspace", "create", "users", "--rf", "3", "--split", "n:east"], in: cluster)
            let shown = try await Self.kvctl(["keyspace", "show", "users"], in: cluster)
            #expect(
                shown.contains("ring main") && shown.contains("from 'n'") && shown.contains("ring east"), "\(shown)")
            let rings = try await Self.kvctl(["ring"], in: cluster)
            #expect(rings.contains("ring main") && rings.contains("ring east"), "\(rings)")
            for node in Self.mainNodes + Self.eastNodes {
                #expect(rings.contains(node), "\(rings)")
            }
            let nodes = try await Self.kvctl(["cluster", "show"], in: cluster)
            #expect(nodes.contains("east"), "\(nodes)")

            let client = try cluster.client(timeout: .seconds(20))
            let admin = try cluster.client(certificate: "admin", timeout: .seconds(10))
            let users = client.keyspace("users")
            var acknowledged: [String: String] = [:]
            for key in Self.keys {
                try await users.put(Array(key.utf8), value: Array("first-\(key)".utf8))
                acknowledged[key] = "first-\(key)"
            }

            // Each node alone: keys below `n` on n1–n3 only, keys from `n` on n4–n6 only.
            for key in Self.keys {
                let owners = Self.isEast(key) ? Self.eastNodes : Self.mainNodes
                #expect(Set(try await users.replicas(ofKey: Array(key.utf8))) == Set(owners), "\(key)")
                for node in Self.mainNodes + Self.eastNodes {
                    let record = await Self.held(key, on: node, admin.keyspace("users"))
                    if owners.contains(node) {
                        #expect(record?.value == Array("first-\(key)".utf8), "\(key) on \(node)")
                    } else {
                        #expect(record == nil, "\(key) must not be on \(node)")
                    }
                }
            }
            // `kvctl keyspace show` estimates each part's keys from the nodes' counts (copies over N).
            let shownJSON = try await Self.kvctl(["keyspace", "show", "users", "--json"], in: cluster)
            let document = try #require(
                try JSONSerialization.jsonObject(with: Data(shownJSON.utf8)) as? [String: Any], "\(shownJSON)")
            let partKeys = (document["parts"] as? [[String: Any]] ?? []).map { $0["keys"] as? Int ?? -1 }
            let perPart = Self.keys.count / 2
            #expect(partKeys.count == 2 && partKeys.allSatisfy { (perPart...perPart + 8).contains($0) }, "\(shownJSON)")
            #expect((document["keys"] as? Int).map { (perPart * 2...perPart * 2 + 16).contains($0) } == true)

            // `kvctl repair` repairs every node of every ring: the east ring's nodes compare their part.
            let repaired = try await offThePool { try cluster.kvctl(["repair"], timeout: .seconds(240)) }
            expectSuccess(repaired)
            for node in Self.mainNodes + Self.eastNodes {
                let line = repaired.stdout.split(separator: "\n").first { $0.hasPrefix("\(node): ") }
                #expect(line.map { !$0.hasPrefix("\(node): 0 ranges") } == true, "\(node): \(repaired.stdout)")
            }

            // The same through kvctl: the key's part's ring, and one replica read alone.
            #expect(
                try await Self.kvctl(["ring", "zebra", "--keyspace", "users"], in: cluster).contains("ring       east"))
            let onN4 = try await Self.kvctl(["get", "z0-key", "--node", "n4", "--keyspace", "users"], in: cluster)
            #expect(onN4.hasPrefix("first-z0-key"), "\(onN4)")
            let onN1 = try await offThePool {
                try cluster.kvctl(["get", "z0-key", "--node", "n1", "--keyspace", "users"])
            }
            #expect(onN1.status == 2, "z0-key must not be on n1: \(onN1.stdout) \(onN1.stderr)")

            // The part from `n` moves to the main ring under load.
            let load = Load(users: users, workers: 4)
            try await load.advance(by: 40)
            let moveStarted = ContinuousClock.now
            let moved = try await offThePool {
                try cluster.kvctl(
                    ["keyspace", "move", "users", "--from", "n", "--to", "main", "--wait-timeout", "240"],
                    timeout: .seconds(300))
            }
            let moveTook = ContinuousClock.now - moveStarted
            try await load.advance(by: 40)
            await load.finish()
            #expect(moved.status == 0, "move: \(moved.stdout) \(moved.stderr)")
            #expect(moved.stdout.contains("done"), "\(moved.stdout) \(moved.stderr)")
            let failures = load.failures.withLock { $0 }
            let operations = load.operations.load(ordering: .relaxed)
            #expect(failures.isEmpty, "\(failures.count) of \(operations) failed: \(failures.prefix(5))")
            #expect(operations > 20, "only \(operations) operations ran during the move (\(moveTook))")
            print("RingSplitClusterTests: move took \(moveTook), \(operations) operations meanwhile")

            let map = try await client.latestClusterMap()
            let upper = try #require(map.keyspace(named: "users", forKey: Array("z".utf8)))
            #expect(upper.ring == "" && upper.pendingRing == nil && !map.isChanging, "\(upper)")
            let listed = try await Self.kvctl(["keyspace", "list"], in: cluster)
            #expect(!listed.contains("east"), "\(listed)")

            // Every acknowledged write reads back; the keys from `n` are on n1–n3 now, all three.
            for (key, value) in load.acknowledged.withLock({ $0 }) { acknowledged[key] = value }
            for (key, value) in acknowledged {
                let read = try await users.get(Array(key.utf8))
                #expect(read?.value == Array(value.utf8), "\(key)")
            }
            for key in Self.keys where Self.isEast(key) {
                #expect(Set(try await users.replicas(ofKey: Array(key.utf8))) == Set(Self.mainNodes), "\(key)")
                for node in Self.mainNodes {
                    #expect(await Self.held(key, on: node, admin.keyspace("users")) != nil, "\(key) on \(node)")
                }
            }

            // n4–n6 drop the part once n1–n3 hold it (compared first): each deletes every key from `n`.
            let upperKeys = Self.keys.count { Self.isEast($0) }
            let deadline = ContinuousClock.now + .seconds(180)
            var deleted: [String: UInt64] = [:]
            while ContinuousClock.now < deadline {
                for node in Self.eastNodes {
                    deleted[node] = (try? await admin.nodeStatistics(node: node))?.handoffKeysDeleted ?? deleted[node]
                }
                if Self.eastNodes.allSatisfy({ (deleted[$0] ?? 0) >= UInt64(upperKeys) }) { break }
                try await Task.sleep(for: .milliseconds(500))
            }
            #expect(
                Self.eastNodes.allSatisfy { (deleted[$0] ?? 0) >= UInt64(upperKeys) },
                "keys deleted by the east ring's nodes: \(deleted), \(upperKeys) each expected; n4's log: \(cluster.log("n4"))"
            )
            for key in Self.keys {
                for node in Self.eastNodes {
                    #expect(await Self.held(key, on: node, admin.keyspace("users")) == nil, "\(key) on \(node)")
                }
            }
            await client.close()
            await admin.close()
        }
    }
}
