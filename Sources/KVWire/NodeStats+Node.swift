/// `NodeStats` of a node with every counter at zero and every list empty, for the node to fill
/// field by field.
extension NodeStats {
    public init(node: String) {
        self.init(
            node: node, keys: 0, uptimeSeconds: 0, hintsStored: 0, hintsRefused: 0, hintsRehomed: 0,
            hintsReplayed: 0, hintsExpired: 0, hintsBytes: 0, hintQueues: [], clockAheadRefused: 0, mapsRefused: 0,
            readRepairsReceived: 0, readRepairsApplied: 0, antiEntropyRangesDue: 0,
            antiEntropyRangesMarkedHintRefused: 0, antiEntropyRangesMarkedHintExpired: 0, antiEntropyMarkFailures: 0,
            antiEntropyWritesReceived: 0, antiEntropyRangesCompared: 0, antiEntropyKeysSent: 0,
            antiEntropyKeysReceived: 0, antiEntropyBytes: 0, antiEntropySessionFailures: 0,
            antiEntropyLastFullPassMillis: 0, antiEntropyOldestRangeComparedMillis: 0, rangesCompared: [],
            tombstonesPurged: 0, streamKeysReceived: 0, streamKeysResent: 0, streamBytes: 0, streamRetries: 0,
            handoffKeysDeleted: 0, refusals: [], peers: [], clusterEpoch: 0, clusterChange: "none", transfers: [],
            certificateNotAfter: nil, diskUsedBytes: nil, diskFreeBytes: nil, hintAges: [],
            transferShareMillionths: 0, transferShareAtStartMillionths: 0, transferElapsedMillis: 0)
    }

    /// The hints held for `target` (0 when the node holds none).
    public func hintsQueued(for target: String) -> UInt64 {
        hintQueues.first { $0.target == target }?.hints ?? 0
    }

    /// How many times the node refused for `reason` (`RPCRefusal`'s name), 0 when not reported.
    public func refused(_ reason: String) -> UInt64 {
        refusals.first { $0.reason == reason }?.count ?? 0
    }

    /// The failure detector's phi for `peer` (nil when the node does not watch it).
    public func phi(of peer: String) -> Double? {
        peers.first { $0.node == peer }?.phi
    }

    /// The peers the node's failure detector suspects.
    public var peersSuspected: [String] { peers.filter(\.suspected).map(\.node) }
}

extension RangeTransferStatus {
    /// One line for people: `receiving|retrying|done keys=K retries=R from=S[ error=…]`.
    public var summary: String {
        "\(state) keys=\(keys) retries=\(retries) from=\(source.isEmpty ? "-" : source)"
            + (lastError.isEmpty ? "" : " error=\(lastError)")
    }
}

extension PeerView {
    /// A peer's view with `phi` carried in tenths, rounded; capped at 10^10 tenths (phi grows without
    /// bound for a peer silent for long), 0 for a phi that is negative or not a number.
    public init(node: String, phi: Double, suspected: Bool) {
        let tenths: UInt64
        if phi.isNaN || phi <= 0 {
            tenths = 0
        } else {
            tenths = UInt64((min(phi, 1e9) * 10).rounded())
        }
        self.init(node: node, phiTenths: tenths, suspected: suspected)
    }

    /// The phi the node sent, in its tenths.
    public var phi: Double { Double(phiTenths) / 10 }
}
