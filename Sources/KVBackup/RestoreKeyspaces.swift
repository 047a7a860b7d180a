public import KVCore

/// One keyspace a restore writes: its name (how the target's map is asked for it) and the ids of its
/// parts in the backup (the `data.<id>` families its checkpoints hold).
public struct RestoreKeyspace: Sendable, Hashable {
    public var name: String
    public var backupIDs: [UInt32]

    public init(name: String, backupIDs: [UInt32]) {
        self.name = name
        self.backupIDs = backupIDs
    }

    /// The keyspaces a backup holds: `default` first (every backup), then the others its map names,
    /// by name. A backup made before keyspaces names none: the default keyspace alone.
    public static func all(in manifest: BackupManifest) -> [RestoreKeyspace] {
        [RestoreKeyspace(name: Keyspace.defaultName, backupIDs: [Keyspace.defaultID])]
            + manifest.clusterMap.keyspacesByName.sorted { $0.key < $1.key }.map {
                RestoreKeyspace(name: $0.key, backupIDs: $0.value.map(\.id))
            }
    }

    /// The change creating keyspace `name` in `map` as the backup's parts `parts` define it (first
    /// part's placement, levels, TTL and ring; one split per other part), with a `simple` N lowered to
    /// the owners of its ring when the target has fewer, as the default keyspace takes the target's N.
    ///
    /// - Returns: the change, and a note saying what differs from the backup (nil when nothing).
    /// - Throws: a `BackupError` when the manifest's definition does not parse.
    public static func creation(of name: String, parts: [BackupManifest.KeyspaceRecord], in map: ClusterMap)
        throws -> (change: ClusterChange, note: String?)
    {
        guard let first = parts.first(where: { $0.lowKey.isEmpty }), var settings = first.settings else {
            throw BackupError("the backup's definition of keyspace '\(name)' is damaged (no first part, or unreadable)")
        }
        var note: String?
        if case .simple(let replicas) = settings.placement {
            let owners = map.nodes.count { $0.state.ownsRanges && $0.ring == first.ring }
            if owners > 0 && owners < replicas {
                settings.placement = .simple(replicas: owners)
                note =
                    "keyspace '\(name)' had simple:\(replicas); the target's ring \(Keyspace.ringName(first.ring)) has \(owners) nodes: created with simple:\(owners)"
            }
        }
        for part in parts where !part.lowKey.isEmpty {
            guard let lowKey = part.lowKeyBytes else {
                throw BackupError("the backup's keyspace '\(name)' has a part with a damaged low key '\(part.lowKey)'")
            }
            settings.splits.append(KeyspaceSplit(lowKey: lowKey, ring: part.ring))
        }
        return (.createKeyspace(name, settings), note)
    }

    /// The `kvctl keyspace create` command that makes keyspace `name` as the backup's parts define it
    /// (its ring and splits, when it has them, said after it).
    public static func createCommand(of name: String, parts: [BackupManifest.KeyspaceRecord]) -> String {
        guard let first = parts.first(where: { $0.lowKey.isEmpty }) else { return "kvctl keyspace create \(name)" }
        var words = [
            "kvctl keyspace create", name, "--placement", first.placement, "--read", first.readLevel, "--write",
            first.writeLevel,
        ]
        if let millis = first.timeToLiveMillis { words += ["--ttl", "\(millis)ms"] }
        var command = words.joined(separator: " ")
        // Rings and splits: said in words (the map change `keyspace create` makes with them).
        if !first.ring.isEmpty { command += " (on ring \(first.ring))" }
        let splits = parts.filter { !$0.lowKey.isEmpty }.map { part in
            "\(part.lowKeyBytes.map { Keyspace.describe(key: $0) } ?? part.lowKey):\(Keyspace.ringName(part.ring))"
        }
        if !splits.isEmpty { command += " (split at \(splits.joined(separator: ", ")))" }
        return command
    }
}

/// Where a restore sends a key of a keyspace in the target: the keyspace's part holding the key in
/// the target's map (by name: ids differ between clusters) and that part's ring.
struct RestoreRoutes {
    let map: ClusterMap
    private var rings: [UInt32: Ring] = [:]

    /// Builds the rings of every part of `names` in `map`; throws naming a keyspace the map lacks or
    /// whose ring cannot be made.
    init(map: ClusterMap, names: [String]) throws {
        self.map = map
        for name in names {
            let parts = map.parts(named: name)
            guard !parts.isEmpty else { throw BackupError("the target cluster has no keyspace '\(name)'") }
            for part in parts {
                do {
                    rings[part.id] = try map.ring(of: part)
                } catch {
                    throw BackupError("the target cluster's keyspace '\(name)' makes no ring: \(error)")
                }
            }
        }
    }

    /// The target part of keyspace `name` holding `key`, and its replicas there.
    func route(_ name: String, key: [UInt8]) -> (keyspace: UInt32, replicas: [String])? {
        guard let part = map.keyspace(named: name, forKey: key), let ring = rings[part.id] else { return nil }
        return (part.id, ring.preferenceList(forKey: key))
    }
}
