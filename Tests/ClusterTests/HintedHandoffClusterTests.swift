import Foundation
import KVClient
import KVCore
import KVWire
import Testing

extension RealProcessTests.FirstHalf {
    /// Real processes: a replica that was down catches up by itself from the hints others kept.
    @Suite(.timeLimit(.minutes(4)))
    struct HintedHandoffClusterTests {
        @Test func replicaThatWasDownGetsEveryWriteFromHints() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 221)
            defer { cluster.tearDown() }
            try cluster.startAll()
            let client = try cluster.client()
            let admin = try cluster.client(certificate: "admin")

            cluster.stop("n2", signal: SIGKILL)
            let keys = (0..<5_000).map { "handoff-\($0)" }
            let versions = try await withThrowingTaskGroup(of: [(String, Version)].self) { group in
                for worker in 0..<20 {
                    group.addTask {
                        var written: [(String, Version)] = []
                        for key in stride(from: worker, to: keys.count, by: 20).map({ keys[$0] }) {
                            written.append(
                                (key, Version(try await client.put(Array(key.utf8), value: Array(key.utf8)))))
                        }
                        return written
                    }
                }
                var all: [String: Version] = [:]
                for try await written in group {
                    for (key, version) in written { all[key] = version }
                }
                return all
            }
            // Deletes while n2 is down must reach it too, as tombstones.
            let deleted = try keys.prefix(400).filter { try cluster.replicas(of: $0).contains("n2") }.prefix(20)
            var finalVersions = versions
            for key in deleted {
                finalVersions[key] = Version(try await client.delete(Array(key.utf8)))
            }
            let missed = try keys.filter { try cluster.replicas(of: $0).contains("n2") }
            #expect(missed.count > 1_500, "n2 should replicate most keys")
            // Hand-off runs in the background, after each write was acknowledged.
            try await eventually { client.hintsHandedOff >= missed.count }
            #expect(client.hintsHandedOff >= missed.count, "every write n2 missed needs a hint")

            // A node holding hints is killed and restarts: its hints survive and are still replayed.
            let statuses = try await admin.status()
            let holder = try #require(
                statuses.first { $0.nodeID != "n2" && ($0.hintsQueued ?? 0) > 0 }?.nodeID, "no node holds hints")
            cluster.stop(holder, signal: SIGKILL)
            try cluster.start(holder)
            try cluster.start("n2")
            // Every hint queue drains, within a bound.
            let queued = try await admin.hintsQueuedOnceDrained(within: .seconds(60))
            #expect(queued == 0, "hint queues did not drain within 60 s")
            var behind: [String] = []
            for key in missed {
                let record = try await admin.replicaRecord(Array(key.utf8), node: "n2")
                if record?.version != finalVersions[key] { behind.append(key) }
                if deleted.contains(key) && record?.tombstone != true { behind.append("\(key) (not deleted)") }
            }
            #expect(behind.isEmpty, "\(behind.count) of \(missed.count) keys are not on n2 at their version")
            // What an operator would run: `kvctl get KEY --node n2`, on a sample (a process per key).
            for key in missed.filter({ !deleted.contains($0) }).prefix(10) + deleted.prefix(3) {
                let result = try cluster.kvctl(["get", key, "--node", "n2", "--json"])
                let document = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
                #expect(document?["version"] as? String == finalVersions[key].map { "\($0)" }, "\(key): \(result)")
                #expect((document?["tombstone"] as? Bool ?? false) == deleted.contains(key), "\(key): \(result)")
            }
            await client.close()
            await admin.close()
        }

        /// Two of four replicas down: a strict QUORUM write of a key both replicate fails; with a sloppy
        /// quorum it succeeds on the hints, which reach the replicas once they are back.
        @Test func sloppyQuorumCountsHintsTowardW() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 251)
            defer { cluster.tearDown() }
            try cluster.startAll()
            let admin = try cluster.client(certificate: "admin", timeout: .seconds(5))
            var sloppyConfiguration = admin.configuration
            sloppyConfiguration.sloppyQuorum = true
            let sloppy = try KVClient(configuration: sloppyConfiguration)
            cluster.stop("n2", signal: SIGKILL)
            cluster.stop("n3", signal: SIGKILL)
            let key = try #require(
                (0..<500).map { "sloppy-\($0)" }.first {
                    let replicas = try cluster.replicas(of: $0)
                    return replicas.contains("n2") && replicas.contains("n3")
                })
            await #expect(throws: KVClientError.self) {
                try await admin.put(Array(key.utf8), value: Array("strict".utf8))
            }
            let version = Version(try await sloppy.put(Array(key.utf8), value: Array("sloppy".utf8)))
            #expect(sloppy.hintsHandedOff >= 1)
            try cluster.start("n2")
            try cluster.start("n3")
            let deadline = ContinuousClock.now + .seconds(30)
            var onReplicas = 0
            while onReplicas < 3 && ContinuousClock.now < deadline {
                onReplicas = 0
                for node in try cluster.replicas(of: key) {
                    let record = try? await admin.replicaRecord(Array(key.utf8), node: node)
                    if record?.version == version {
                        onReplicas += 1
                    }
                }
                if onReplicas < 3 { try await Task.sleep(for: .milliseconds(200)) }
            }
            #expect(onReplicas == 3, "the sloppy write reached \(onReplicas) of 3 replicas")

            // close() waits for what writes still do after they answered. n2 hangs (SIGSTOP): a write
            // answers once the key's two other replicas acknowledged it, and hands n2's copy to a
            // fallback only when n2 has been silent for half the request timeout (1 s) later; close()
            // returns once that hint is stored.
            cluster.signal("n2", SIGSTOP)
            defer { cluster.signal("n2", SIGCONT) }
            let closing = try cluster.client(timeout: .seconds(2))
            try await closing.put(Array(key.utf8), value: Array("hand-off".utf8))
            await closing.close()
            #expect(closing.hintsHandedOff == 1, "close() returned before the write's hint for n2 was stored")
            await sloppy.close()
            await admin.close()
        }

        @Test func hintsOlderThanTheWindowExpireAndAreCounted() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 231)
            defer { cluster.tearDown() }
            cluster.extraArguments = ["--hint-window", "1"]
            try cluster.startAll()
            let client = try cluster.client()
            let admin = try cluster.client(certificate: "admin")
            cluster.stop("n2", signal: SIGKILL)
            let keys = try (0..<400).map { "expiring-\($0)" }.filter { try cluster.replicas(of: $0).contains("n2") }
            for key in keys.prefix(50) {
                try await client.put(Array(key.utf8), value: Array("v".utf8))
            }
            try await eventually { client.hintsHandedOff >= 50 }
            #expect(client.hintsHandedOff >= 50)
            // n2 stays down past the window: its hints are dropped, not kept forever.
            let deadline = ContinuousClock.now + .seconds(30)
            var queued = UInt64.max
            while queued > 0 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
                queued = try await admin.status().compactMap(\.hintsQueued).reduce(0, +)
            }
            #expect(queued == 0)
            var expired = 0
            for node in ["n1", "n3", "n4"] {
                expired += Int(clamping: try await admin.nodeStatistics(node: node).hintsExpired)
            }
            #expect(expired >= 50, "every hint must be counted as expired")
            // Each expired hint's range is marked due for anti-entropy on n2, durably.
            var marked = 0
            for node in ["n1", "n3", "n4"] {
                let statistics = try await admin.nodeStatistics(node: node)
                marked += Int(clamping: statistics.antiEntropyRangesMarkedHintExpired)
                #expect(
                    statistics.antiEntropyRangesDue >= statistics.antiEntropyRangesMarkedHintExpired)
            }
            #expect(marked > 0, "expired hints must mark their ranges for anti-entropy")
            // Nothing else breaks: n2 comes back empty-handed for those keys, and the cluster serves.
            try cluster.start("n2")
            // A fresh client: the old one backs off from n2 after the refusals it saw.
            let fresh = try cluster.client(certificate: "admin")
            #expect(try await fresh.replicaRecord(Array(keys[0].utf8), node: "n2") == nil)
            await fresh.close()
            try await client.put(Array("after".utf8), value: Array("ok".utf8))
            #expect(try await client.get(Array(keys[0].utf8))?.value == Array("v".utf8))
            await client.close()
            await admin.close()
        }
    }
}

/// Waits until `condition` holds, or 20 s have passed; the caller then checks it.
func eventually(_ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(20)
    while !condition() && ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(20))
    }
}

extension KVClient {
    /// The hints queued on every node, polled until none is left or `bound` has passed (an admin
    /// client: the counts come from each node's stats).
    func hintsQueuedOnceDrained(within bound: Duration) async throws -> UInt64 {
        let deadline = ContinuousClock.now + bound
        var queued = UInt64.max
        while queued > 0 && ContinuousClock.now < deadline {
            queued = try await status().compactMap(\.hintsQueued).reduce(0, +)
            if queued > 0 { try await Task.sleep(for: .milliseconds(200)) }
        }
        return queued
    }
}
