public import KVCore
import KVTLS

/// What one backup holds: the cluster map, and for each node the HLC time of its checkpoint and the
/// checkpoint's files (name in the checkpoint, size, SHA-256, which is also the file's name under
/// the destination's `files/`). Written as `backups/<id>/manifest.json`, last, so a backup without a
/// manifest never finished.
///
/// Enough for a restore: each node's checkpoint folder is rebuilt from `files/<sha256>` under the
/// listed names and opened with RocksDB; the records with version ≤ T (`cut` by default) are then
/// written through the SDK with their own versions.
///
/// An incremental backup names its `base`, the backup before it: its nodes' checkpoints hold only
/// the records and hints newer than the base's cut (`NodeRecord.since`), and a restore reads it
/// together with its base, the base's base, and so on down to a full backup (`RestorePlan.chain`).
public struct BackupManifest: Codable, Sendable, Hashable {
    /// The latest manifest format this code reads: 1, a full backup; 2, one that may be incremental
    /// (`base`, `since`); 3, one of a cluster with keyspaces besides `default` (`clusterMap.keyspaces`),
    /// whatever its kind. A backup is written with the lowest format that says what it holds, so that
    /// a kvctl older than keyspaces refuses a backup with keyspaces instead of silently restoring only
    /// the default keyspace, and still reads the others.
    public static let currentFormat = 3

    public var format: Int
    /// The UTC time the backup started, then a random suffix: `20261203T120640Z-3f9a1c`.
    public var id: String
    /// ISO 8601 UTC, when the backup started.
    public var startedAt: String
    /// ISO 8601 UTC, when its last file was copied.
    public var finishedAt: String
    public var clusterID: String
    /// The consistent cut: the earliest of the nodes' checkpoint HLC times. Every write acknowledged
    /// by a quorum with a version at or below it is in some node's checkpoint (within the clock-skew
    /// bound; docs/operations.md, "Backups").
    public var cut: UInt64
    /// `cut` as ISO 8601 UTC (its physical part, milliseconds).
    public var cutTime: String
    public var clusterMap: MapRecord
    public var nodes: [NodeRecord]
    /// The backup this one builds on (incremental), or nil (full).
    public var base: String?

    public init(
        id: String, startedAt: String, finishedAt: String, clusterID: String, clusterMap: MapRecord,
        nodes: [NodeRecord], base: String? = nil
    ) {
        self.format = !(clusterMap.keyspaces ?? []).isEmpty ? 3 : base == nil ? 1 : 2
        self.base = base
        self.id = id
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.clusterID = clusterID
        self.cut = nodes.map(\.hlc).min() ?? 0
        self.cutTime = BackupTime.iso8601(hlc: cut)
        self.clusterMap = clusterMap
        self.nodes = nodes
    }

    /// Whether this backup is older than `other`: by cut (the HLC moves forward from one backup to the
    /// next, even two started in the same second, whose ids' random suffixes do not sort by time),
    /// then by id. The one order of backups: listing, pruning and choosing the latest use it.
    public func isOlder(than other: BackupManifest) -> Bool {
        (cut, id) < (other.cut, other.id)
    }

    /// The cluster map a backup records (the map `kvctl` held when it started, after asking the nodes
    /// for the latest).
    public struct MapRecord: Codable, Sendable, Hashable {
        public var epoch: UInt64
        public var replicationFactor: Int
        public var nodes: [Member]
        /// The keyspaces besides `default`, every part of each (not the dropped ones): what the backup
        /// holds besides the default keyspace, and how a restore creates one the target lacks. Absent
        /// (nil) in a backup of a cluster without them, and in backups made before keyspaces: a restore
        /// then restores the default keyspace alone.
        public var keyspaces: [KeyspaceRecord]?

        public struct Member: Codable, Sendable, Hashable {
            public var id: String
            public var address: String
            /// `joining`, `normal`, `leaving`, `down`, `removed`.
            public var state: String
            public var tokens: [UInt64]
        }

        public init(_ map: ClusterMap) {
            epoch = map.epoch
            replicationFactor = map.replicationFactor
            nodes = map.nodes.map {
                Member(id: $0.id, address: $0.address, state: "\($0.state)", tokens: $0.tokens)
            }
            let live = map.keyspaces.filter { !$0.dropped }.map(KeyspaceRecord.init)
            keyspaces = live.isEmpty ? nil : live
        }

        /// The keyspaces besides `default` by name, each with its parts by `lowKey` (the first part,
        /// `lowKey` empty, first).
        public var keyspacesByName: [String: [KeyspaceRecord]] {
            Dictionary(grouping: keyspaces ?? [], by: \.name).mapValues { parts in
                parts.sorted { $0.lowKey < $1.lowKey }
            }
        }
    }

    /// One keyspace (one part of a split keyspace) of the backed-up cluster's map: its id (its column
    /// families on the nodes, `data.<id>`), its name, and its settings as `kvctl keyspace create`
    /// takes them.
    public struct KeyspaceRecord: Codable, Sendable, Hashable {
        public var id: UInt32
        public var name: String
        /// The lowest key of the part, lowercase hex; empty for the first part (a keyspace not split).
        public var lowKey: String
        /// `simple:3`, `zones:dc1=2,dc2=1`, `spread:3/1` (`Placement`).
        public var placement: String
        /// The ring it lives on; empty: the main ring.
        public var ring: String
        /// `one`, `quorum`, … (`ConsistencyLevel`).
        public var readLevel: String
        public var writeLevel: String
        /// The default time to live, in milliseconds; nil: none.
        public var timeToLiveMillis: UInt64?

        public init(_ keyspace: Keyspace) {
            id = keyspace.id
            name = keyspace.name
            lowKey = keyspace.lowKey.hexString
            placement = "\(keyspace.placement)"
            ring = keyspace.ring
            readLevel = "\(keyspace.readLevel)"
            writeLevel = "\(keyspace.writeLevel)"
            timeToLiveMillis = keyspace.timeToLive.map { $0.wholeMillisecondsClamped }
        }

        /// The part's lowest key as bytes; nil when `lowKey` is not hex.
        public var lowKeyBytes: [UInt8]? {
            let digits = Array(lowKey.utf8)
            guard digits.count % 2 == 0 else { return nil }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(digits.count / 2)
            for index in stride(from: 0, to: digits.count, by: 2) {
                guard let high = Self.nibble(digits[index]), let low = Self.nibble(digits[index + 1]) else {
                    return nil
                }
                bytes.append(high << 4 | low)
            }
            return bytes
        }

        private static func nibble(_ digit: UInt8) -> UInt8? {
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
            default: nil
            }
        }

        /// The settings `kvctl keyspace create` would take for the first part: its placement, levels,
        /// TTL and ring; nil when a field does not parse (a damaged manifest).
        public var settings: KeyspaceSettings? {
            guard let placement = Placement(parsing: placement), let read = ConsistencyLevel(parsing: readLevel),
                let write = ConsistencyLevel(parsing: writeLevel)
            else { return nil }
            return KeyspaceSettings(
                placement: placement, readLevel: read, writeLevel: write,
                timeToLive: timeToLiveMillis.map { .some(.milliseconds($0)) } ?? nil, ring: ring)
        }
    }

    /// One node's checkpoint.
    public struct NodeRecord: Codable, Sendable, Hashable {
        public var node: String
        /// The node's hybrid-logical clock read just before its checkpoint: every write it had applied
        /// by then is in the checkpoint.
        public var hlc: UInt64
        public var hlcTime: String
        /// The epoch of the map the node held.
        public var epoch: UInt64
        public var files: [FileRecord]
        /// For a checkpoint of changes, the HLC value it holds the records newer than (the base's cut);
        /// nil for a full checkpoint (also in an incremental backup: a node that could not do better).
        public var since: UInt64?

        public init(node: String, hlc: UInt64, epoch: UInt64, files: [FileRecord], since: UInt64? = nil) {
            self.since = since
            self.node = node
            self.hlc = hlc
            self.hlcTime = BackupTime.iso8601(hlc: hlc)
            self.epoch = epoch
            self.files = files
        }

        /// Bytes of all its files.
        public var bytes: UInt64 { files.reduce(0) { $0 &+ $1.bytes } }
    }

    /// One file of a checkpoint.
    public struct FileRecord: Codable, Sendable, Hashable {
        /// Its name in the checkpoint folder (`000012.sst`, `MANIFEST-000005`, `CURRENT`, …).
        public var name: String
        public var bytes: UInt64
        /// Lowercase hex SHA-256: the file is `files/<sha256>` in the destination.
        public var sha256: String

        public init(name: String, bytes: UInt64, sha256: String) {
            self.name = name
            self.bytes = bytes
            self.sha256 = sha256
        }

        /// A RocksDB table file: immutable, and most of a checkpoint's bytes.
        public var isTableFile: Bool { name.hasSuffix(".sst") }
    }

    /// This backup, then the backup it builds on, and so on down to a full one: the backups a restore
    /// reads together. The walk stops early at a base `manifests` lacks, or one already in the chain
    /// (damaged manifests), and names it in `brokenAt`.
    public func chain(in manifests: [String: BackupManifest]) -> (chain: [BackupManifest], brokenAt: String?) {
        var chain = [self]
        while let baseID = chain.last?.base {
            guard let base = manifests[baseID], !chain.contains(where: { $0.id == baseID }) else {
                return (chain, baseID)
            }
            chain.append(base)
        }
        return (chain, nil)
    }

    /// Every file of every node (the same content may be listed more than once).
    public var files: [FileRecord] { nodes.flatMap(\.files) }
}
