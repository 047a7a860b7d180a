/// The cluster as every client and node must see it: its id, replication factor, and each node's
/// address and ring tokens, under an epoch that grows with every change.
///
/// Nodes serve it with `ClusterMap`; clients build their ring from it.
public struct ClusterMap: Sendable, Hashable {
    /// One member of the cluster.
    public struct Node: Sendable, Hashable {
        public var id: String
        /// `host:port` the node listens on.
        public var address: String
        public var tokens: [UInt64]

        public init(id: String, address: String, tokens: [UInt64]) {
            self.id = id
            self.address = address
            self.tokens = tokens
        }
    }

    public var clusterID: String
    public var epoch: UInt64
    public var replicationFactor: Int
    public var nodes: [Node]

    public init(clusterID: String, epoch: UInt64, replicationFactor: Int, nodes: [Node]) {
        self.clusterID = clusterID
        self.epoch = epoch
        self.replicationFactor = replicationFactor
        self.nodes = nodes
    }

    /// The node with this id, if it is a member.
    public func node(_ id: String) -> Node? {
        nodes.first { $0.id == id }
    }

    /// The ring these nodes and tokens make.
    public func ring() throws(RingError) -> Ring {
        try Ring(
            nodes: nodes.map { RingNode(id: $0.id, tokens: $0.tokens) },
            replicationFactor: replicationFactor
        )
    }
}
