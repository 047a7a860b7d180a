import Foundation
import KVClient
import KVCore
import KVWire
import Testing

extension RealProcessTests.FirstHalf {
    /// Real processes (issue 20): a key written with a 2 s time to live reads as present, then as absent
    /// on every replica once it expires, with no write in between; the expired record is purged as a
    /// tombstone would be, without one; and no path that copies records (hints, read repair,
    /// anti-entropy) brings back the older value it replaced.
    @Suite(.timeLimit(.minutes(4)))
    struct TimeToLiveClusterTests {
        /// The loopback addresses of n1...n4; no other test uses them.
        static let hosts = [229, 230, 139, 140]

        @Test func aKeyExpiresOnEveryReplicaWithoutAWriteAndIsPurgedWithoutATombstone() async throws {
            let cluster = try ClusterHarness(hosts: Self.hosts)
            defer { cluster.tearDown() }
            // Anti-entropy (and so the purge) only on demand; expired records purgeable 2 s after their
            // expiry. No node goes down here, so a 1 s hint window (shorter than the grace) is enough.
            cluster.extraArguments = ["--anti-entropy-interval", "0", "--hint-window", "1", "--tombstone-grace", "2"]
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client()
            let admin = try cluster.client(certificate: "admin")
            let clock = client.configuration.wallClockMillis

            // One key through the command line, one through the SDK, each with a 2 s time to live.
            let put = try await offThePool {
                try cluster.kvctl(["put", "ttl-cli", "from-cli", "--ttl", "2s", "--json"])
            }
            expectSuccess(put)
            let putDocument = try #require(jsonObject(put.stdout), "\(put)")
            let cliStored = try #require(
                try await admin.replicaRecord(Array("ttl-cli".utf8), node: cluster.replicas(of: "ttl-cli")[0]))
            #expect(putDocument["version"] as? String == "\(cliStored.version)", "\(put.stdout)")
            let sdkVersion = try await client.put(
                Array("ttl-sdk".utf8), value: Array("from-sdk".utf8), timeToLive: .seconds(2))
            let keys = [
                Expiring(key: "ttl-cli", value: "from-cli", version: cliStored.version),
                Expiring(key: "ttl-sdk", value: "from-sdk", version: Version(sdkVersion)),
            ]

            // Present right away: every replica holds the value with the same expiry, the version's
            // time plus 2 s, and reads (quorum, SDK and kvctl, and each replica alone) find it.
            for key in keys {
                try await expectHeldUnchanged(key, on: cluster, admin: admin)
                try await expectReads(key, cluster: cluster, client: client, clock: clock)
            }

            // Absent once the expiry has passed, with no write in between: at ALL, and on every replica
            // alone, which still holds the very record written (its version, not a tombstone).
            try await waitUntil(keys.map(\.expiresAtMillis).max()!, clock: clock)
            for key in keys {
                try await expectReads(key, cluster: cluster, client: client, clock: clock)
                #expect(try await client.get(Array(key.key.utf8), consistency: .all, repair: .blocking) == nil)
                try await expectHeldUnchanged(key, on: cluster, admin: admin)
            }

            // Purged after the grace period as tombstones are, none written: each of the two keys'
            // three replicas drops its record once, and a further pass copies nothing back.
            try await waitUntil(keys.map(\.expiresAtMillis).max()! + 2_000, clock: clock)
            let repair = try await offThePool { try cluster.kvctl(["repair", "--json"]) }
            expectSuccess(repair)
            let document = try #require(jsonObject(repair.stdout), "\(repair.stdout)")
            #expect(document["tombstonesPurged"] as? Int == keys.count * 3, "\(repair.stdout)")
            var purged = 0
            for node in cluster.ids {
                purged += Int(clamping: try await admin.nodeStatistics(node: node).tombstonesPurged)
            }
            #expect(purged == keys.count * 3, "the nodes' purge counters")
            for key in keys {
                for node in try cluster.replicas(of: key.key) {
                    let record = try await admin.replicaRecord(Array(key.key.utf8), node: node)
                    #expect(record == nil, "\(key.key) on \(node): \(String(describing: record))")
                }
                #expect(try await client.get(Array(key.key.utf8), consistency: .all) == nil)
                // A key that is not there at all: one JSON document on stdout, exit code 2.
                for arguments in [["get", key.key, "--json"], ["get", key.key, "--node", "n1", "--json"]] {
                    let missing = try await offThePool { try cluster.kvctl(arguments) }
                    #expect(missing.status == 2, "\(arguments): \(missing)")
                    #expect(jsonObject(missing.stdout)?["found"] as? Bool == false, "\(arguments): \(missing.stdout)")
                }
            }
            let again = try await offThePool { try cluster.kvctl(["repair", "--json"]) }
            expectSuccess(again)
            let againDocument = try #require(jsonObject(again.stdout), "\(again.stdout)")
            #expect(againDocument["keysSent"] as? Int == 0, "\(again.stdout)")
            #expect(againDocument["keysReceived"] as? Int == 0, "\(again.stdout)")
            #expect(againDocument["tombstonesPurged"] as? Int == 0, "\(again.stdout)")
            await client.close()
            await admin.close()
        }

        /// A key written everywhere, then overwritten with a time to live while one replica is down:
        /// the down replica gets the expiring version by a hint, by read repair or by anti-entropy
        /// (one key each), and once it has expired the older value never reads again, anywhere.
        @Test func anExpiredKeyDoesNotComeBackThroughHintsReadRepairOrAntiEntropy() async throws {
            let cluster = try ClusterHarness(hosts: Self.hosts)
            defer { cluster.tearDown() }
            // Anti-entropy only on demand: each stale copy waits for the path under test.
            cluster.extraArguments = ["--anti-entropy-interval", "0"]
            try await offThePool { try cluster.startAll() }
            let down = "n2"
            func key(_ name: String) throws -> String {
                try #require(
                    try (0..<1_000).map { "\(name)-\($0)" }.first { try cluster.replicas(of: $0).contains(down) })
            }
            let (hinted, readRepaired, antiEntropy) = (
                try key("hinted"), try key("read-repaired"), try key("anti-entropy")
            )
            let client = try cluster.client()
            // The read-repaired and anti-entropy keys' TTL writes leave no hint for the down replica.
            let unhinted = try cluster.client(hintedHandoff: false)
            let clock = client.configuration.wallClockMillis
            for key in [hinted, readRepaired, antiEntropy] {
                try await client.put(Array(key.utf8), value: Array("v1".utf8), consistency: .all)
            }

            cluster.stop(down, signal: SIGKILL)
            var keys = [
                Expiring(
                    key: hinted, value: "v2",
                    version: Version(
                        try await client.put(Array(hinted.utf8), value: Array("v2".utf8), timeToLive: .seconds(2))))
            ]
            for key in [readRepaired, antiEntropy] {
                let version = try await unhinted.put(Array(key.utf8), value: Array("v2".utf8), timeToLive: .seconds(2))
                keys.append(Expiring(key: key, value: "v2", version: Version(version)))
            }
            try await eventually { client.hintsHandedOff >= 1 }
            #expect(client.hintsHandedOff >= 1, "the write n2 missed needs a hint")
            await client.close()
            await unhinted.close()

            // n2 comes back after the expiry, and its hint is replayed.
            try await waitUntil(keys.map(\.expiresAtMillis).max()!, clock: clock)
            try await offThePool { try cluster.start(down) }
            // Fresh clients: the others saw n2 down.
            let reader = try cluster.client()
            let admin = try cluster.client(certificate: "admin")
            let queued = try await admin.hintsQueuedOnceDrained(within: .seconds(60))
            #expect(queued == 0, "hint queues did not drain within 60 s")
            // The hint brought n2 the expiring version: absent there too, with no read in between. The
            // other two keys' copies on n2 are still v1, until their paths run.
            try await expectHeldUnchanged(keys[0], on: cluster, admin: admin)
            try await expectReplicaReads(keys[0], on: [down], cluster: cluster, clock: clock)
            for key in keys.dropFirst() {
                let stale = try await admin.replicaRecord(Array(key.key.utf8), node: down)
                #expect(
                    stale?.value == Array("v1".utf8) && stale?.expiresAtMillis == 0,
                    "\(key.key) on n2: \(String(describing: stale))")
            }

            // Read repair: a blocking read at ALL answers absent (v2 outranks v1), and leaves v2 on n2.
            #expect(try await reader.get(Array(readRepaired.utf8), consistency: .all, repair: .blocking) == nil)
            try await expectHeldUnchanged(keys[1], on: cluster, admin: admin)
            // Anti-entropy: the one stale copy left (the third key's on n2) is copied, nothing else.
            let repair = try await offThePool { try cluster.kvctl(["repair", "--json"]) }
            expectSuccess(repair)
            let document = try #require(jsonObject(repair.stdout), "\(repair.stdout)")
            let copied = (document["keysSent"] as? Int ?? -1) + (document["keysReceived"] as? Int ?? -1)
            #expect(copied == 1, "\(repair.stdout)")
            try await expectHeldUnchanged(keys[2], on: cluster, admin: admin)

            // All three: absent at ALL and on every replica, each holding v2's version; and after another
            // anti-entropy pass (which copies nothing) still so.
            for pass in 0..<2 {
                for key in keys {
                    #expect(try await reader.get(Array(key.key.utf8), consistency: .all, repair: .blocking) == nil)
                    try await expectReads(key, cluster: cluster, client: reader, clock: clock)
                    try await expectHeldUnchanged(key, on: cluster, admin: admin)
                }
                if pass == 0 {
                    let again = try await offThePool { try cluster.kvctl(["repair", "--json"]) }
                    expectSuccess(again)
                    let againDocument = try #require(jsonObject(again.stdout), "\(again.stdout)")
                    #expect(againDocument["keysSent"] as? Int == 0, "\(again.stdout)")
                    #expect(againDocument["keysReceived"] as? Int == 0, "\(again.stdout)")
                }
            }
            await reader.close()
            await admin.close()
        }
    }
}

/// A key written with a 2 s time to live, as each of its replicas should hold it.
private struct Expiring {
    var key: String
    var value: String
    var version: Version
    /// The version's time plus the time to live: every replica expires the version at this moment.
    var expiresAtMillis: UInt64 { version.millis + 2_000 }

    init(key: String, value: String, version: Version) {
        self.key = key
        self.value = value
        self.version = version
    }

    /// Whether a read that began at `started` and ended at `ended` (wall-clock milliseconds) must find
    /// the value: yes if it ended before the expiry, no if it began at or after it, either if it spans
    /// it (nil). The checks so assume nothing about how fast a read is.
    func mustBePresent(started: UInt64, ended: UInt64) -> Bool? {
        if ended < expiresAtMillis { return true }
        if started >= expiresAtMillis { return false }
        return nil
    }
}

/// Checks that every replica of `key` holds exactly the record written: its value, version and
/// expiry, not a tombstone; so no write (a tombstone, an older value) came in between.
private func expectHeldUnchanged(
    _ key: Expiring, on cluster: ClusterHarness, admin: KVClient, sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    for node in try cluster.replicas(of: key.key) {
        let record = try await admin.replicaRecord(Array(key.key.utf8), node: node)
        #expect(
            record
                == StoredRecord(
                    version: key.version, tombstone: false, value: Array(key.value.utf8),
                    expiresAtMillis: key.expiresAtMillis),
            "\(key.key) on \(node): \(String(describing: record))", sourceLocation: sourceLocation)
    }
}

/// Reads `key` at quorum (SDK and `kvctl get`) and on each replica alone, each read checked against
/// the expiry by when it ran (`Expiring.mustBePresent`).
private func expectReads(
    _ key: Expiring, cluster: ClusterHarness, client: KVClient, clock: @escaping @Sendable () -> UInt64,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    var started = clock()
    let found = try await client.get(Array(key.key.utf8))
    switch key.mustBePresent(started: started, ended: clock()) {
    case true?:
        #expect(found?.value == Array(key.value.utf8), "\(key.key)", sourceLocation: sourceLocation)
        #expect(found?.expiresAtMillis == key.expiresAtMillis, "\(key.key)", sourceLocation: sourceLocation)
    case false?:
        #expect(found == nil, "\(key.key)", sourceLocation: sourceLocation)
    case nil:
        #expect(found == nil || found?.value == Array(key.value.utf8), "\(key.key)", sourceLocation: sourceLocation)
    }
    started = clock()
    let result = try await offThePool { try cluster.kvctl(["get", key.key]) }
    switch key.mustBePresent(started: started, ended: clock()) {
    case true?:
        #expect(
            result.status == 0 && result.stdout == key.value, "\(key.key): \(result)", sourceLocation: sourceLocation)
    case false?:
        #expect(result.status == 2 && result.stdout.isEmpty, "\(key.key): \(result)", sourceLocation: sourceLocation)
    case nil:
        #expect(
            (result.status == 0 && result.stdout == key.value) || result.status == 2, "\(key.key): \(result)",
            sourceLocation: sourceLocation)
    }
    try await expectReplicaReads(
        key, on: try cluster.replicas(of: key.key), cluster: cluster, clock: clock, sourceLocation: sourceLocation)
}

/// `kvctl get KEY --node NODE --json` on each of `nodes`: the version and expiry written, never a
/// tombstone, and the value or `expired` by when the command ran (`Expiring.mustBePresent`).
private func expectReplicaReads(
    _ key: Expiring, on nodes: [String], cluster: ClusterHarness, clock: @escaping @Sendable () -> UInt64,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    for node in nodes {
        let started = clock()
        let result = try await offThePool { try cluster.kvctl(["get", key.key, "--node", node, "--json"]) }
        let ended = clock()
        let document = try #require(jsonObject(result.stdout), "\(node): \(result)", sourceLocation: sourceLocation)
        let comment: Comment = "\(key.key) on \(node): \(result)"
        #expect(document["version"] as? String == "\(key.version)", comment, sourceLocation: sourceLocation)
        #expect(document["tombstone"] as? Bool == false, comment, sourceLocation: sourceLocation)
        #expect(
            document["expiresAtMillis"] as? Int == Int(key.expiresAtMillis), comment, sourceLocation: sourceLocation)
        let present = key.mustBePresent(started: started, ended: ended) ?? (result.status == 0)
        if present {
            #expect(result.status == 0 && document["found"] as? Bool == true, comment, sourceLocation: sourceLocation)
            #expect(document["value"] as? String == key.value, comment, sourceLocation: sourceLocation)
            #expect(document["expired"] as? Bool == false, comment, sourceLocation: sourceLocation)
        } else {
            #expect(result.status == 2 && document["found"] as? Bool == false, comment, sourceLocation: sourceLocation)
            #expect(document["value"] == nil, comment, sourceLocation: sourceLocation)
            #expect(document["expired"] as? Bool == true, comment, sourceLocation: sourceLocation)
        }
    }
}

/// Waits until `clock` reads `millis` or later: wall-clock time that must pass (an expiry, a grace
/// period), polled, with a bound so that a moment far off fails instead of hanging.
private func waitUntil(_ millis: UInt64, clock: @Sendable () -> UInt64) async throws {
    let deadline = ContinuousClock.now + .seconds(60)
    while clock() < millis {
        guard ContinuousClock.now < deadline else {
            throw HarnessError("the clock did not reach \(millis) ms within 60 s (now \(clock()) ms)")
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// One JSON object from a command's standard output.
private func jsonObject(_ text: String) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
}
