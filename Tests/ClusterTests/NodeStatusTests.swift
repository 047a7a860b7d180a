import KVClient
import KVCore
import KVWire
import Testing

/// The SDK's reading of a node's `Admin` stats: typed fields copied, and numbers a hostile node sends
/// (duplicate targets with huge counts, an enormous phi) taken without trapping.
@Suite struct NodeStatusTests {
    @Test func countersComeFromTheTypedStatsAndHostileNumbersDoNotTrap() {
        var stats = NodeStats(node: "n1")
        stats.hintsStored = 7
        stats.hintQueues = [HintQueue(target: "n2", hints: .max), HintQueue(target: "n2", hints: .max)]
        stats.peers = [PeerView(node: "n3", phiTenths: .max, suspected: true)]
        stats.transfers = [
            RangeTransferStatus(
                range: TokenRange(start: 1, end: 2), state: .retrying, keys: .max, retries: 1, source: "n2",
                lastError: "timed out")
        ]
        stats.certificateNotAfter = 1_800_000_000
        stats.clusterChange = "n1 joining"
        var status = NodeStatus(nodeID: "n1", address: "127.0.0.1:7411", isUp: true)
        status.addCounters(stats)
        #expect(status.hintsStored == 7)
        #expect(status.hintsQueuedPerTarget == ["n2": .max])
        #expect(status.peersSuspected == ["n3"])
        #expect((status.peerPhi?["n3"] ?? 0) > 1e18)
        #expect(status.transfers?["1:2"] == "retrying keys=\(UInt64.max) retries=1 from=n2 error=timed out")
        #expect(status.certificateNotAfterSeconds == 1_800_000_000)

        // Once the node's map has no change in progress, its last transfer is over: not shown.
        stats.clusterChange = "none"
        status.addCounters(stats)
        #expect(status.transfer == nil)
        #expect(status.transfers?.isEmpty != false)
    }

    /// A node's transfer figures become a bounded `TransferProgress`: shares past a million millionths,
    /// an elapsed time of 2^64 ms, key counts that overflow a sum.
    @Test func transferFiguresAreBoundedAndGiveAnETA() throws {
        var stats = NodeStats(node: "n5")
        stats.transfers = [
            RangeTransferStatus(
                range: TokenRange(start: 1, end: 2), state: .done, keys: .max, retries: 0, source: "n1", lastError: ""),
            RangeTransferStatus(
                range: TokenRange(start: 2, end: 3), state: .receiving, keys: 5, retries: 0, source: "n2",
                lastError: ""),
        ]
        stats.transferShareMillionths = 600_000
        stats.transferShareAtStartMillionths = 200_000
        stats.transferElapsedMillis = 20_000
        stats.clusterChange = "n5 joining"
        var status = NodeStatus(nodeID: "n5", address: "127.0.0.1:7411", isUp: true)
        status.addCounters(stats)
        let progress = try #require(status.transfer)
        #expect(progress.rangesDone == 1 && progress.rangesTotal == 2)
        #expect(progress.keys == 4, "wraps, never traps")
        #expect(progress.remaining == .seconds(20))
        stats.transferShareMillionths = .max
        stats.transferShareAtStartMillionths = .max
        stats.transferElapsedMillis = .max
        stats.transfers[1].state = .retrying
        stats.transfers[1].lastError = "timed out"
        status.addCounters(stats)
        let hostile = try #require(status.transfer)
        #expect(hostile.share == 1 && hostile.elapsed == .seconds(365 * 86_400))
        #expect(hostile.stalled == "retrying 2:3 from n2: timed out")
        #expect(
            StatusVerdict.transfer(hostile)
                == "receiving: 1 of 2 ranges, 100 %, stalled: retrying 2:3 from n2: timed out")
    }

    /// Phi goes over the wire in tenths: rounded, capped, never trapping on infinity or NaN.
    @Test func phiTravelsInTenths() {
        #expect(PeerView(node: "n2", phi: 1.26, suspected: false).phiTenths == 13)
        #expect(PeerView(node: "n2", phi: 1.26, suspected: false).phi == 1.3)
        #expect(PeerView(node: "n2", phi: .infinity, suspected: true).phiTenths == 10_000_000_000)
        #expect(PeerView(node: "n2", phi: .nan, suspected: false).phiTenths == 0)
        #expect(PeerView(node: "n2", phi: -4, suspected: false).phiTenths == 0)
    }
}
