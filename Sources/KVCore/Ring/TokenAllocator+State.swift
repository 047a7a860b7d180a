/// The ring as `TokenAllocator` sees it while nodes join: the sorted vnodes, and every node's exact replica
/// share for each replication factor from 1 to `factorMax`, kept up to date as tokens are placed.
struct AllocationState {
    /// The largest replication factor the allocator balances for (it balances 1 through this one).
    static let factorMax = 3

    private(set) var nodes: [RingNode]
    /// Every vnode token, ascending.
    private var tokens: [UInt64] = []
    /// `owners[i]` is the index in `nodes` of the node with token `tokens[i]`.
    private var owners: [Int] = []
    /// `shares[factor - 1][node]`: the tokens the node replicates at that replication factor (2^64 is the
    /// whole ring). Integers, so that updating them token by token gives exactly a full recount.
    private var shares: [[UInt128]]

    /// How one placement changes one node's share at one replication factor.
    private struct ShareChange {
        var factor: Int
        var node: Int
        var amount: Int128
    }

    init(existing: [RingNode]) {
        precondition(Set(existing.map(\.id)).count == existing.count, "duplicate node id")
        nodes = existing
        var vnodes: [(token: UInt64, owner: Int)] = []
        for (index, node) in existing.enumerated() {
            precondition(!node.tokens.isEmpty, "node \(node.id) has no tokens")
            for token in node.tokens {
                vnodes.append((token, index))
            }
        }
        vnodes.sort { $0.token < $1.token }
        for index in vnodes.indices.dropFirst() {
            precondition(vnodes[index - 1].token != vnodes[index].token, "duplicate token")
        }
        tokens = vnodes.map(\.token)
        owners = vnodes.map(\.owner)
        shares = []
        shares = recountedShares()
    }

    /// Adds a node and places its tokens.
    mutating func join(_ id: String, tokenCount: Int) {
        precondition((1...Limits.tokensPerNodeMax).contains(tokenCount), "tokens per node out of range")
        precondition(!nodes.contains { $0.id == id }, "node \(id) is already on the ring")
        let joining = nodes.count
        nodes.append(RingNode(id: id, tokens: []))
        for factor in shares.indices {
            shares[factor].append(0)
        }
        if tokens.isEmpty {
            for index in 0..<tokenCount {
                let spaced = UInt64(tokenCount).dividingFullWidth((high: UInt64(index), low: 0)).quotient
                insert(spaced, owner: joining)
            }
            shares = recountedShares()
            return
        }
        for placed in 0..<tokenCount {
            var best: (score: Double, token: UInt64, changes: [ShareChange])?
            for position in tokens.indices {
                let width = rangeWidth(position)
                guard width >= 2 else { continue }
                let token = tokens[previous(position)] &+ UInt64(width / 2)
                let changes = shareChanges(splitting: position, joining: joining)
                let score = score(changes, joining: joining, placed: placed, tokenCount: tokenCount)
                if let current = best, (current.score, current.token) <= (score, token) { continue }
                best = (score, token, changes)
            }
            guard let best else { preconditionFailure("no range of the ring can be split") }
            for change in best.changes {
                shares[change.factor - 1][change.node] = UInt128(
                    Int128(shares[change.factor - 1][change.node]) + change.amount)
            }
            insert(best.token, owner: joining)
        }
        assert(shares == recountedShares(), "incremental shares differ from a full recount")
    }

    /// How splitting the range that ends at `position` at its midpoint, the lower half going to `joining`,
    /// changes the shares: ordered by factor, then node.
    ///
    /// Only the split range and the ranges just before it change: a range's preference list changes only
    /// if its clockwise walk meets the new token before it has `factor` distinct nodes and before it meets
    /// `joining`. Where `joining` enters a list, the list's last node leaves it (if the list was full).
    private func shareChanges(splitting position: Int, joining: Int) -> [ShareChange] {
        var changes: [ShareChange] = []
        func move(_ width: UInt128, factor: Int, from loser: Int?) {
            add(Int128(width), factor: factor, node: joining)
            if let loser {
                add(-Int128(width), factor: factor, node: loser)
            }
        }
        func add(_ amount: Int128, factor: Int, node: Int) {
            if let index = changes.firstIndex(where: { $0.factor == factor && $0.node == node }) {
                changes[index].amount += amount
            } else {
                changes.append(ShareChange(factor: factor, node: node, amount: amount))
            }
        }
        let ahead = distinctNodes(from: position, count: Self.factorMax)
        // The new range, the lower half of the split one: `joining`, then the old list.
        // The upper half keeps its list, unless that list is short (the ring has fewer than `factor` nodes):
        // then its walk goes all the way round to the new token and takes `joining` in too.
        let width = rangeWidth(position)
        let half = width / 2
        for factor in 1...Self.factorMax {
            let list = ahead.prefix(factor)
            if list.contains(joining) { continue }
            move(half, factor: factor, from: list.count == factor ? list.last : nil)
            if list.count < factor {
                move(width - half, factor: factor, from: nil)
            }
        }
        // The ranges before it, walking backwards; `window` holds the distinct owners between them and the
        // new token.
        var window: [Int] = []
        var index = position
        for _ in 1..<tokens.count {
            index = previous(index)
            let owner = owners[index]
            if owner == joining { break }
            if !window.contains(owner) {
                window.append(owner)
            }
            if window.count >= Self.factorMax { break }
            let earlierWidth = rangeWidth(index)
            for factor in (window.count + 1)...Self.factorMax {
                let wanted = factor - window.count
                let continuation = ahead.filter { !window.contains($0) }.prefix(wanted)
                if continuation.contains(joining) { continue }
                move(earlierWidth, factor: factor, from: continuation.count == wanted ? continuation.last : nil)
            }
        }
        return changes.filter { $0.amount != 0 }.sorted { ($0.factor, $0.node) < ($1.factor, $1.node) }
    }

    /// The change in the sum, over nodes and factors, of `((share - target) / fair)^2`, where `fair` is
    /// `min(factor, nodeCount) / nodeCount` and `target` is `fair` for every node but the joining one,
    /// whose target grows by `fair / tokenCount` with each of its tokens. Summed in the order of `changes`.
    private func score(_ changes: [ShareChange], joining: Int, placed: Int, tokenCount: Int) -> Double {
        let nodeCount = nodes.count
        var total = 0.0
        for change in changes {
            let fair = Double(min(change.factor, nodeCount)) / Double(nodeCount)
            let target = change.node == joining ? fair * Double(placed + 1) / Double(tokenCount) : fair
            let before = shares[change.factor - 1][change.node]
            let after = UInt128(Int128(before) + change.amount)
            let deviationBefore = (Double(before) / 0x1p64 - target) / fair
            let deviationAfter = (Double(after) / 0x1p64 - target) / fair
            total += deviationAfter * deviationAfter - deviationBefore * deviationBefore
        }
        return total
    }

    private mutating func insert(_ token: UInt64, owner: Int) {
        var low = 0
        var high = tokens.count
        while low < high {
            let middle = (low + high) / 2
            if tokens[middle] < token {
                low = middle + 1
            } else {
                high = middle
            }
        }
        precondition(low == tokens.count || tokens[low] != token, "token placed twice")
        tokens.insert(token, at: low)
        owners.insert(owner, at: low)
        nodes[owner].tokens.append(token)
    }

    private func previous(_ position: Int) -> Int {
        position == 0 ? tokens.count - 1 : position - 1
    }

    /// The width of the range that ends at `position`: from 1 to 2^64 (a ring of one token).
    private func rangeWidth(_ position: Int) -> UInt128 {
        tokens.count == 1 ? 1 << 64 : UInt128(tokens[position] &- tokens[previous(position)])
    }

    /// The first `count` distinct owners met walking clockwise from `position` (fewer if the ring has fewer).
    private func distinctNodes(from position: Int, count: Int) -> [Int] {
        var result: [Int] = []
        var index = position
        for _ in tokens.indices {
            if !result.contains(owners[index]) {
                result.append(owners[index])
                if result.count == count { break }
            }
            index = index + 1 == tokens.count ? 0 : index + 1
        }
        return result
    }

    /// Every node's share at every factor, counted from scratch.
    private func recountedShares() -> [[UInt128]] {
        var result = [[UInt128]](
            repeating: [UInt128](repeating: 0, count: nodes.count),
            count: Self.factorMax
        )
        for position in tokens.indices {
            let width = rangeWidth(position)
            for (rank, node) in distinctNodes(from: position, count: Self.factorMax).enumerated() {
                for factor in rank..<Self.factorMax {
                    result[factor][node] += width
                }
            }
        }
        return result
    }
}
