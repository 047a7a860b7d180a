/// One node's part in a membership change: which ranges it receives, in which order, when its copy
/// counts as verified, when it may report `ClusterChange.streamed`, and which ranges it drops after
/// the switch. The one copy of those rules: `kvd`'s `RangeStreamer` and the simulator's nodes drive it
/// (each with its own I/O: pages over RPC or simulated messages, Merkle comparisons, the proposal).
///
/// **Receiving**: the ranges of `ClusterMap.transfers(to:)` are pulled one after the other, page by
/// page, from one of each range's old replicas. When every range is in, each is compared with its old
/// replicas, and a majority of them must compare without error: every write a quorum of them
/// acknowledged is on one of those (`kvsim --seed 165 --membership` showed one source is not enough).
/// Only then does the node report its ranges streamed; the last receiver's report switches ownership.
/// The `Checkpoint` is durable: a node that restarts resumes the same change after its last page.
///
/// **Dropping**: ranges the node held but keeps in neither ring are cut at the current ring's vnodes,
/// each piece compared with every one of its current owners, and deleted only once they all compared.
public struct RangeTransfer: Sendable, Hashable {
    /// One range's progress, as the checkpoint records it and `Admin` stats show it.
    public struct Progress: Codable, Sendable, Hashable {
        public var start: UInt64
        public var end: UInt64
        /// The last key applied (recorded after each page); nil before the first page.
        public var after: [UInt8]?
        public var done = false
        public var keys = 0
        /// Records of the page being applied when this was recorded (re-received if a crash follows).
        public var pending = 0
        public var retries = 0
        public var lastError: String?
        public var source: String?

        public init(range: TokenRangeSpan) {
            self.start = range.start
            self.end = range.end
        }

        public var range: TokenRangeSpan { TokenRangeSpan(start: start, end: end) }
    }

    /// The durable record of a transfer: which change it is for, and each range's progress.
    public struct Checkpoint: Codable, Sendable, Hashable {
        public var change: String
        public var ranges: [Progress]
        public var verified = false

        public init(change: String, ranges: [Progress]) {
            self.change = change
            self.ranges = ranges
        }
    }

    /// What the node does next for the change.
    public enum Step: Sendable, Hashable {
        /// Pull the next page of `checkpoint.ranges[index]` (after its `after` key) from one of
        /// `sources`, the range's old replicas in preference order.
        case pull(index: Int, sources: [String])
        /// Compare each range with its old replicas (`sources(of:)`), then call `verified(compared:)`.
        case verify
        /// Propose `ClusterChange.streamed(node:)`.
        case report
    }

    /// A piece of a range the node no longer keeps, and its current owners (the node excluded).
    public struct Drop: Sendable, Hashable {
        public var piece: TokenRangeSpan
        public var owners: [String]
    }

    public let node: String
    public var checkpoint: Checkpoint
    /// Whether the checkpoint was made now (a new change) rather than resumed: it must be saved.
    public let isNew: Bool
    private let sourcesByRange: [TokenRangeSpan: [String]]

    /// Test-only (a planted bug for the simulator's mutation check): report the ranges streamed
    /// without streaming or comparing them.
    package var switchesBeforeStreaming = false

    /// The transfer `node` makes for the change in progress in `map`, resuming `stored` when it is for
    /// the same change. `changeID`: the map's, when the caller has it at hand.
    public init(node: String, map: ClusterMap, changeID: String? = nil, resuming stored: Checkpoint?) {
        self.node = node
        let transfers = map.transfers(to: node)
        self.sourcesByRange = Dictionary(
            transfers.map { ($0.range, $0.sources) }, uniquingKeysWith: { first, _ in first })
        let change = changeID ?? Self.changeID(map)
        if let stored, stored.change == change {
            self.checkpoint = stored
            self.isNew = false
        } else {
            self.checkpoint = Checkpoint(change: change, ranges: transfers.map { Progress(range: $0.range) })
            self.isNew = true
        }
    }

    /// What identifies a change: the rings before and after, tokens included (a node moving its
    /// address does not change it; anything else that changes the rings is another change).
    public static func changeID(_ map: ClusterMap) -> String {
        changeID(current: try? map.ring(), next: try? map.nextRing())
    }

    /// `changeID(_:)` of a map whose rings are at hand.
    public static func changeID(current: Ring?, next: Ring?) -> String {
        func describe(_ ring: Ring?) -> String {
            guard let ring else { return "-" }
            return "\(ring.replicationFactor):"
                + ring.nodes.map { "\($0.id)=\($0.tokens.count)" }.joined(separator: ",")
                + ":\(XXH64.hash(ring.tokens.flatMap { withUnsafeBytes(of: $0.bigEndian, Array.init) }, seed: 0))"
        }
        return describe(current) + "→" + describe(next)
    }

    /// The old replicas of `range`, in preference order.
    public func sources(of range: TokenRangeSpan) -> [String] {
        sourcesByRange[range] ?? []
    }

    public var step: Step {
        if switchesBeforeStreaming { return .report }
        if let index = checkpoint.ranges.firstIndex(where: { !$0.done }) {
            return .pull(index: index, sources: sources(of: checkpoint.ranges[index].range))
        }
        return checkpoint.verified ? .report : .verify
    }

    /// A page of `checkpoint.ranges[index]` from `source` is applied: `count` records up to `lastKey`,
    /// the last page when `done`.
    public mutating func applied(index: Int, count: Int, lastKey: [UInt8]?, done: Bool, from source: String) {
        guard checkpoint.ranges.indices.contains(index) else { return }
        checkpoint.ranges[index].keys += count
        checkpoint.ranges[index].pending = 0
        if let lastKey { checkpoint.ranges[index].after = lastKey }
        checkpoint.ranges[index].done = done
        checkpoint.ranges[index].source = source
        checkpoint.ranges[index].lastError = nil
    }

    /// The pull of `checkpoint.ranges[index]` from `source` failed (`reason`): retried, from another
    /// source if there is one.
    public mutating func failed(index: Int, source: String, reason: String) {
        guard checkpoint.ranges.indices.contains(index) else { return }
        checkpoint.ranges[index].pending = 0
        checkpoint.ranges[index].retries += 1
        checkpoint.ranges[index].source = source
        checkpoint.ranges[index].lastError = "\(source): \(reason)"
    }

    /// After `.verify`: how many old replicas of each range compared without error. Marks the
    /// transfer verified, and returns nil, when each range reached enough of its old replicas to meet
    /// every quorum write (`comparisonsNeeded`); else returns the first range that did not.
    public mutating func verified(compared: [TokenRangeSpan: Int]) -> TokenRangeSpan? {
        for progress in checkpoint.ranges
        where (compared[progress.range] ?? 0) < Self.comparisonsNeeded(replicas: sources(of: progress.range).count) {
            return progress.range
        }
        checkpoint.verified = true
        return nil
    }

    /// How many of a range's `replicas` old replicas a receiver must compare it with: N − (N/2 + 1) + 1,
    /// so that every write a quorum of them acknowledged (N/2 + 1) is on one of those compared. It was
    /// a majority, which for N = 2 is both: a keyspace of N = 2 could never finish a change that
    /// removed a dead node (`kvctl leave` of a host that is gone).
    public static func comparisonsNeeded(replicas: Int) -> Int {
        replicas - replicas / 2
    }

    // MARK: - Dropping

    /// The ranges `node` keeps in `map`: those it replicates now or will once the change is done.
    public static func kept(by node: String, in map: ClusterMap) -> [TokenRangeSpan]? {
        guard let ring = try? map.ring(), let next = try? map.nextRing() else { return nil }
        return kept(by: node, current: ring, next: next)
    }

    /// `kept(by:in:)` of a map whose rings are at hand.
    public static func kept(by node: String, current: Ring, next: Ring) -> [TokenRangeSpan] {
        current.ranges(replicatedBy: node) + next.ranges(replicatedBy: node)
    }

    /// The pieces of `held` that `node` no longer keeps (`kept`), cut at the current ring's vnodes so
    /// that each has one list of owners, in order: drop each once every owner compared it.
    public static func drops(held: [TokenRangeSpan], kept: [TokenRangeSpan], node: String, ring: Ring) -> [Drop] {
        TokenRangeSpan.subtracting(kept, from: held).flatMap { span in
            ring.pieces(of: span).map { piece in
                Drop(piece: piece, owners: ring.preferenceList(for: Token(piece.end)).filter { $0 != node })
            }
        }
    }
}
