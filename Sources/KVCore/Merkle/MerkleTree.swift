/// The comparison tree of one token range: a fixed fan-out tree over the range's slots, which both
/// replicas compute identically from the range alone, so a node is addressed by (level, index).
///
/// The leaves are the range's slots (`proto-spec/MERKLE.md`): the range cut at every segment
/// boundary, so a leaf is one segment, or the part of one at either end of the range. With `m` leaves
/// the tree has `depth` = the smallest `d` with 2^d ≥ m; the root is level 0, leaves are level
/// `depth`. Node `i` of level `l` covers leaves `i·2^(depth−l) ..< min((i+1)·2^(depth−l), m)`; only
/// nodes covering at least one leaf exist. A node's digest is the digest of its token span.
public struct MerkleTree: Sendable, Hashable {
    /// Children per node: 2, because a difference alone under a node costs one hash per level (the
    /// left child's; the right one is the parent's XOR it), the fewest bytes per level of any fan-out
    /// (`proto-spec/MERKLE.md`, "Why fan-out 2").
    public static let fanOut = 2

    private let slots: SegmentSlots
    /// The range the tree covers.
    public var range: TokenRangeSpan { slots.range }
    /// Number of leaves, 1 to 2^20 + 1.
    public var leafCount: Int { slots.count }
    /// The level of the leaves (the root is level 0): 0 to 21.
    public let depth: Int

    public init(range: TokenRangeSpan) {
        slots = SegmentSlots(range)
        var depth = 0
        var reach = 1
        while reach < slots.count {
            reach *= Self.fanOut
            depth += 1
        }
        self.depth = depth
    }

    /// Leaves under one node of `level`.
    private func leavesPerNode(atLevel level: Int) -> Int {
        var result = 1
        for _ in level..<depth { result *= Self.fanOut }
        return result
    }

    /// Number of nodes at `level` (0 outside `0...depth`).
    public func nodeCount(atLevel level: Int) -> Int {
        guard level >= 0 && level <= depth else { return 0 }
        let per = leavesPerNode(atLevel: level)
        return (leafCount + per - 1) / per
    }

    /// Whether node `index` exists at `level`.
    public func contains(level: Int, index: Int) -> Bool {
        index >= 0 && index < nodeCount(atLevel: level)
    }

    /// The leaves (slot indices) a node covers.
    public func leaves(level: Int, index: Int) -> Range<Int> {
        precondition(contains(level: level, index: index), "no node \(index) at level \(level)")
        let per = leavesPerNode(atLevel: level)
        return (index * per)..<min((index + 1) * per, leafCount)
    }

    /// The tokens a node covers: the root's is the whole range.
    public func span(level: Int, index: Int) -> TokenRangeSpan {
        slots.span(leaves(level: level, index: index))
    }

    /// The indices, at `level + 1`, of a node's children; empty for a leaf.
    public func children(level: Int, index: Int) -> Range<Int> {
        precondition(contains(level: level, index: index), "no node \(index) at level \(level)")
        guard level < depth else { return 0..<0 }
        let first = index * Self.fanOut
        return first..<min(first + Self.fanOut, nodeCount(atLevel: level + 1))
    }

    /// The children of a node whose hashes a `.children` answer carries: all but the last, whose hash
    /// is the node's XOR theirs (a node's digest is the XOR of its children's, which tile its span).
    public func sentChildren(level: Int, index: Int) -> Range<Int> {
        let all = children(level: level, index: index)
        return all.isEmpty ? all : all.lowerBound..<(all.upperBound - 1)
    }

    /// Whether this tree can answer `query`: it names existing nodes of its level (at most
    /// `Limits.merkleNodesPerQueryMax`), and asks children only of nodes above the leaves.
    public func isValid(_ query: MerkleQuery) -> Bool {
        guard query.nodes.count <= Limits.merkleNodesPerQueryMax else { return false }
        switch query.kind {
        case .root:
            return query.level == 0 && query.nodes.isEmpty
        case .children:
            return query.level < depth && query.nodes.allSatisfy { contains(level: query.level, index: $0) }
        case .listing:
            return query.nodes.allSatisfy { contains(level: query.level, index: $0) }
        }
    }

    /// The answer to `query` from one replica, whose digest of a span is `digest` and whose records
    /// in a span are `listing`; nil if `isValid(query)` is false.
    ///
    /// `.root` answers one hash; `.children` the hashes of each named node's children but its last,
    /// node after node (the asker knows the node's hash, so the last child's is that XOR the others:
    /// `sentChildren(level:index:)`); `.listing` the entries of every named node, in the order
    /// `listing` gives them.
    public func answer<Failure: Error>(
        _ query: MerkleQuery,
        digest: (TokenRangeSpan) throws(Failure) -> UInt64,
        listing: (TokenRangeSpan) throws(Failure) -> [MerkleEntry]
    ) throws(Failure) -> MerkleAnswer? {
        guard isValid(query) else { return nil }
        switch query.kind {
        case .root:
            return MerkleAnswer(hashes: [try digest(range)])
        case .children:
            var hashes: [UInt64] = []
            for node in query.nodes {
                for child in sentChildren(level: query.level, index: node) {
                    hashes.append(try digest(span(level: query.level + 1, index: child)))
                }
            }
            return MerkleAnswer(hashes: hashes)
        case .listing:
            var entries: [MerkleEntry] = []
            for node in query.nodes {
                entries += try listing(span(level: query.level, index: node))
            }
            return MerkleAnswer(entries: entries)
        }
    }
}
