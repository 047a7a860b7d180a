/// Which token ranges change hands between two rings, and between whom: the plan of a membership
/// change (join, leave, replace, a new replication factor).
///
/// Both rings are cut at every vnode token of either ring; on each piece, the preference list is the
/// same all along in each ring. A node in the piece's `after` list but not in its `before` list must
/// receive the piece (from a node of `before`); a node in `before` but not in `after` may drop it once
/// the new owners hold it. Adjacent pieces with the same lists are merged.
public struct RangeMovement: Sendable, Hashable, CustomStringConvertible {
    public var range: TokenRangeSpan
    /// The range's replicas in the ring before the change, in preference order.
    public var before: [String]
    /// Its replicas in the ring after the change, in preference order.
    public var after: [String]

    public init(range: TokenRangeSpan, before: [String], after: [String]) {
        self.range = range
        self.before = before
        self.after = after
    }

    /// The nodes that must receive the range.
    public var receivers: [String] { after.filter { !before.contains($0) } }
    /// The nodes that no longer replicate it after the change.
    public var givers: [String] { before.filter { !after.contains($0) } }

    public var description: String { "\(range) \(before) → \(after)" }

    /// The pieces of the token ring whose replicas differ between `old` and `new`, ascending by end.
    public static func between(_ old: Ring, _ new: Ring) -> [RangeMovement] {
        let cuts = Array(Set(old.tokens).union(new.tokens)).sorted()
        guard !cuts.isEmpty else { return [] }
        var pieces: [RangeMovement] = []
        for (index, end) in cuts.enumerated() {
            let start = cuts[index == 0 ? cuts.count - 1 : index - 1]
            let before = old.preferenceList(for: Token(end))
            let after = new.preferenceList(for: Token(end))
            guard before != after else { continue }
            if let last = pieces.last, last.range.end == start, last.before == before, last.after == after {
                pieces[pieces.count - 1].range.end = end
            } else {
                pieces.append(
                    RangeMovement(range: TokenRangeSpan(start: start, end: end), before: before, after: after))
            }
        }
        // The piece that wraps past the largest token continues the first one when they match.
        if pieces.count > 1, let last = pieces.last, last.range.end == pieces[0].range.start,
            last.before == pieces[0].before, last.after == pieces[0].after
        {
            pieces[0].range.start = pieces.removeLast().range.start
        }
        return pieces
    }

    /// The share of all replicas (a fraction of `replicationFactor` copies of every key, summed over
    /// nodes) that must be copied: Σ over pieces of width × receivers, over 2^64. A change that moves
    /// nothing more than it must copies exactly this.
    public static func copiedShare(_ movements: [RangeMovement]) -> Double {
        movements.reduce(0.0) { total, movement in
            total + Double(movement.range.width) / 18_446_744_073_709_551_616.0 * Double(movement.receivers.count)
        }
    }
}

/// One range a node must receive, and the old replicas it can get it from, best first (nodes that are
/// leaving last: a replaced node is usually dead, and a decommissioned one is busy handing off).
public struct IncomingRange: Sendable, Hashable, CustomStringConvertible {
    public var range: TokenRangeSpan
    public var sources: [String]

    public init(range: TokenRangeSpan, sources: [String]) {
        self.range = range
        self.sources = sources
    }

    public var description: String { "\(range) from \(sources.joined(separator: "|"))" }
}

extension ClusterMap {
    /// Whether a membership change is in progress: a node joining or leaving, or a new placement (or
    /// replication factor) pending.
    public var isChanging: Bool {
        pendingPlacement != nil || viewNextRing != nil
            || nodes.contains { $0.state == .joining || $0.state == .leaving }
            || keyspaces.contains { !$0.dropped && ($0.pendingPlacement != nil || $0.pendingRing != nil) }
    }

    /// The ring once the change in progress is done: normal, joining and down nodes of `viewNextRing`
    /// (or `viewRing`), with the pending placement; the current ring when nothing is changing.
    public func nextRing() throws(RingError) -> Ring {
        let ringName = viewNextRing ?? viewRing
        return try Ring(
            nodes: nodes.filter { [.normal, .joining, .down].contains($0.state) && $0.ring == ringName }.map(
                \.ringNode),
            placement: pendingPlacement ?? placement)
    }

    /// The ranges that change hands in the change in progress (empty when nothing is changing).
    public func movements() -> [RangeMovement] {
        guard isChanging, let current = try? ring(), let next = try? nextRing() else { return [] }
        return RangeMovement.between(current, next)
    }

    /// What `node` must receive in the change in progress, with the nodes to get each range from.
    public func transfers(to node: String) -> [IncomingRange] {
        let leaving = Set(nodes.filter { $0.state == .leaving }.map(\.id))
        return movements().filter { $0.receivers.contains(node) }.map { movement in
            let sources = movement.before.filter { $0 != node }
            return IncomingRange(
                range: movement.range,
                sources: sources.filter { !leaving.contains($0) } + sources.filter(leaving.contains))
        }
    }

    /// The nodes that must receive ranges in the change in progress, in any keyspace, by id.
    public func receivers() -> [String] {
        let views = [self] + keyspaces.filter { !$0.dropped }.map { viewed(as: $0) }
        return Array(Set(views.flatMap { $0.movements().flatMap(\.receivers) })).sorted()
    }

    /// Ends the change in progress: joining nodes become normal, leaving ones removed (without tokens),
    /// the pending placement becomes the placement.
    mutating func finishChange() {
        for index in nodes.indices {
            switch nodes[index].state {
            case .joining:
                nodes[index].state = .normal
            case .leaving:
                nodes[index].state = .removed
                nodes[index].tokens = []
            default:
                break
            }
        }
        if let pending = pendingPlacement { placement = pending }
        pendingPlacement = nil
        for index in keyspaces.indices {
            if let pending = keyspaces[index].pendingPlacement { keyspaces[index].placement = pending }
            if let pending = keyspaces[index].pendingRing { keyspaces[index].ring = pending }
            keyspaces[index].pendingPlacement = nil
            keyspaces[index].pendingRing = nil
        }
        streaming = []
        // `changeEpoch` stays: writes made with a map from before the change are still refused.
    }
}
