/// One question of a Merkle comparison about a range's tree (`MerkleTree`), asked of both replicas:
/// the wire's `MerkleExchangeRequest` without the range.
public struct MerkleQuery: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The root's digest.
        case root
        /// The digests of the children of each node of `nodes`, at `level`, but each node's last child
        /// (the node's digest XOR the others': `MerkleTree.sentChildren(level:index:)`).
        case children
        /// The entries of the records in each node of `nodes`, at `level`.
        case listing
    }

    public var kind: Kind
    /// The level of `nodes` (the root is level 0).
    public var level: Int
    /// Node indices at `level`, in increasing order; empty for `.root`.
    public var nodes: [Int]

    public init(kind: Kind, level: Int, nodes: [Int]) {
        self.kind = kind
        self.level = level
        self.nodes = nodes
    }

    /// The first question of every comparison.
    public static let root = MerkleQuery(kind: .root, level: 0, nodes: [])

    public var description: String {
        switch kind {
        case .root: "root"
        case .children: "children of \(nodes.count) node(s) at level \(level)"
        case .listing: "listing of \(nodes.count) node(s) at level \(level)"
        }
    }
}

/// One replica's answer to a `MerkleQuery`: the wire's `MerkleExchangeResponse`.
public struct MerkleAnswer: Sendable, Hashable {
    /// Digests, for `.root` and `.children`.
    public var hashes: [UInt64]
    /// Entries, for `.listing`.
    public var entries: [MerkleEntry]

    public init(hashes: [UInt64] = [], entries: [MerkleEntry] = []) {
        self.hashes = hashes
        self.entries = entries
    }
}
