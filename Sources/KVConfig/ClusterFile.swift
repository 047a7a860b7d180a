import Foundation
public import KVCore
import Yams

/// Reads and writes `cluster.yaml`, the description of a cluster that the SDK, `kvctl --cluster` and
/// `kvd --cluster` share:
///
/// ```yaml
/// cluster-id: quorumkv
/// replication-factor: 3
/// placement: spread:3/1      # optional (simple:N by default): zones:dc1=2,dc2=1 or spread:N/M
/// tokens-per-node: 16        # used for nodes without a `tokens` list
/// nodes:
///   - id: n1
///     address: 127.0.0.11:7411
///     zone: dc1                            # optional: the node's datacenter or rack
///   - id: n2
///     address: 127.0.0.12:7411
///     tokens: [0x1000000000000000, ...]   # optional: explicit ring tokens
///   - id: n4
///     address: 127.0.0.14:7411
///     ring: east                           # optional: its ring (default: main, the default keyspace's)
/// keyspaces:                 # optional: the keyspaces besides `default` (kvctl keyspace create)
///   - id: 1
///     name: cache
///     placement: simple:3
///     read: one                # default quorum
///     write: one               # default quorum
///     ttl: 30m                 # optional: the default time to live of its writes
///     ring: east               # optional: the ring its keys live on (default: main)
///   - {id: 2, name: old, placement: simple:3, dropped: true}   # kept: ids are never given twice
///   # A keyspace split by key range: one entry per part, sharing the name and settings; each part but
///   # the first starts at its `from` key (`from-hex` for a key that is not printable text).
///   - {id: 3, name: users, placement: simple:3}                  # keys below 'n', on the main ring
///   - {id: 4, name: users, placement: simple:3, from: n, ring: east, pending-ring: main}  # moving
/// seeds: [127.0.0.15:7411, 127.0.0.16:7411]   # optional: more nodes to ask for the map (below)
/// ```
///
/// `seeds` are addresses a client also asks for the current map when it starts, besides the nodes
/// listed: `kvctl join`, `leave`, `replace` and `cluster set-address` set them to the members'
/// addresses in the file they were given (`ClusterFile+Seeds.swift`), so that a client started from
/// that file finds the cluster once every node listed has left it.
///
/// Nodes without explicit tokens get them from `TokenAllocator` in file order, each ring balanced on
/// its own, so every reader of the same file computes the same rings.
public enum ClusterFile {
    private struct Document: Codable {
        var clusterID: String?
        var epoch: UInt64?
        var replicationFactor: Int?
        var placement: String?
        var tokensPerNode: Int?
        var nodes: [NodeDocument]
        var keyspaces: [KeyspaceDocument]?
        var seeds: [String]?

        enum CodingKeys: String, CodingKey {
            case clusterID = "cluster-id"
            case epoch
            case replicationFactor = "replication-factor"
            case placement
            case tokensPerNode = "tokens-per-node"
            case nodes
            case keyspaces
            case seeds
        }
    }

    private struct KeyspaceDocument: Codable {
        var id: UInt32
        var name: String
        var placement: String
        var read: String?
        var write: String?
        var ttl: String?
        var dropped: Bool?
        var pendingPlacement: String?
        var ring: String?
        var pendingRing: String?
        var from: String?
        var fromHex: String?

        enum CodingKeys: String, CodingKey {
            case id, name, placement, read, write, ttl, dropped, ring, from
            case pendingPlacement = "pending-placement"
            case pendingRing = "pending-ring"
            case fromHex = "from-hex"
        }
    }

    private struct NodeDocument: Codable {
        var id: String
        var address: String
        var tokens: [String]?
        var zone: String?
        var ring: String?
    }

    /// A ring as the file names it: `main` or absent for the main ring (stored empty), else a name as
    /// a keyspace's.
    private static func ring(_ text: String?, _ what: String) throws(ConfigError) -> String {
        guard let text, text != Keyspace.mainRingName else { return "" }
        guard Keyspace.isValidName(text) else {
            throw ConfigError(
                "\(what): ring '\(text)' is not '\(Keyspace.mainRingName)' or 1-\(Limits.nameBytesMax) letters, digits, '_' or '-', starting with a letter"
            )
        }
        return text
    }

    /// The cluster id used when the file names none.
    public static let defaultClusterID = "quorumkv"

    /// Reads and validates a cluster file.
    public static func load(path: String) throws(ConfigError) -> ClusterMap {
        try loadWithSeeds(path: path).map
    }

    /// Reads and validates a cluster file: its map and its `seeds` (`ClusterFile+Seeds.swift`).
    public static func loadWithSeeds(path: String) throws(ConfigError) -> (map: ClusterMap, seeds: [String]) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError("cannot read cluster file \(path): \(error.localizedDescription)")
        }
        return try parseWithSeeds(text, source: path)
    }

    /// Parses and validates the text of a cluster file.
    public static func parse(_ text: String, source: String = "cluster file") throws(ConfigError) -> ClusterMap {
        try parseWithSeeds(text, source: source).map
    }

    /// Parses and validates the text of a cluster file: its map and its `seeds`.
    public static func parseWithSeeds(_ text: String, source: String = "cluster file") throws(ConfigError) -> (
        map: ClusterMap, seeds: [String]
    ) {
        let document: Document
        do {
            if let dictionary = try Yams.load(yaml: text) as? [String: Any] {
                let known: Set = [
                    "cluster-id", "epoch", "replication-factor", "placement", "tokens-per-node", "nodes", "keyspaces",
                    "seeds",
                ]
                if let unknown = dictionary.keys.sorted().first(where: { !known.contains($0) }) {
                    throw ConfigError("\(source): unknown setting '\(unknown)'")
                }
            }
            document = try YAMLDecoder().decode(Document.self, from: text)
        } catch let error as ConfigError {
            throw error
        } catch {
            throw ConfigError("\(source): \(YAMLErrors.describe(error))")
        }
        guard !document.nodes.isEmpty else { throw ConfigError("\(source): 'nodes' is empty") }
        let placement: Placement
        if let text = document.placement {
            guard let parsed = Placement(parsing: text) else {
                throw ConfigError(
                    "\(source): placement '\(text)' is not simple:N, zones:ZONE=COUNT,... or spread:N/PER-ZONE")
            }
            if let factor = document.replicationFactor, factor != parsed.replicationFactor {
                throw ConfigError(
                    "\(source): replication-factor \(factor) disagrees with placement \(parsed) (N = \(parsed.replicationFactor))"
                )
            }
            placement = parsed
        } else {
            placement = .simple(replicas: document.replicationFactor ?? min(3, document.nodes.count))
        }
        let tokensPerNode = document.tokensPerNode ?? TokenAllocator.tokensPerNodeDefault
        guard (1...Limits.tokensPerNodeMax).contains(tokensPerNode) else {
            throw ConfigError("\(source): tokens-per-node must be 1...\(Limits.tokensPerNodeMax)")
        }
        var seen: Set<String> = []
        var allocated: [(ring: String, node: RingNode)] = []
        var nodes: [ClusterMap.Node] = []
        for entry in document.nodes {
            guard !entry.id.isEmpty, entry.id.utf8.count <= Limits.nameBytesMax else {
                throw ConfigError("\(source): node id '\(entry.id)' must be 1-\(Limits.nameBytesMax) bytes")
            }
            guard seen.insert(entry.id).inserted else {
                throw ConfigError("\(source): node '\(entry.id)' is listed twice")
            }
            guard HostPort(parsing: entry.address, defaultPort: -1).map({ $0.port >= 0 }) == true,
                entry.address.utf8.count <= Limits.addressBytesMax
            else {
                throw ConfigError("\(source): node '\(entry.id)' address '\(entry.address)' must be HOST:PORT")
            }
            var tokens: [UInt64] = []
            if let listed = entry.tokens {
                tokens = try listed.map { text throws(ConfigError) in
                    guard let token = parseToken(text) else {
                        throw ConfigError("\(source): node '\(entry.id)' has an invalid token '\(text)'")
                    }
                    return token
                }
            }
            let ring = try Self.ring(entry.ring, "\(source): node '\(entry.id)'")
            if entry.tokens == nil {
                tokens = TokenAllocator.tokensForJoiningNode(
                    entry.id, existing: allocated.filter { $0.ring == ring }.map(\.node), tokensPerNode: tokensPerNode)
            }
            let zone = entry.zone ?? ""
            guard zone.utf8.count <= Limits.nameBytesMax else {
                throw ConfigError("\(source): node '\(entry.id)' zone must be at most \(Limits.nameBytesMax) bytes")
            }
            allocated.append((ring, RingNode(id: entry.id, tokens: tokens)))
            nodes.append(ClusterMap.Node(id: entry.id, address: entry.address, tokens: tokens, zone: zone, ring: ring))
        }
        var map = ClusterMap(
            clusterID: document.clusterID ?? defaultClusterID,
            epoch: document.epoch ?? 1,
            placement: placement,
            nodes: nodes
        )
        do {
            _ = try map.ring()
        } catch {
            throw ConfigError("\(source): \(error)")
        }
        map.keyspaces = try keyspaces(document.keyspaces ?? [], of: map, source: source)
        return (map, try checked(seeds: document.seeds ?? [], source: source))
    }

    /// The file's keyspaces, checked as `kvctl keyspace create` checks them: valid names, unique ids
    /// within `Limits.keyspaceIDsMax`, rules that make a ring of each part's ring's nodes, levels that
    /// fit their N, a TTL within `Limits.timeToLiveMax`; the parts of one keyspace (entries of one name
    /// not dropped) start at distinct keys, one of them at the first key, and share their settings.
    private static func keyspaces(_ documents: [KeyspaceDocument], of map: ClusterMap, source: String)
        throws(ConfigError) -> [Keyspace]
    {
        guard documents.count <= Limits.keyspaceIDsMax,
            documents.count(where: { $0.dropped != true }) <= Limits.keyspacesMax
        else {
            throw ConfigError(
                "\(source): a cluster holds at most \(Limits.keyspacesMax) keyspaces (\(Limits.keyspaceIDsMax) ever)")
        }
        var ids: Set<UInt32> = []
        var starts: Set<[UInt8]> = []
        var keyspaces: [Keyspace] = []
        for entry in documents {
            let what = "\(source): keyspace '\(entry.name)'"
            guard Keyspace.isValidName(entry.name) else {
                throw ConfigError(
                    "\(what): not a keyspace name (1-\(Limits.nameBytesMax) letters, digits, '_' or '-', starting with a letter)"
                )
            }
            guard (1...UInt32(Limits.keyspaceIDsMax)).contains(entry.id), ids.insert(entry.id).inserted else {
                throw ConfigError("\(what): id \(entry.id) is taken or not in 1...\(Limits.keyspaceIDsMax)")
            }
            guard entry.name != Keyspace.defaultName else {
                throw ConfigError("\(what): the default keyspace is the cluster's own placement, not listed")
            }
            let dropped = entry.dropped ?? false
            let lowKey = try Self.lowKey(entry, what)
            guard dropped || starts.insert(Array(entry.name.utf8) + [0] + lowKey).inserted else {
                throw ConfigError(
                    lowKey.isEmpty
                        ? "\(what) is listed twice" : "\(what) has two parts from '\(Keyspace.describe(key: lowKey))'")
            }
            var placements: [Placement] = []
            for text in [entry.placement] + (entry.pendingPlacement.map { [$0] } ?? []) {
                guard let placement = Placement(parsing: text) else {
                    throw ConfigError(
                        "\(what): placement '\(text)' is not simple:N, zones:ZONE=COUNT,... or spread:N/PER-ZONE")
                }
                placements.append(placement)
            }
            var levels: [ConsistencyLevel] = []
            for (setting, text) in [("read", entry.read), ("write", entry.write)] {
                guard let level = ConsistencyLevel(parsing: text ?? "quorum") else {
                    throw ConfigError(
                        "\(what): \(setting) '\(text ?? "")' is not one, quorum, all, local_quorum, each_quorum or a count"
                    )
                }
                levels.append(level)
            }
            var timeToLive: Duration?
            if let text = entry.ttl {
                guard let ttl = Duration(parsingShort: text), ttl > .zero, ttl <= Limits.timeToLiveMax else {
                    throw ConfigError(
                        "\(what): ttl '\(text)' is not a duration (250ms, 30s, 30m, 12h, 7d) up to \(Limits.timeToLiveMax)"
                    )
                }
                timeToLive = ttl
            }
            let keyspace = Keyspace(
                id: entry.id, name: entry.name, placement: placements[0],
                pendingPlacement: placements.dropFirst().first,
                readLevel: levels[0], writeLevel: levels[1], timeToLive: timeToLive, dropped: dropped,
                ring: try ring(entry.ring, what),
                pendingRing: try entry.pendingRing.map { text throws(ConfigError) in try ring(text, what) },
                lowKey: lowKey)
            if !dropped {
                // Each ring the part lives on, or moves to, must place its keys.
                var settled = keyspace
                settled.placement = keyspace.pendingPlacement ?? keyspace.placement
                settled.ring = keyspace.pendingRing ?? keyspace.ring
                for part in [keyspace, settled] {
                    do {
                        let ring = try map.ring(of: part)
                        for level in levels where !level.countsZones {
                            _ = try level.required(replicationFactor: ring.replicationFactor)
                        }
                    } catch {
                        throw ConfigError("\(what) on ring \(Keyspace.ringName(part.ring)): \(error)")
                    }
                }
            }
            keyspaces.append(keyspace)
        }
        for keyspace in keyspaces where !keyspace.dropped {
            let parts = keyspaces.filter { $0.name == keyspace.name && !$0.dropped }
            let what = "\(source): keyspace '\(keyspace.name)'"
            guard parts.contains(where: { $0.lowKey.isEmpty }) else {
                throw ConfigError("\(what) has no first part (an entry without 'from')")
            }
            guard
                parts.allSatisfy({
                    $0.placement == keyspace.placement && $0.pendingPlacement == keyspace.pendingPlacement
                        && $0.readLevel == keyspace.readLevel && $0.writeLevel == keyspace.writeLevel
                        && $0.timeToLive == keyspace.timeToLive
                })
            else {
                throw ConfigError("\(what): its parts must have the same placement, read, write and ttl")
            }
        }
        return keyspaces.sorted { $0.id < $1.id }
    }

    /// A part's low key: `from` (text) or `from-hex`; empty (the first part) when neither is given.
    private static func lowKey(_ entry: KeyspaceDocument, _ what: String) throws(ConfigError) -> [UInt8] {
        var key: [UInt8] = []
        switch (entry.from, entry.fromHex) {
        case (nil, nil): return []
        case (let text?, nil): key = Array(text.utf8)
        case (nil, let hex?):
            let digits = Array(hex.hasPrefix("0x") ? hex.dropFirst(2) : Substring(hex))
            guard digits.count % 2 == 0 else { throw ConfigError("\(what): from-hex '\(hex)' is not hex bytes") }
            for index in stride(from: 0, to: digits.count, by: 2) {
                guard let byte = UInt8(String(digits[index...index + 1]), radix: 16) else {
                    throw ConfigError("\(what): from-hex '\(hex)' is not hex bytes")
                }
                key.append(byte)
            }
        case (_?, _?): throw ConfigError("\(what): give 'from' or 'from-hex', not both")
        }
        guard !key.isEmpty, key.count <= Limits.keyBytesMax else {
            throw ConfigError("\(what): a part's 'from' key must be 1-\(Limits.keyBytesMax) bytes")
        }
        return key
    }

    /// Writes a cluster file for `map`, listing every node's tokens explicitly.
    public static func render(_ map: ClusterMap) -> String {
        var lines = [
            "# QuorumKV cluster file: every client and node reading it computes the same ring.",
            "cluster-id: \(map.clusterID)",
            "epoch: \(map.epoch)",
            "replication-factor: \(map.replicationFactor)",
        ]
        if map.placement.usesZones { lines.append("placement: \(map.placement)") }
        lines.append("nodes:")
        for node in map.nodes {
            lines.append("  - id: \(node.id)")
            lines.append("    address: \(node.address)")
            if !node.zone.isEmpty { lines.append("    zone: \(node.zone)") }
            if !node.ring.isEmpty { lines.append("    ring: \(node.ring)") }
            let tokens = node.tokens.map { "\"0x\(String($0, radix: 16))\"" }.joined(separator: ", ")
            lines.append("    tokens: [\(tokens)]")
        }
        if !map.keyspaces.isEmpty { lines.append("keyspaces:") }
        for keyspace in map.keyspaces {
            lines.append("  - id: \(keyspace.id)")
            lines.append("    name: \(keyspace.name)")
            lines.append("    placement: \(keyspace.placement)")
            if let pending = keyspace.pendingPlacement { lines.append("    pending-placement: \(pending)") }
            if !keyspace.lowKey.isEmpty {
                let text = Keyspace.describe(key: keyspace.lowKey)
                if text.hasPrefix("0x") {
                    lines.append(
                        "    from-hex: \"\(keyspace.lowKey.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined())\""
                    )
                } else {
                    lines.append(
                        "    from: \"\(text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\""
                    )
                }
            }
            if !keyspace.ring.isEmpty { lines.append("    ring: \(keyspace.ring)") }
            if let pending = keyspace.pendingRing { lines.append("    pending-ring: \(Keyspace.ringName(pending))") }
            lines.append("    read: \"\(keyspace.readLevel)\"")
            lines.append("    write: \"\(keyspace.writeLevel)\"")
            if let ttl = keyspace.timeToLive { lines.append("    ttl: \(ttl.parsableShortDescription)") }
            if keyspace.dropped { lines.append("    dropped: true") }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func parseToken(_ text: String) -> UInt64? {
        if text.hasPrefix("0x") || text.hasPrefix("0X") {
            return UInt64(text.dropFirst(2), radix: 16)
        }
        return UInt64(text)
    }
}

/// A cluster or node file that cannot be used, with the reason in one line.
public struct ConfigError: Error, Hashable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

extension Duration {
    /// The duration as `Duration(parsingShort:)` reads it back: a whole number of the largest unit
    /// (`d`, `h`, `m`, `s`, `ms`) that divides it; below a millisecond is dropped.
    public var parsableShortDescription: String {
        let (seconds, attoseconds) = components
        let millis = seconds.multipliedReportingOverflow(by: 1000)
        guard !millis.overflow else { return "\(seconds)s" }
        let total = millis.partialValue.addingReportingOverflow(attoseconds / 1_000_000_000_000_000).partialValue
        for (unit, size) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1000)]
        where total != 0 && total % size == 0 {
            return "\(total / size)\(unit)"
        }
        return "\(total)ms"
    }
}
