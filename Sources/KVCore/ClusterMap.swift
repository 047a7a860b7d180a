/// A node's place in the cluster map's life cycle.
public enum NodeState: UInt8, Sendable, Hashable, CaseIterable {
    /// In the map, taking its ranges over: not yet an owner of data.
    case joining = 1
    /// Owns its ranges.
    case normal = 2
    /// Still owns its ranges while handing them over.
    case leaving = 3
    /// Declared dead by an operator; still owns its ranges until replaced or removed.
    case down = 4
    /// Gone: owns nothing and takes no part in decisions; kept so the id is not reused by mistake.
    case removed = 5

    /// Whether a node in this state owns ranges (is on the ring).
    public var ownsRanges: Bool {
        switch self {
        case .normal, .leaving, .down: true
        case .joining, .removed: false
        }
    }
}

/// The cluster as every client and node must see it: its id, placement rule (N and where replicas go),
/// and each node's address, ring tokens, state and zone, under an epoch that grows with every change.
///
/// Nodes serve it with `ClusterMap` and agree on each next epoch with `MapPrepare`/`MapAccept`
/// (`MapAcceptor`, `MapProposer`); clients build their ring from it.
public struct ClusterMap: Sendable, Hashable {
    /// One member of the cluster.
    public struct Node: Sendable, Hashable {
        public var id: String
        /// `host:port` the node listens on.
        public var address: String
        public var tokens: [UInt64]
        public var state: NodeState
        /// The node's datacenter or rack (`kvd --zone`), empty when none was given.
        public var zone: String
        /// The ring the node belongs to (`kvctl join --ring`); empty: the main ring, where the default
        /// keyspace lives. Each ring has its own nodes and tokens; a keyspace (or a key range of one)
        /// lives on one ring.
        public var ring: String

        public init(
            id: String, address: String, tokens: [UInt64], state: NodeState = .normal, zone: String = "",
            ring: String = ""
        ) {
            self.id = id
            self.address = address
            self.tokens = tokens
            self.state = state
            self.zone = zone
            self.ring = ring
        }
    }

    public var clusterID: String
    public var epoch: UInt64
    /// How the current ring chooses each key's replicas; its N is `replicationFactor`.
    public var placement: Placement
    public var nodes: [Node]
    /// The rule once the change in progress is done (`kvctl cluster set-rf`, `set-placement`); nil
    /// when the rule is not changing.
    public var pendingPlacement: Placement?
    /// The nodes still receiving ranges for the change in progress, sorted; the change is done (and
    /// ownership switches) when the last one reports that it holds its ranges.
    public var streaming: [String]
    /// The epoch that began the last change of the rings (a join, leave, replacement, placement
    /// change or keyspace move), in progress or done (`isChanging` says which); nil when there was
    /// none. Client writes made with an older map are refused, during the change and after it: they
    /// were placed on a ring that no longer is, with a quorum of its N (`kvsim --seed 169 --rings
    /// --keyspaces --membership`: a client asleep through a keyspace's N 3 → 4 had a write
    /// acknowledged by 2 of its 4 replicas).
    public var changeEpoch: UInt64?
    /// The keyspaces besides `default` (whose placement is the map's own), by id, dropped ones kept
    /// so that no id is given twice.
    public var keyspaces: [Keyspace] = []
    /// The ring (`Node.ring`) whose nodes `ring()` places keys on: the main ring (empty) in a map, a
    /// keyspace's ring in its view (`viewed(as:)`). Not on the wire.
    public internal(set) var viewRing = ""
    /// The ring `nextRing()` places keys on when it is not `viewRing`: a keyspace range moving to
    /// another ring, in its view. Not on the wire.
    public internal(set) var viewNextRing: String?

    public init(
        clusterID: String, epoch: UInt64, placement: Placement, nodes: [Node], pendingPlacement: Placement? = nil,
        streaming: [String] = [], changeEpoch: UInt64? = nil
    ) {
        self.changeEpoch = changeEpoch
        self.clusterID = clusterID
        self.epoch = epoch
        self.placement = placement
        self.nodes = nodes
        self.pendingPlacement = pendingPlacement
        self.streaming = streaming
    }

    /// A map whose replicas are the first N distinct nodes clockwise (`Placement.simple`).
    public init(
        clusterID: String, epoch: UInt64, replicationFactor: Int, nodes: [Node], pendingReplicationFactor: Int? = nil,
        streaming: [String] = [], changeEpoch: UInt64? = nil
    ) {
        self.init(
            clusterID: clusterID, epoch: epoch, placement: .simple(replicas: replicationFactor), nodes: nodes,
            pendingPlacement: pendingReplicationFactor.map { .simple(replicas: $0) }, streaming: streaming,
            changeEpoch: changeEpoch)
    }

    /// N of the current ring: reads use it, and writes must reach its quorum.
    public var replicationFactor: Int { placement.replicationFactor }

    /// N once the change in progress is done; nil when the rule is not changing.
    public var pendingReplicationFactor: Int? { pendingPlacement?.replicationFactor }

    /// Whether the map uses zones: a node's zone, or a rule other than `simple`.
    public var usesZones: Bool {
        placement.usesZones || (pendingPlacement?.usesZones ?? false) || nodes.contains { !$0.zone.isEmpty }
    }

    /// Whether the map says anything protocol version 2 could not: zones, rings or keyspaces.
    public var needsProtocolVersion3: Bool {
        usesZones || !keyspaces.isEmpty || nodes.contains { !$0.ring.isEmpty }
    }

    /// The names of the rings that have members, the main ring (empty) first.
    public var ringNames: [String] {
        [""] + Set(nodes.filter { $0.state != .removed && !$0.ring.isEmpty }.map(\.ring)).sorted()
    }

    /// The node with this id, if it is a member.
    public func node(_ id: String) -> Node? {
        nodes.first { $0.id == id }
    }

    /// The nodes that vote on the next epoch: every member not removed.
    public var voters: [String] {
        nodes.filter { $0.state != .removed }.map(\.id)
    }

    /// The ring the owning nodes (`NodeState.ownsRanges`) of `viewRing` (the main ring in a map) and
    /// their tokens make.
    public func ring() throws(RingError) -> Ring {
        try Ring(
            nodes: nodes.filter { $0.state.ownsRanges && $0.ring == viewRing }.map(\.ringNode), placement: placement)
    }
}

extension ClusterMap.Node {
    /// The node as the ring sees it: id, tokens and zone.
    public var ringNode: RingNode { RingNode(id: id, tokens: tokens, zone: zone) }
}
