/// The consistent-hashing ring: which nodes hold the replicas of a key.
///
/// A key's token is `Token(key:)`. The owner of a token `t` is the node of the smallest vnode token
/// `>= t`, wrapping to the smallest token overall when `t` is above every vnode token. The preference
/// list is the first `replicationFactor` distinct nodes met walking clockwise from the owner's vnode.
/// `proto-spec/RING.md` specifies these rules with vectors, because every client must compute the same
/// replicas.
///
/// Building a ring sorts the vnodes and precomputes the preference list of every vnode, so a lookup is
/// one binary search (O(log V) for V vnodes) and costs `V * replicationFactor` small integers of memory.
public struct Ring: Sendable, Hashable {
    /// The nodes, in the order given.
    public let nodes: [RingNode]
    public let replicationFactor: Int
    /// The rule choosing each key's replicas (`simple` unless zones were asked for).
    public let placement: Placement

    /// Every vnode token, ascending.
    private let vnodeTokens: [UInt64]
    /// `vnodeOwners[i]` is the index in `nodes` of the node with token `vnodeTokens[i]`.
    private let vnodeOwners: [Int32]
    /// Row `i` (`replicationFactor` node indices) is the preference list of the range ending at
    /// `vnodeTokens[i]`.
    private var preferenceTable: [Int32]
    /// The zone of every node that has one (built once: writes look zones up per request).
    private let zoneByNode: [String: String]

    /// Test-only (a planted bug for the simulator's mutation check): the preference lists are the first
    /// `replicationFactor` distinct nodes clockwise, whatever the placement says of zones.
    package var ignoresZones = false {
        didSet {
            guard ignoresZones != oldValue else { return }
            preferenceTable = Self.preferenceTable(
                placement: ignoresZones ? .simple(replicas: replicationFactor) : placement, owners: vnodeOwners,
                nodes: nodes)
        }
    }

    /// Checks the nodes and builds the lookup tables.
    ///
    /// Rejects duplicate ids, duplicate tokens (within a node or across nodes), nodes without tokens,
    /// more than `Limits.nodesMax` nodes, `Limits.tokensPerNodeMax` tokens on a node or
    /// `Limits.tokensTotalMax` in all, and a replication factor outside `1...nodes.count` or above
    /// `Limits.replicationFactorMax`: all checked before anything is allocated for the ring.
    public init(nodes: [RingNode], replicationFactor: Int) throws(RingError) {
        try self.init(nodes: nodes, placement: .simple(replicas: replicationFactor))
    }

    /// A ring whose preference lists follow `placement` (`Placement`, RING.md "Placement"); checked as
    /// `init(nodes:replicationFactor:)` checks, and the rule against the nodes' zones.
    public init(nodes: [RingNode], placement: Placement) throws(RingError) {
        let replicationFactor = placement.replicationFactor
        guard nodes.count <= Limits.nodesMax else { throw .tooManyNodes(count: nodes.count) }
        let tokensTotal = nodes.reduce(0) { $0 + $1.tokens.count }
        guard tokensTotal <= Limits.tokensTotalMax else { throw .tooManyTokensInTotal(count: tokensTotal) }
        var seenIDs = Set<String>()
        var vnodes: [(token: UInt64, owner: Int32)] = []
        for (index, node) in nodes.enumerated() {
            guard seenIDs.insert(node.id).inserted else { throw .duplicateNodeID(node.id) }
            guard !node.tokens.isEmpty else { throw .nodeWithoutTokens(node.id) }
            guard node.tokens.count <= Limits.tokensPerNodeMax else {
                throw .tooManyTokens(node: node.id, count: node.tokens.count)
            }
            for token in node.tokens {
                vnodes.append((token, Int32(index)))
            }
        }
        try placement.validate(nodes: nodes)
        guard replicationFactor >= 1 && replicationFactor <= min(nodes.count, Limits.replicationFactorMax) else {
            throw .replicationFactorOutOfRange(replicationFactor, nodeCount: nodes.count)
        }
        vnodes.sort { ($0.token, $0.owner) < ($1.token, $1.owner) }
        for index in vnodes.indices.dropFirst() where vnodes[index - 1].token == vnodes[index].token {
            throw .duplicateToken(
                vnodes[index].token,
                first: nodes[Int(vnodes[index - 1].owner)].id,
                second: nodes[Int(vnodes[index].owner)].id
            )
        }
        self.nodes = nodes
        self.replicationFactor = replicationFactor
        self.placement = placement
        self.vnodeTokens = vnodes.map(\.token)
        self.vnodeOwners = vnodes.map(\.owner)
        self.preferenceTable = Self.preferenceTable(placement: placement, owners: vnodeOwners, nodes: nodes)
        self.zoneByNode = Dictionary(
            uniqueKeysWithValues: nodes.filter { !$0.zone.isEmpty }.map { ($0.id, $0.zone) })
    }

    /// The preference lists of every vnode under `placement`, flattened.
    private static func preferenceTable(placement: Placement, owners: [Int32], nodes: [RingNode]) -> [Int32] {
        placement.usesZones
            ? placement.zonedPreferenceTable(owners: owners, nodes: nodes)
            : preferenceTable(owners: owners, nodeCount: nodes.count, replicationFactor: placement.replicationFactor)
    }

    /// The first `replicationFactor` distinct node ids clockwise from the token, the owner first.
    public func preferenceList(for token: Token) -> [String] {
        preferenceRow(ownerPosition(of: token)).map { nodes[Int($0)].id }
    }

    /// Whether `node` is in the preference list of `token`, without building the list (a replica
    /// asks this of every request it takes).
    public func isReplica(_ node: String, of token: Token) -> Bool {
        preferenceRow(ownerPosition(of: token)).contains { nodes[Int($0)].id == node }
    }

    /// The preference list of `Token(key: key)`.
    public func preferenceList(forKey key: some Collection<UInt8>) -> [String] {
        preferenceList(for: Token(key: key))
    }

    /// The vnode range that holds `token`: `(previous vnode token, owning vnode token]`, the smallest unit
    /// of the ring whose replicas are all the same nodes. A token above the largest vnode token (or at
    /// most the smallest) lies in the range that wraps past `UInt64.max`, ending at the smallest token.
    /// A ring of one vnode token `t` has one range, `(t, t]`: the whole ring.
    ///
    /// Anti-entropy marks these ranges due when a replica missed a write of one of their keys.
    public func range(containing token: Token) -> TokenRangeSpan {
        let position = ownerPosition(of: token)
        let previous = position == 0 ? vnodeTokens.count - 1 : position - 1
        return TokenRangeSpan(start: vnodeTokens[previous], end: vnodeTokens[position])
    }

    /// Every node not in the token's preference list, each once, in the order a clockwise walk from the
    /// owner meets them: the fallbacks for hinted handoff, best first.
    ///
    /// O(V) in the worst case: it walks the ring until it has met every node.
    public func fallbacks(for token: Token) -> [String] {
        let start = ownerPosition(of: token)
        var chosen = [Bool](repeating: false, count: nodes.count)
        for node in preferenceRow(start) {
            chosen[Int(node)] = true
        }
        var result: [String] = []
        result.reserveCapacity(nodes.count - replicationFactor)
        var position = start
        while result.count < nodes.count - replicationFactor {
            let owner = Int(vnodeOwners[position])
            if !chosen[owner] {
                chosen[owner] = true
                result.append(nodes[owner].id)
            }
            position = position + 1 == vnodeTokens.count ? 0 : position + 1
        }
        return result
    }

    /// The fraction of the token space for which each node is a replica; the values sum to
    /// `replicationFactor`.
    public func replicaShare() -> [String: Double] {
        shares(replicasPerRange: replicationFactor)
    }

    /// The fraction of the token space (0...1) whose preference list satisfies `condition`: of keys,
    /// about that fraction too, since keys hash uniformly onto tokens.
    public func share(where condition: ([String]) -> Bool) -> Double {
        var total: UInt128 = 0
        for position in vnodeTokens.indices where condition(preferenceRow(position).map { nodes[Int($0)].id }) {
            total += rangeWidth(position)
        }
        return Double(total) / Double(UInt128(1) << 64)
    }

    /// The fraction of the token space for which each node is the first replica (the owner); the values
    /// sum to 1.
    public func primaryShare() -> [String: Double] {
        shares(replicasPerRange: 1)
    }

    /// The token ranges for which `node` is a replica, adjacent ranges merged, in ascending order of
    /// `end`. Empty for an unknown node; one range with `start == end` when the node replicates the
    /// whole ring.
    public func ranges(replicatedBy node: String) -> [TokenRangeSpan] {
        guard let nodeIndex = nodes.firstIndex(where: { $0.id == node }).map(Int32.init) else { return [] }
        let count = vnodeTokens.count
        var result: [TokenRangeSpan] = []
        for position in 0..<count where preferenceRow(position).contains(nodeIndex) {
            let start = vnodeTokens[position == 0 ? count - 1 : position - 1]
            if let last = result.last, last.end == start {
                result[result.count - 1].end = vnodeTokens[position]
            } else {
                result.append(TokenRangeSpan(start: start, end: vnodeTokens[position]))
            }
        }
        // The range that wraps past the largest token continues the first range when both are replicated.
        if result.count > 1 && result[result.count - 1].end == result[0].start {
            result[0].start = result.removeLast().start
        }
        return result
    }

    /// The vnode ranges (`range(containing:)`) for which `node` is a replica, unmerged, in ascending order
    /// of `end`: the unit anti-entropy compares, because every replica of a vnode range holds exactly
    /// that span, whereas merged ranges differ from one co-replica to the next. Empty for an unknown node.
    public func vnodeRanges(replicatedBy node: String) -> [TokenRangeSpan] {
        guard let nodeIndex = nodes.firstIndex(where: { $0.id == node }).map(Int32.init) else { return [] }
        let count = vnodeTokens.count
        return (0..<count).filter { preferenceRow($0).contains(nodeIndex) }.map { position in
            TokenRangeSpan(start: vnodeTokens[position == 0 ? count - 1 : position - 1], end: vnodeTokens[position])
        }
    }

    /// Every vnode token, ascending.
    public var tokens: [UInt64] { vnodeTokens }

    /// Whether any node of this ring has a zone.
    public var hasZones: Bool { !zoneByNode.isEmpty }

    /// The zone of each of `ids` that is a node of this ring with a zone.
    public func zones(of ids: [String]) -> [String: String] {
        var zones: [String: String] = [:]
        for id in ids {
            if let zone = zoneByNode[id] { zones[id] = zone }
        }
        return zones
    }

    /// How many vnode ranges have fewer than `replicationFactor` replicas for which `reachable` is
    /// true: ranges a write at ALL fails on, and which lose a copy more if another replica fails.
    public func underReplicatedRanges(reachable: (String) -> Bool) -> Int {
        let up = nodes.map { reachable($0.id) }
        return vnodeTokens.indices.count { position in
            preferenceRow(position).count { up[Int($0)] } < replicationFactor
        }
    }

    /// The share of the token space (0...1) in those ranges: with keys spread evenly over tokens, the
    /// share of the keys that are under-replicated.
    public func underReplicatedShare(reachable: (String) -> Bool) -> Double {
        share { replicas in replicas.count(where: reachable) < replicationFactor }
    }

    /// `span` cut at every vnode token inside it, in clockwise order: pieces on which the preference
    /// list does not change.
    public func pieces(of span: TokenRangeSpan) -> [TokenRangeSpan] {
        let cuts = vnodeTokens.filter { span.contains(Token($0)) && $0 != span.end }
        var pieces: [TokenRangeSpan] = []
        var start = span.start
        for cut in cuts.sorted(by: { ($0 &- span.start) < ($1 &- span.start) }) {
            pieces.append(TokenRangeSpan(start: start, end: cut))
            start = cut
        }
        pieces.append(TokenRangeSpan(start: start, end: span.end))
        return pieces
    }

    public static func == (lhs: Ring, rhs: Ring) -> Bool {
        lhs.placement == rhs.placement && lhs.nodes == rhs.nodes
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(placement)
        hasher.combine(nodes)
    }

    /// The position in `vnodeTokens` of the smallest token `>= token`, wrapping to 0.
    private func ownerPosition(of token: Token) -> Int {
        var low = 0
        var high = vnodeTokens.count
        while low < high {
            let middle = (low + high) / 2
            if vnodeTokens[middle] < token.value {
                low = middle + 1
            } else {
                high = middle
            }
        }
        return low == vnodeTokens.count ? 0 : low
    }

    private func preferenceRow(_ position: Int) -> ArraySlice<Int32> {
        let start = position * replicationFactor
        return preferenceTable[start..<start + replicationFactor]
    }

    /// The width of the range that ends at vnode `position`: from 1 to 2^64 (a ring of one token).
    private func rangeWidth(_ position: Int) -> UInt128 {
        let count = vnodeTokens.count
        guard count > 1 else { return 1 << 64 }
        return UInt128(vnodeTokens[position] &- vnodeTokens[position == 0 ? count - 1 : position - 1])
    }

    private func shares(replicasPerRange: Int) -> [String: Double] {
        var totals = [UInt128](repeating: 0, count: nodes.count)
        for position in vnodeTokens.indices {
            let width = rangeWidth(position)
            for node in preferenceRow(position).prefix(replicasPerRange) {
                totals[Int(node)] += width
            }
        }
        var result: [String: Double] = [:]
        for (index, node) in nodes.enumerated() {
            result[node.id] = Double(totals[index]) / 0x1p64
        }
        return result
    }

    /// The preference lists of every vnode, flattened.
    ///
    /// The list at `i` is the owner of `i` followed by the list at `i + 1` without that owner, cut to the
    /// replication factor; so one walk computes the list of the last vnode and the rest follow backwards
    /// in O(V * replicationFactor).
    private static func preferenceTable(owners: [Int32], nodeCount: Int, replicationFactor: Int) -> [Int32] {
        let count = owners.count
        var table = [Int32](repeating: 0, count: count * replicationFactor)
        var seen = [Bool](repeating: false, count: nodeCount)
        var filled = 0
        var position = count - 1
        while filled < replicationFactor {
            let owner = owners[position]
            if !seen[Int(owner)] {
                seen[Int(owner)] = true
                table[(count - 1) * replicationFactor + filled] = owner
                filled += 1
            }
            position = position + 1 == count ? 0 : position + 1
        }
        for position in stride(from: count - 2, through: 0, by: -1) {
            let row = position * replicationFactor
            let next = row + replicationFactor
            let owner = owners[position]
            table[row] = owner
            var filled = 1
            var index = next
            while filled < replicationFactor {
                if table[index] != owner {
                    table[row + filled] = table[index]
                    filled += 1
                }
                index += 1
            }
        }
        return table
    }
}
