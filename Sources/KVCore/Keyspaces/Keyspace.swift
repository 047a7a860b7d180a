/// A named namespace of keys with its own placement (N and where replicas go), default consistency
/// levels and default time to live, agreed in the cluster map like every other change (issue 20).
///
/// Keyspace 0, `default`, is the map's own `placement`: it is not in `ClusterMap.keyspaces` and cannot
/// be dropped. Every other keyspace has an id given at creation and never given again, so a dropped
/// keyspace's data can never be mistaken for a new one's. Keys of two keyspaces never collide: each
/// keyspace is a set of column families of its own (docs/design-notes.md, "Keyspaces, rings, zones
/// and TTL").
///
/// Not yet served: nodes and the SDK use the default keyspace only until keyspaces reach the wire
/// requests, the stores and the SDK (docs/design-notes.md, "Keyspaces and several rings").
public struct Keyspace: Sendable, Hashable, CustomStringConvertible {
    /// The default keyspace's id and name.
    public static let defaultID: UInt32 = 0
    public static let defaultName = "default"

    public var id: UInt32
    public var name: String
    /// How the keyspace's ring chooses each key's replicas.
    public var placement: Placement
    /// The rule once the change in progress is done; nil when it is not changing.
    public var pendingPlacement: Placement?
    /// The levels of reads and writes that do not name their own.
    public var readLevel: ConsistencyLevel
    public var writeLevel: ConsistencyLevel
    /// The time to live of writes that do not name their own; nil: they never expire.
    public var timeToLive: Duration?
    /// Dropped: its data is gone and its name free again; kept so that its id is never reused.
    public var dropped: Bool

    public init(
        id: UInt32, name: String, placement: Placement, pendingPlacement: Placement? = nil,
        readLevel: ConsistencyLevel = .quorum, writeLevel: ConsistencyLevel = .quorum, timeToLive: Duration? = nil,
        dropped: Bool = false
    ) {
        self.id = id
        self.name = name
        self.placement = placement
        self.pendingPlacement = pendingPlacement
        self.readLevel = readLevel
        self.writeLevel = writeLevel
        self.timeToLive = timeToLive
        self.dropped = dropped
    }

    public var description: String {
        "\(name) (\(id)): \(placement), read \(readLevel), write \(writeLevel)"
            + (timeToLive.map { ", ttl \($0.shortDescription)" } ?? "") + (dropped ? ", dropped" : "")
    }

    /// Checks a keyspace's name: 1 to `Limits.nameBytesMax` bytes of letters, digits, `_` and `-`,
    /// starting with a letter (it names column families and appears in metrics labels).
    public static func isValidName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.utf8.count <= Limits.nameBytesMax,
            first.properties.isAlphabetic, first.isASCII
        else { return false }
        return name.unicodeScalars.allSatisfy {
            $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-")
        }
    }
}

/// What `kvctl keyspace create` or `alter` asks: each field nil keeps what is there (for `create`: the
/// defaults, `simple:3`, `quorum`, `quorum`, no TTL).
public struct KeyspaceSettings: Sendable, Hashable {
    public var placement: Placement?
    public var readLevel: ConsistencyLevel?
    public var writeLevel: ConsistencyLevel?
    /// `.some(nil)` removes the default TTL.
    public var timeToLive: Duration??

    public init(
        placement: Placement? = nil, readLevel: ConsistencyLevel? = nil, writeLevel: ConsistencyLevel? = nil,
        timeToLive: Duration?? = nil
    ) {
        self.placement = placement
        self.readLevel = readLevel
        self.writeLevel = writeLevel
        self.timeToLive = timeToLive
    }
}
