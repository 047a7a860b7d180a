import KVClient
import KVCore
import Testing

/// `StatusVerdict`, the first line of `kvctl status`: what is wrong in words and what it costs.
struct StatusVerdictTests {
    static let map = ClusterMap(
        clusterID: "test", epoch: 7, replicationFactor: 3,
        nodes: (1...4).map { index in
            ClusterMap.Node(
                id: "n\(index)", address: "127.0.0.\(index):7411",
                tokens: (0..<16).map { UInt64($0) << 60 | UInt64(index) << 56 })
        })

    static func up(_ id: String, epoch: UInt64 = 7) -> NodeStatus {
        var status = NodeStatus(nodeID: id, address: "127.0.0.1:7411", isUp: true, keys: 10, hintsQueued: 0)
        status.clusterEpoch = epoch
        status.clusterChange = "none"
        status.peersSuspected = []
        status.hintsQueuedPerTarget = [:]
        status.antiEntropyRangesDue = 0
        status.certificateNotAfterSeconds = 2_000_000_000
        return status
    }

    static func down(_ id: String) -> NodeStatus {
        NodeStatus(nodeID: id, address: "127.0.0.1:7411", isUp: false, error: "connection refused")
    }

    @Test func allUpIsHealthy() {
        let verdict = StatusVerdict(
            statuses: ["n1", "n2", "n3", "n4"].map { Self.up($0) }, map: Self.map, nowSeconds: 1_000)
        #expect(verdict.isHealthy)
        #expect(verdict.summary == "healthy")
    }

    @Test func aNodeDownNamesItsHintsAndWhatFails() throws {
        var n1 = Self.up("n1")
        n1.hintsQueuedPerTarget = ["n2": 300]
        n1.oldestHintAgeSeconds = ["n2": 250]
        n1.peersSuspected = ["n2"]
        var n3 = Self.up("n3")
        n3.hintsQueuedPerTarget = ["n2": 12]
        let verdict = StatusVerdict(
            statuses: [n1, Self.down("n2"), n3, Self.up("n4")], map: Self.map, nowSeconds: 1_000)
        #expect(
            verdict.problems.first == "n2 down (connection refused); 312 hints queued for it, the oldest 4 min old")
        let share = Int((try Self.map.ring().replicaShare()["n2"]! * 100).rounded())
        #expect(verdict.problems.contains("writes at ALL fail for \(share) % of keys"), "\(verdict.problems)")
        #expect(!verdict.summary.contains("QUORUM"))
    }

    @Test func twoNodesDownCostQuorumsOnTheKeysTheyShare() {
        let verdict = StatusVerdict(
            statuses: [Self.up("n1"), Self.down("n2"), Self.down("n3"), Self.up("n4")], map: Self.map,
            nowSeconds: 1_000)
        #expect(verdict.problems.count == 3)
        #expect(verdict.problems[2].hasPrefix("reads and writes at QUORUM fail for "), "\(verdict.problems)")
    }

    /// Each keyspace on its own ring with its own N: a node down on ring `east` costs the keyspaces
    /// there, not the default one; keyspaces that lose the same share share a line.
    @Test func quorumLossesAreEachKeyspacesOnItsRing() throws {
        // n1–n4 on the main ring (above), e1–e3 on `east`; `users` split at "n" with its keys from "n"
        // on `east`; `events` on `east` with N=2 (its QUORUM is both); `sessions` on the main ring like the
        // default.
        let east = TokenAllocator.allocate(nodeIDs: ["e1", "e2", "e3"]).map {
            ClusterMap.Node(id: $0.id, address: "\($0.id).example:7411", tokens: $0.tokens, ring: "east")
        }
        var map = Self.map
        map.nodes += east
        map = try map.applying(
            .createKeyspace("users", KeyspaceSettings(splits: [KeyspaceSplit(lowKey: Array("n".utf8), ring: "east")])))
        map = try map.applying(
            .createKeyspace("events", KeyspaceSettings(placement: .simple(replicas: 2), ring: "east")))
        map = try map.applying(.createKeyspace("sessions", KeyspaceSettings()))

        let eastDown = StatusVerdict.quorumLosses(down: ["e2"], map: map)
        let events = try map.ring(of: #require(map.keyspace(named: "events")))
        let eventsShare = Int((try #require(events.replicaShare()["e2"]) * 100).rounded())
        #expect(
            eastDown == [
                "keyspace events: reads and writes at QUORUM fail for \(eventsShare) % of keys",
                "keyspace users (keys from n): writes at ALL fail for 100 % of keys",
            ], "the main ring is whole")

        let twoEastDown = StatusVerdict.quorumLosses(down: ["e1", "e2"], map: map)
        #expect(twoEastDown.contains("keyspace users (keys from n): reads and writes at QUORUM fail for 100 % of keys"))
        #expect(twoEastDown.contains { $0.hasPrefix("keyspace events: every replica is down for ") }, "\(twoEastDown)")

        // n2 down: the default keyspace, `sessions` and the part of `users` below "n" share one line.
        let share = Int((try Self.map.ring().replicaShare()["n2"]! * 100).rounded())
        #expect(
            StatusVerdict.quorumLosses(down: ["n2"], map: map) == [
                "keyspaces default, sessions, users (keys below n): writes at ALL fail for \(share) % of keys"
            ])
        // The default keyspace alone is not named, as before keyspaces.
        #expect(
            StatusVerdict.quorumLosses(down: ["n2"], map: Self.map) == ["writes at ALL fail for \(share) % of keys"])
    }

    @Test func suspicionsMapsChangesHintsMarksAndCertificatesAreNamed() {
        var n1 = Self.up("n1")
        n1.peersSuspected = ["n4"]
        n1.hintsQueuedPerTarget = ["n3": 5]
        var n2 = Self.up("n2", epoch: 6)
        n2.peersSuspected = ["n4"]
        n2.antiEntropyRangesDue = 2
        // A node whose storage failed refuses writes until restarted: its refusal is quoted.
        n2.storageFailure = "storage I/O error at /d: the node's storage failed at T (IO error: EIO)"
        n2.diskFreeBytes = 1
        n2.diskReserveBytes = 2
        var n3 = Self.up("n3")
        n3.clusterChange = "join n5"
        n3.transfer = TransferProgress(
            rangesDone: 1, rangesTotal: 2, keys: 5, share: 0.6, shareAtStart: 0.2, elapsed: .seconds(20))
        n3.certificateNotAfterSeconds = 1_000 + 3 * 86_400 + 5
        var n4 = Self.up("n4")
        n4.diskUsedBytes = 850
        n4.diskFreeBytes = 150
        n4.diskReserveBytes = 100
        // Below its reserve, a node refuses writes: that is said instead of how full its disk is.
        n3.diskUsedBytes = 100 << 20
        n3.diskFreeBytes = (300 << 20) + 5
        n3.diskReserveBytes = 512 << 20
        let verdict = StatusVerdict(statuses: [n1, n2, n3, n4], map: Self.map, nowSeconds: 1_000)
        #expect(
            verdict.problems == [
                "n4 answers but n1, n2 suspect it",
                "n2 behind on the cluster map (epoch 7 is the newest)",
                "membership change in progress: join n5 (n3 receiving: 1 of 2 ranges, 60 %, about 20 s left)",
                "5 hints queued for n3, which is up: being replayed",
                "n2 has 2 ranges due for anti-entropy",
                "n2 refuses writes: storage I/O error at /d: the node's storage failed at T (IO error: EIO)",
                "n3's certificate expires in 3 days",
                "n3 refuses writes: 300 MiB free on its disk, below its reserve of 512 MiB (--disk-reserve-bytes)",
                "n4's disk is 85 % full",
            ])
    }

    /// A node's numbers are bounded before they become text: an age of 2^64 ms, NaN, a negative one.
    @Test func hostileAgesDoNotTrap() {
        #expect(StatusVerdict.age(Double(UInt64.max) / 1000) == "277777777 h")
        #expect(StatusVerdict.age(.nan) == "0 s")
        #expect(StatusVerdict.age(-5) == "0 s")
        var full = Self.up("n1")
        full.diskUsedBytes = .max
        full.diskFreeBytes = .max
        #expect(StatusVerdict.diskUsage(full) == 0.5)
    }
}

/// `kvctl keyspace list`'s key estimate: the copies the nodes count, over each part's N.
struct KeyspaceKeysTests {
    @Test func eachPartsCopiesOverItsNAndHostileCountsSaturate() throws {
        var map = StatusVerdictTests.map
        map = try map.applying(
            .createKeyspace(
                "users",
                KeyspaceSettings(
                    placement: .simple(replicas: 2), splits: [KeyspaceSplit(lowKey: Array("n".utf8), ring: "")])))
        let parts = map.parts(named: "users").map(\.id)
        func node(_ id: String, _ keys: [UInt32: UInt64]?) -> NodeStatus {
            var status = StatusVerdictTests.up(id)
            status.keysByKeyspace = keys
            return status
        }
        // Default (N=3): 30 copies; the first part (N=2): 20 copies; the second part: counted by n3 only.
        let statuses = [
            node("n1", [0: 10, parts[0]: 10]), node("n2", [0: 10, parts[0]: 10]), node("n3", [0: 10, parts[1]: 7]),
            node("n4", nil), StatusVerdictTests.down("n5"),
        ]
        #expect(NodeStatus.keyspaceKeys(statuses, map: map) == [0: 10, parts[0]: 10, parts[1]: 3])
        #expect(NodeStatus.keyspaceKeys([node("n4", nil)], map: map).isEmpty, "a node built before the count")
        let hostile = [node("n1", [0: .max]), node("n2", [0: .max])]
        #expect(NodeStatus.keyspaceKeys(hostile, map: map) == [0: UInt64.max / 3], "the sum saturates")
    }
}
