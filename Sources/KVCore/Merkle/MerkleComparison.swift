/// Compares one token range on two replicas, sans I/O: it asks the same `MerkleQuery` of both, and
/// from their answers decides where to descend, until it knows which keys differ.
///
/// It starts at the root; where the two digests of a node differ it asks for the node's children (all
/// but the last, whose digest it derives from the node's), and at the leaves it asks for the (key,
/// version, tombstone) listings and diffs them. Identical replicas therefore cost one query, the root.
/// The caller answers the local side from its own store and sends the query to the co-replica
/// (`MerkleExchangeRequest`):
///
/// ```swift
/// var comparison = MerkleComparison(range: range)
/// var action = comparison.start()
/// while case .query(let query) = action {
///     action = try comparison.handle(local: localAnswer(query), remote: remoteAnswer(query))
/// }
/// // action is .finish(difference): push difference.push, pull difference.pull
/// ```
///
/// Answers are checked (hash counts, entries inside the listed nodes, no key twice) and a malformed
/// one throws; they are the co-replica's input. Digests are read without a snapshot, so writes during
/// the comparison can make it descend needlessly or list a key whose versions have since converged:
/// the pushed and pulled writes go through the replica's apply rule, which makes that harmless.
///
/// With a `purgeHorizon`, a tombstone older than it that one side holds and the other lacks is not a
/// difference: the side without it may have purged it already (`TombstonePurging`), and copying it
/// back would only have it purged again, replicas purging at different passes ping-ponging it. A side
/// holding an *older value* of the key still gets the tombstone, or the value would come back once the
/// tombstone is purged everywhere else (docs/design-notes.md, "Tombstone purge").
public struct MerkleComparison: Sendable {
    public enum Action: Sendable, Hashable {
        /// Ask `query` of both replicas and pass both answers to `handle(local:remote:)`.
        case query(MerkleQuery)
        /// The comparison is over.
        case finish(MerkleDifference)
    }

    /// The tree both replicas compute for the range.
    public let tree: MerkleTree
    /// Queries asked so far, the root included.
    public private(set) var queriesAsked = 0
    private var pending: [MerkleQuery] = []
    private var nextPending = 0
    private var asked: MerkleQuery?
    /// Both sides' hashes of the nodes whose children are still to be asked, by level and index: a
    /// `.children` answer leaves out each node's last child, whose hash this gives (`MerkleTree.answer`).
    private var knownHashes: [NodeAddress: HashPair] = [:]
    private var difference = MerkleDifference()
    private var started = false
    /// Tombstones older than this count as absent when the other side holds nothing for the key.
    public let purgeHorizon: Version?
    /// Test-only (a planted bug for the simulator's mutation check): the comparison finds what the
    /// remote side should get, never what the local side should.
    package var findsNothingToPull = false

    public init(range: TokenRangeSpan, purgeHorizon: Version? = nil) {
        tree = MerkleTree(range: range)
        self.purgeHorizon = purgeHorizon
    }

    /// The first action: always the root query.
    public mutating func start() -> Action {
        precondition(!started, "a comparison starts once")
        started = true
        return ask(.root)
    }

    /// Takes both replicas' answers to the query last returned, and returns the next action.
    ///
    /// - Throws: `MerkleComparisonError` if an answer does not fit the query; the comparison is then
    ///   over (asking the same question again would not help).
    public mutating func handle(local: MerkleAnswer, remote: MerkleAnswer) throws(MerkleComparisonError) -> Action {
        guard let query = asked else { preconditionFailure("handle(local:remote:) without a query in flight") }
        asked = nil
        switch query.kind {
        case .root:
            let (localHash, remoteHash) = (try single(local, "local"), try single(remote, "remote"))
            if localHash != remoteHash {
                knownHashes[NodeAddress(level: 0, index: 0)] = HashPair(local: localHash, remote: remoteHash)
                enqueue(kind: tree.depth == 0 ? .listing : .children, level: 0, nodes: [0])
            }
        case .children:
            let level = query.level + 1
            let differing = try differingChildren(of: query, local: local, remote: remote)
            enqueue(kind: level == tree.depth ? .listing : .children, level: level, nodes: differing.map(\.index))
            if level < tree.depth {
                for child in differing {
                    knownHashes[NodeAddress(level: level, index: child.index)] = child.hashes
                }
            }
        case .listing:
            let spans = query.nodes.map { tree.span(level: query.level, index: $0) }
            let localEntries = try entriesByKey(local, within: spans, "local")
            let remoteEntries = try entriesByKey(remote, within: spans, "remote")
            for (key, entry) in localEntries {
                if let theirs = remoteEntries[key] {
                    if theirs.version >= entry.version { continue }
                } else if isPurgeable(entry) {
                    continue
                }
                difference.push.append(entry)
            }
            for (key, entry) in remoteEntries where !findsNothingToPull {
                if let ours = localEntries[key] {
                    if ours.version >= entry.version { continue }
                } else if isPurgeable(entry) {
                    continue
                }
                difference.pull.append(entry)
            }
        }
        guard nextPending < pending.count else {
            difference.push.sort(by: MerkleEntry.tokenOrder)
            difference.pull.sort(by: MerkleEntry.tokenOrder)
            return .finish(difference)
        }
        nextPending += 1
        return ask(pending[nextPending - 1])
    }

    /// A tombstone older than the purge horizon: the same as no record to a side that holds none.
    private func isPurgeable(_ entry: MerkleEntry) -> Bool {
        guard let purgeHorizon else { return false }
        return entry.tombstone && entry.version < purgeHorizon
    }

    private mutating func ask(_ query: MerkleQuery) -> Action {
        assert(tree.isValid(query), "the comparison asks only what the tree can answer")
        asked = query
        queriesAsked += 1
        return .query(query)
    }

    /// Queues questions about `nodes`, in batches a query may carry.
    private mutating func enqueue(kind: MerkleQuery.Kind, level: Int, nodes: [Int]) {
        let batch = kind == .listing ? Limits.merkleLeavesPerListingMax : Limits.merkleNodesPerQueryMax
        for start in stride(from: 0, to: nodes.count, by: batch) {
            let end = min(start + batch, nodes.count)
            pending.append(MerkleQuery(kind: kind, level: level, nodes: Array(nodes[start..<end])))
        }
    }

    /// The children of `query`'s nodes whose hashes differ between the sides, with both hashes: each
    /// node's children but the last from the answers, the last one as the node's hash XOR the others.
    private mutating func differingChildren(
        of query: MerkleQuery,
        local: MerkleAnswer,
        remote: MerkleAnswer
    ) throws(MerkleComparisonError) -> [(index: Int, hashes: HashPair)] {
        let sent = query.nodes.reduce(0) { $0 + tree.sentChildren(level: query.level, index: $1).count }
        try check(local, hashCount: sent, "local")
        try check(remote, hashCount: sent, "remote")
        var differing: [(index: Int, hashes: HashPair)] = []
        var next = 0
        for node in query.nodes {
            guard let parent = knownHashes.removeValue(forKey: NodeAddress(level: query.level, index: node)) else {
                preconditionFailure("children asked of node \(node) at level \(query.level), whose hashes are unknown")
            }
            var rest = parent
            for child in tree.children(level: query.level, index: node) {
                var pair = rest
                if child < tree.sentChildren(level: query.level, index: node).upperBound {
                    pair = HashPair(local: local.hashes[next], remote: remote.hashes[next])
                    next += 1
                    rest = HashPair(local: rest.local ^ pair.local, remote: rest.remote ^ pair.remote)
                }
                if pair.local != pair.remote { differing.append((child, pair)) }
            }
        }
        return differing
    }

    private func single(_ answer: MerkleAnswer, _ side: String) throws(MerkleComparisonError) -> UInt64 {
        try check(answer, hashCount: 1, side)
        return answer.hashes[0]
    }

    private func check(_ answer: MerkleAnswer, hashCount: Int, _ side: String) throws(MerkleComparisonError) {
        guard answer.hashes.count == hashCount, answer.entries.isEmpty else {
            throw .malformedAnswer(
                "\(side) answer has \(answer.hashes.count) hashes and \(answer.entries.count) entries, "
                    + "expected \(hashCount) hashes")
        }
    }

    private func entriesByKey(
        _ answer: MerkleAnswer,
        within spans: [TokenRangeSpan],
        _ side: String
    ) throws(MerkleComparisonError) -> [[UInt8]: MerkleEntry] {
        guard answer.hashes.isEmpty else {
            throw .malformedAnswer("\(side) listing carries \(answer.hashes.count) hashes")
        }
        var byKey: [[UInt8]: MerkleEntry] = [:]
        byKey.reserveCapacity(answer.entries.count)
        for entry in answer.entries {
            let token = entry.token
            guard spans.contains(where: { $0.contains(token) }) else {
                throw .malformedAnswer("\(side) listing has entry \(entry) outside the listed nodes")
            }
            guard byKey.updateValue(entry, forKey: entry.key) == nil else {
                throw .malformedAnswer("\(side) listing has key \(entry) twice")
            }
        }
        return byKey
    }
}

/// A node of a `MerkleTree`.
private struct NodeAddress: Hashable {
    var level: Int
    var index: Int
}

/// One node's hash on each side of a comparison.
private struct HashPair: Hashable {
    var local: UInt64
    var remote: UInt64
}

/// What a `MerkleComparison` found: the keys each replica must send the other.
public struct MerkleDifference: Sendable, Hashable {
    /// Entries the local replica holds newer, or the remote lacks: to push, by token then key.
    public var push: [MerkleEntry] = []
    /// Entries the remote replica holds newer, or the local lacks: to pull, by token then key.
    public var pull: [MerkleEntry] = []

    public init(push: [MerkleEntry] = [], pull: [MerkleEntry] = []) {
        self.push = push
        self.pull = pull
    }

    /// Whether the replicas hold the same versions.
    public var isEmpty: Bool { push.isEmpty && pull.isEmpty }
}

/// Why a `MerkleComparison` stopped: an answer that does not fit its query.
public struct MerkleComparisonError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure, for matching.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable { case malformedAnswer }
        private var base: Base
        private init(_ base: Base) { self.base = base }

        /// A wrong number of hashes, entries outside the listed nodes, or a key listed twice.
        public static let malformedAnswer = Code(.malformedAnswer)

        public var description: String { "malformedAnswer" }
    }

    public let code: Code
    public let reason: String

    public static func malformedAnswer(_ reason: String) -> MerkleComparisonError {
        MerkleComparisonError(code: .malformedAnswer, reason: reason)
    }

    public var description: String { "malformed Merkle answer: \(reason)" }
}
