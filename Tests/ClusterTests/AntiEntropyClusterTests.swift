import Foundation
import KVClient
import KVConfig
import KVCore
import KVWire
import Testing

extension RealProcessTests.FirstHalf {
    /// Real processes: `kvctl repair` makes diverged replicas converge, copying each stale copy once, and
    /// costs identical replicas one Merkle root per comparison.
    @Suite(.timeLimit(.minutes(4)))
    struct AntiEntropyClusterTests {
        /// SIGKILL a node in the middle of its pass: after the restart its next pass skips the ranges
        /// the killed one had finished (and says so), compares the rest, and the replicas end identical.
        @Test func aPassCutShortBySIGKILLResumesWhereItWas() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 236)
            defer { cluster.tearDown() }
            // A slow pass (20 kB/s), started only on demand.
            cluster.extraArguments = ["--anti-entropy-interval", "0", "--anti-entropy-rate", "20000"]
            try await offThePool { try cluster.startAll() }
            let admin = try cluster.client(certificate: "admin", timeout: .seconds(10))
            // 300 keys only on n1 (those it replicates): two stale copies each, all over the ring.
            let keys = try (0..<600).map { "resume-\($0)" }.filter { try cluster.replicas(of: $0).contains("n1") }
                .prefix(300)
            for key in keys {
                try await admin.writeReplica(Array(key.utf8), value: Array("v".utf8), node: "n1")
            }
            let total = try ClusterFile.load(path: cluster.clusterFile).ring().vnodeRanges(replicatedBy: "n1").count

            let first = Task { try await admin.repair(node: "n1") }
            // Kill n1 once it has finished a few ranges, well before the end of its pass.
            let deadline = ContinuousClock.now + .seconds(60)
            var compared = 0
            while compared < 3 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                compared = Int(clamping: try await admin.nodeStatistics(node: "n1").antiEntropyRangesCompared)
            }
            cluster.stop("n1", signal: SIGKILL)
            #expect((3..<total).contains(compared), "n1 compared \(compared) of \(total) ranges before the kill")
            _ = await first.result
            try await offThePool { try cluster.start("n1") }

            let fresh = try cluster.client(certificate: "admin", timeout: .seconds(10))
            let second = try await fresh.repair(node: "n1")
            #expect(second.errors == 0, "\(second)")
            #expect(second.rangesResumed >= compared, "\(second): the \(compared) finished ranges must be skipped")
            #expect(second.rangesResumed + second.rangesCompared == total, "\(second)")
            // Every replica of every key holds it.
            var missing: [String] = []
            for key in keys {
                for node in try cluster.replicas(of: key)
                where try await fresh.replicaRecord(Array(key.utf8), node: node) == nil {
                    missing.append("\(key)@\(node)")
                }
            }
            #expect(missing.isEmpty, "\(missing.count) copies still missing, e.g. \(missing.prefix(3))")
            // The pass finished: the next one starts from the beginning.
            let third = try await fresh.repair(node: "n1")
            #expect(third.rangesResumed == 0 && third.rangesCompared == total && third.keysSent == 0, "\(third)")
            await fresh.close()
            await admin.close()
        }

        /// Tombstones: delete with one replica down past the hint window, wait past the grace period on
        /// the others, bring it back, repair: the deleted keys do not reappear, and the tombstones end
        /// purged on every replica. A purge on a timer alone would let the returning replica's old values
        /// come back here.
        @Test func aPurgedDeleteDoesNotComeBackFromAReplicaThatWasDown() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 61)
            defer { cluster.tearDown() }
            cluster.extraArguments = ["--anti-entropy-interval", "0", "--hint-window", "1", "--tombstone-grace", "3"]
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client()
            let admin = try cluster.client(certificate: "admin")
            let keys = try (0..<80).map { "purge-\($0)" }.filter { try cluster.replicas(of: $0).contains("n3") }
                .prefix(20)
            for key in keys {
                try await client.put(Array(key.utf8), value: Array("old".utf8), consistency: .all)
            }
            cluster.stop("n3", signal: SIGKILL)
            for key in keys {
                try await client.delete(Array(key.utf8), consistency: .quorum)
            }
            await client.close()

            // The hints for n3 expire (window 1 s) and the tombstones pass the grace period (3 s).
            let deadline = ContinuousClock.now + .seconds(30)
            var expired = 0
            var queued = 1
            repeat {
                try await Task.sleep(for: .milliseconds(500))
                (expired, queued) = (0, 0)
                for node in ["n1", "n2", "n4"] {
                    let statistics = try await admin.nodeStatistics(node: node)
                    expired += Int(clamping: statistics.hintsExpired)
                    queued += Int(clamping: statistics.hintsQueued(for: "n3"))
                }
            } while (expired == 0 || queued > 0) && ContinuousClock.now < deadline
            #expect(expired > 0 && queued == 0, "hints for n3: \(expired) expired, \(queued) still queued")
            try await Task.sleep(for: .seconds(4))

            // n3 down: its co-replicas' sessions with it fail, so they purge none of these tombstones.
            var purged = 0
            for node in ["n1", "n2", "n4"] {
                let whileDown = try await admin.repair(node: node)
                #expect(whileDown.errors > 0, "\(whileDown)")
                purged += whileDown.tombstonesPurged
            }
            for key in keys {
                for node in try cluster.replicas(of: key) where node != "n3" {
                    let record = try await admin.replicaRecord(Array(key.utf8), node: node)
                    #expect(record?.tombstone == true, "\(key) on \(node): \(String(describing: record))")
                }
            }

            // n3 back, still holding the old values: repair gives it the tombstones, then all purge.
            try await offThePool { try cluster.start("n3") }
            // The admin client's pings to n3 failed while it was down; a request for n3 alone dials it
            // at once all the same.
            let oldRecord = try await admin.replicaRecord(Array(keys.first!.utf8), node: "n3")
            #expect(oldRecord?.tombstone == false, "n3 still holds the old value")
            for _ in 0..<2 {
                let result = try await offThePool { try cluster.kvctl(["repair", "--json"]) }
                expectSuccess(result)
                let document = try #require(
                    try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
                    "\(result.stdout)")
                purged += document["tombstonesPurged"] as? Int ?? 0
            }
            #expect(purged == keys.count * 3, "each key's three tombstones purged once")
            let reader = try cluster.client()
            for key in keys {
                #expect(try await reader.get(Array(key.utf8), consistency: .all) == nil, "\(key) came back")
                for node in try cluster.replicas(of: key) {
                    let record = try await admin.replicaRecord(Array(key.utf8), node: node)
                    #expect(record == nil, "\(key) on \(node): \(String(describing: record))")
                }
            }
            // And another pass copies nothing back.
            let after = try await admin.repair(node: "n3")
            #expect(after.errors == 0 && after.keysSent == 0 && after.keysReceived == 0, "\(after)")
            await reader.close()
            await admin.close()
        }

        @Test func repairConvergesDivergedReplicasAndCountsEveryStaleCopy() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 241)
            defer { cluster.tearDown() }
            // No periodic pass: only `kvctl repair` may copy anything.
            cluster.extraArguments = ["--anti-entropy-interval", "0"]
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client(hintedHandoff: false)
            let admin = try cluster.client(certificate: "admin")

            // Each key below has one replica holding its newest version and the other two holding an
            // older one or nothing: two stale copies per key.
            var touched: [String: Bool] = [:]  // key → whether its newest version is a tombstone
            // Different keys on different single replicas, missing on the other two.
            for index in 0..<20 {
                let key = "ae-only-\(index)"
                let replicas = try cluster.replicas(of: key)
                try await admin.writeReplica(Array(key.utf8), value: Array("one".utf8), node: replicas[index % 3])
                touched[key] = false
            }
            // Written everywhere, then a newer version on one replica.
            for index in 0..<10 {
                let key = "ae-newer-\(index)"
                try await client.put(Array(key.utf8), value: Array("old".utf8), consistency: .all)
                let replicas = try cluster.replicas(of: key)
                try await admin.writeReplica(Array(key.utf8), value: Array("new".utf8), node: replicas[index % 3])
                touched[key] = false
            }
            // Written everywhere, then deleted on one replica only.
            for index in 0..<5 {
                let key = "ae-deleted-\(index)"
                try await client.put(Array(key.utf8), value: Array("old".utf8), consistency: .all)
                let replicas = try cluster.replicas(of: key)
                try await admin.writeReplica(Array(key.utf8), value: [], tombstone: true, node: replicas[index % 3])
                touched[key] = true
            }
            // And one through the command line.
            let cliKey = "ae-cli"
            let cliReplica = try cluster.replicas(of: cliKey)[1]
            let put = try await offThePool { try cluster.kvctl(["put", cliKey, "cli", "--node", cliReplica]) }
            expectSuccess(put)
            touched[cliKey] = false
            // Untouched keys, identical everywhere.
            for index in 0..<10 {
                try await client.put(Array("ae-same-\(index)".utf8), value: Array("same".utf8), consistency: .all)
            }
            let staleCopies: Int = touched.count * 2

            let result = try await offThePool { try cluster.kvctl(["repair", "--json"]) }
            expectSuccess(result)
            let document = try #require(
                try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
            #expect(document["ok"] as? Bool == true, "\(result.stdout)")
            let sent = try #require(document["keysSent"] as? Int)
            let received = try #require(document["keysReceived"] as? Int)
            #expect(sent + received == staleCopies, "\(result.stdout)")
            #expect((document["rangesCompared"] as? Int ?? 0) > 0)
            #expect((document["bytes"] as? Int ?? 0) > 0)
            #expect((document["nodes"] as? [[String: Any]])?.count == 4)

            // Every replica of every touched key holds the same newest version.
            for (key, tombstone) in touched.sorted(by: { $0.key < $1.key }) {
                var records: [StoredRecord?] = []
                for node in try cluster.replicas(of: key) {
                    records.append(try await admin.replicaRecord(Array(key.utf8), node: node))
                }
                let first = try #require(records[0], "\(key) missing on a replica")
                #expect(records.allSatisfy { $0?.version == first.version }, "\(key): \(records)")
                #expect(first.tombstone == tombstone, "\(key)")
                if !tombstone {
                    #expect(["one", "new", "cli"].contains(String(decoding: first.value, as: UTF8.self)), "\(key)")
                }
            }
            // The nodes counted the same copies.
            var counted = 0
            for node in cluster.ids {
                let statistics = try await admin.nodeStatistics(node: node)
                counted += Int(clamping: statistics.antiEntropyKeysSent)
                counted += Int(clamping: statistics.antiEntropyKeysReceived)
                #expect(statistics.antiEntropyLastFullPassMillis != 0, "\(node)")
            }
            #expect(counted == staleCopies)

            // A node down: the repair names it and exits 1; the others still compare what they can.
            cluster.stop("n4", signal: SIGKILL)
            let partial = try await offThePool { try cluster.kvctl(["repair", "--json"]) }
            #expect(partial.status == 1)
            #expect(partial.stderr.contains("n4"), "\(partial.stderr)")
            let partialDocument = try JSONSerialization.jsonObject(with: Data(partial.stdout.utf8)) as? [String: Any]
            let nodes = partialDocument?["nodes"] as? [[String: Any]] ?? []
            #expect(nodes.first { $0["node"] as? String == "n4" }?["ok"] as? Bool == false)
            #expect((partialDocument?["keysSent"] as? Int) == 0)
            await client.close()
            await admin.close()
        }

        @Test func identicalReplicasCostOneRootPerComparisonAndPeriodicPassesRepairAlone() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 246)
            defer { cluster.tearDown() }
            // Periodic passes every 2 s (±20 %) as well, checked at the end.
            cluster.extraArguments = ["--anti-entropy-interval", "2"]
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client(hintedHandoff: false)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<8 {
                    group.addTask {
                        for index in stride(from: worker, to: 400, by: 8) {
                            let key = Array("idle-\(index)".utf8)
                            try await client.put(key, value: key, consistency: .all)
                        }
                    }
                }
                try await group.waitForAll()
            }
            let result = try await offThePool { try cluster.kvctl(["repair", "--json"]) }
            expectSuccess(result)
            let document = try #require(
                try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
            #expect(document["keysSent"] as? Int == 0, "\(result.stdout)")
            #expect(document["keysReceived"] as? Int == 0, "\(result.stdout)")
            let nodes = try #require(document["nodes"] as? [[String: Any]])
            #expect(nodes.count == 4)
            for node in nodes {
                let sessions = node["sessions"] as? Int ?? 0
                #expect(sessions > 0)
                #expect(node["queries"] as? Int == sessions, "identical replicas: one root query each: \(node)")
            }
            // Text output, one node.
            let text = try await offThePool { try cluster.kvctl(["repair", "--node", "n2"]) }
            expectSuccess(text)
            #expect(text.stdout.contains("0 keys sent, 0 keys received"), "\(text.stdout)")
            // `kvctl status` shows the passes: every node has run one, n2 two.
            let status = try await offThePool { try cluster.kvctl(["status", "--json"]) }
            expectSuccess(status)
            let statusDocument = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
            for node in statusDocument?["nodes"] as? [[String: Any]] ?? [] {
                #expect((node["antiEntropyRangesCompared"] as? Int ?? 0) > 0, "\(node)")
                #expect((node["antiEntropyLastFullPassMillis"] as? Int ?? 0) > 0, "\(node)")
                #expect((node["antiEntropyOldestRangeComparedMillis"] as? Int ?? 0) > 0, "\(node)")
                let ranges = node["antiEntropyRangeComparedMillis"] as? [String: Int] ?? [:]
                #expect(!ranges.isEmpty && ranges.values.allSatisfy { $0 > 0 }, "\(node)")
            }
            let statusText = try await offThePool { try cluster.kvctl(["status"]) }
            #expect(statusText.stdout.contains("ANTI-ENTROPY"), "\(statusText.stdout)")

            // A key written to one replica only reaches the others by a periodic pass, with no command.
            let admin = try cluster.client(certificate: "admin")
            let key = Array("periodic".utf8)
            let replicas = try cluster.replicas(of: "periodic")
            try await admin.writeReplica(key, value: Array("alone".utf8), node: replicas[0])
            let deadline = ContinuousClock.now + .seconds(30)
            var copies = 0
            while copies < 3 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
                copies = 0
                for node in replicas where try await admin.replicaRecord(key, node: node) != nil { copies += 1 }
            }
            #expect(copies == 3, "the periodic passes should have copied the key to every replica")
            await admin.close()
            await client.close()
        }
    }
}
