import KVClient
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
        var status = NodeStatus(nodeID: "n1", address: "127.0.0.1:7411", isUp: true)
        status.addCounters(stats)
        #expect(status.hintsStored == 7)
        #expect(status.hintsQueuedPerTarget == ["n2": .max])
        #expect(status.peersSuspected == ["n3"])
        #expect((status.peerPhi?["n3"] ?? 0) > 1e18)
        #expect(status.transfers?["1:2"] == "retrying keys=\(UInt64.max) retries=1 from=n2 error=timed out")
        #expect(status.certificateNotAfterSeconds == 1_800_000_000)
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
