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

    @Test func suspicionsMapsChangesHintsMarksAndCertificatesAreNamed() {
        var n1 = Self.up("n1")
        n1.peersSuspected = ["n4"]
        n1.hintsQueuedPerTarget = ["n3": 5]
        var n2 = Self.up("n2", epoch: 6)
        n2.peersSuspected = ["n4"]
        n2.antiEntropyRangesDue = 2
        var n3 = Self.up("n3")
        n3.clusterChange = "join n5"
        n3.transfer = TransferProgress(
            rangesDone: 1, rangesTotal: 2, keys: 5, share: 0.6, shareAtStart: 0.2, elapsed: .seconds(20))
        n3.certificateNotAfterSeconds = 1_000 + 3 * 86_400 + 5
        var n4 = Self.up("n4")
        n4.diskUsedBytes = 850
        n4.diskFreeBytes = 150
        let verdict = StatusVerdict(statuses: [n1, n2, n3, n4], map: Self.map, nowSeconds: 1_000)
        #expect(
            verdict.problems == [
                "n4 answers but n1, n2 suspect it",
                "n2 behind on the cluster map (epoch 7 is the newest)",
                "membership change in progress: join n5 (n3 receiving: 1 of 2 ranges, 60 %, about 20 s left)",
                "5 hints queued for n3, which is up: being replayed",
                "n2 has 2 ranges due for anti-entropy",
                "n3's certificate expires in 3 days",
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
