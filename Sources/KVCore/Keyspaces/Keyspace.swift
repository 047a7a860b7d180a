/// A named namespace of keys with its own placement (N and where replicas go), default consistency
/// levels and default time to live, agreed in the cluster map like every other change (issue 20).
///
/// Keyspace 0, `default`, is the map's own `placement`: it is not in `ClusterMap.keyspaces` and cannot
/// be dropped. Every other keyspace has an id given at creation and never given again, so a dropped
/// keyspace's data can never be mistaken for a new one's. Keys of two keyspaces never collide: each
/// keyspace is a set of column families of its own (docs/design-notes.md, "Keyspaces, rings, zones
/// and TTL").
///
/// A keyspace lives on one ring (`ring`, a set of nodes with their own tokens), or is split by key
/// range across rings: each range is then a *part*, an entry of `ClusterMap.keyspaces` of its own
/// (its own id, so its own column families), with the keyspace's name and the lowest key it holds
/// (`lowKey`); a key belongs to the part with the greatest `lowKey` not above it. A part moves to
/// another ring (`pendingRing`) as a node joins: the new ring's nodes receive its ranges while writes
/// go to both, then ownership switches.
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
    /// The ring its keys live on (`ClusterMap.Node.ring`); empty: the main ring.
    public var ring: String
    /// The ring its keys move to in the change in progress; nil when they are not moving.
    public var pendingRing: String?
    /// The lowest key of this part of the keyspace (bytewise); empty for the first part, which a
    /// keyspace that is not split is.
    public var lowKey: [UInt8]

    public init(
        id: UInt32, name: String, placement: Placement, pendingPlacement: Placement? = nil,
        readLevel: ConsistencyLevel = .quorum, writeLevel: ConsistencyLevel = .quorum, timeToLive: Duration? = nil,
        dropped: Bool = false, ring: String = "", pendingRing: String? = nil, lowKey: [UInt8] = []
    ) {
        self.ring = ring
        self.pendingRing = pendingRing
        self.lowKey = lowKey
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
        "\(name)\(lowKey.isEmpty ? "" : " from \(Self.describe(key: lowKey))") (\(id)): \(placement)"
            + (ring.isEmpty ? "" : " on ring \(ring)")
            + (pendingRing.map { " moving to ring \(Self.ringName($0))" } ?? "")
            + ", read \(readLevel), write \(writeLevel)"
            + (timeToLive.map { ", ttl \($0.shortDescription)" } ?? "") + (dropped ? ", dropped" : "")
    }

    /// The name an operator reads for a ring: `main` for the main ring (stored empty).
    public static func ringName(_ ring: String) -> String {
        ring.isEmpty ? mainRingName : ring
    }

    /// The main ring's name in commands and listings.
    public static let mainRingName = "main"

    /// A key as text when it is printable UTF-8, else as hex (`0x…`).
    public static func describe(key: [UInt8]) -> String {
        if let text = String(validating: key, as: UTF8.self),
            text.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 0x20 && $0.value < 0x7f })
        {
            return text
        }
        return "0x" + key.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
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
    /// `create` only: the ring of the keyspace (of its first part when split); nil: the main ring.
    public var ring: String?
    /// `create` only: where the keyspace is split by key range, each split starting a part on a ring.
    public var splits: [KeyspaceSplit]

    public init(
        placement: Placement? = nil, readLevel: ConsistencyLevel? = nil, writeLevel: ConsistencyLevel? = nil,
        timeToLive: Duration?? = nil, ring: String? = nil, splits: [KeyspaceSplit] = []
    ) {
        self.ring = ring
        self.splits = splits
        self.placement = placement
        self.readLevel = readLevel
        self.writeLevel = writeLevel
        self.timeToLive = timeToLive
    }
}

/// Where a keyspace is split: the keys from `lowKey` on (up to the next split) live on `ring`
/// (`kvctl keyspace create NAME --split KEY:RING`).
public struct KeyspaceSplit: Sendable, Hashable, CustomStringConvertible {
    public var lowKey: [UInt8]
    /// Empty: the main ring.
    public var ring: String

    public init(lowKey: [UInt8], ring: String) {
        self.lowKey = lowKey
        self.ring = ring
    }

    public var description: String { "\(Keyspace.describe(key: lowKey)):\(Keyspace.ringName(ring))" }
}

/// The keys of one part of a keyspace: from `low` (included) to `high` (excluded; nil: no end),
/// bytewise.
public struct KeyRange: Sendable, Hashable {
    public var low: [UInt8]
    public var high: [UInt8]?

    public init(low: [UInt8], high: [UInt8]?) {
        self.low = low
        self.high = high
    }

    public func contains(_ key: [UInt8]) -> Bool {
        !key.lexicographicallyPrecedes(low) && (high.map { key.lexicographicallyPrecedes($0) } ?? true)
    }
}
