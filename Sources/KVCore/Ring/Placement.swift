/// How a ring chooses a key's replicas among the nodes a clockwise walk from the key's owner meets:
/// the rule of a keyspace (issue 20; `proto-spec/RING.md`, "Placement").
///
/// Every rule takes each node at most once and looks at nodes in the order the walk meets them, so
/// a node's vnodes never make it a replica twice and the list is the same on every client.
public enum Placement: Sendable, Hashable, CustomStringConvertible {
    /// The first `replicas` distinct nodes met: zones play no part (the rule before zones).
    case simple(replicas: Int)
    /// For each zone named, the first `count` distinct nodes of that zone met (Cassandra's
    /// NetworkTopologyStrategy); nodes of other zones are never replicas. N is the sum of the counts.
    /// Zones are kept sorted by name.
    case zones([ZoneCount])
    /// `replicas` distinct nodes, at most `perZone` of any one zone; when the walk has met every node
    /// without finding enough zones, the nodes it passed over for that reason, in the order met.
    case spread(replicas: Int, perZone: Int)

    /// How many replicas of one zone a `zones` rule asks for.
    public struct ZoneCount: Sendable, Hashable {
        public var zone: String
        public var count: Int

        public init(zone: String, count: Int) {
            self.zone = zone
            self.count = count
        }
    }

    /// A `zones` rule from zone names and counts (in any order; kept sorted by zone).
    public static func zones(_ counts: [String: Int]) -> Placement {
        .zones(counts.map { ZoneCount(zone: $0.key, count: $0.value) }.sorted { $0.zone < $1.zone })
    }

    /// N: how many replicas every key has.
    public var replicationFactor: Int {
        switch self {
        case .simple(let replicas), .spread(let replicas, _):
            replicas
        case .zones(let counts):
            // Each count is checked against `Limits.replicationFactorMax` before it is used: no overflow.
            counts.reduce(0) { $0 &+ max(0, min($1.count, Limits.replicationFactorMax)) }
        }
    }

    /// The same rule with N replicas (`kvctl cluster set-rf`); nil for a `zones` rule, whose N is the
    /// sum of its per-zone counts: change those instead.
    public func withReplicationFactor(_ replicas: Int) -> Placement? {
        switch self {
        case .simple: .simple(replicas: replicas)
        case .spread(_, let perZone): .spread(replicas: replicas, perZone: perZone)
        case .zones: nil
        }
    }

    /// Whether the rule looks at zones at all.
    public var usesZones: Bool {
        if case .simple = self { return false }
        return true
    }

    /// `simple:3`, `zones:dc1=2,dc2=1`, `spread:3/1`.
    public var description: String {
        switch self {
        case .simple(let replicas): "simple:\(replicas)"
        case .zones(let counts): "zones:" + counts.map { "\($0.zone)=\($0.count)" }.joined(separator: ",")
        case .spread(let replicas, let perZone): "spread:\(replicas)/\(perZone)"
        }
    }

    /// Parses what `description` writes; nil for anything else (the counts are checked by `Ring`).
    public init?(parsing text: String) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return nil }
        switch parts[0] {
        case "simple":
            guard let replicas = Int(parts[1]) else { return nil }
            self = .simple(replicas: replicas)
        case "zones":
            var counts: [String: Int] = [:]
            for item in parts[1].split(separator: ",") {
                let pair = item.split(separator: "=").map(String.init)
                guard pair.count == 2, !pair[0].isEmpty, let count = Int(pair[1]), counts[pair[0]] == nil else {
                    return nil
                }
                counts[pair[0]] = count
            }
            guard !counts.isEmpty else { return nil }
            self = .zones(counts)
        case "spread":
            let numbers = parts[1].split(separator: "/").map { Int($0) }
            guard numbers.count == 2, let replicas = numbers[0], let perZone = numbers[1] else { return nil }
            self = .spread(replicas: replicas, perZone: perZone)
        default:
            return nil
        }
    }
}

extension Placement {
    /// The checks a ring of `nodes` makes of the rule before using it.
    func validate(nodes: [RingNode]) throws(RingError) {
        let nodeCount = nodes.count
        switch self {
        case .simple(let replicas):
            guard replicas >= 1 && replicas <= min(nodeCount, Limits.replicationFactorMax) else {
                throw .replicationFactorOutOfRange(replicas, nodeCount: nodeCount)
            }
        case .spread(let replicas, let perZone):
            guard replicas >= 1 && replicas <= min(nodeCount, Limits.replicationFactorMax) else {
                throw .replicationFactorOutOfRange(replicas, nodeCount: nodeCount)
            }
            guard perZone >= 1 else { throw .invalidPlacement(self) }
        case .zones(let counts):
            guard !counts.isEmpty, counts.count <= Limits.replicationFactorMax,
                counts.allSatisfy({ $0.count >= 1 && $0.count <= Limits.replicationFactorMax }),
                Set(counts.map(\.zone)).count == counts.count
            else { throw .invalidPlacement(self) }
            guard replicationFactor <= Limits.replicationFactorMax else {
                throw .replicationFactorOutOfRange(replicationFactor, nodeCount: nodeCount)
            }
            for wanted in counts {
                let have = nodes.count { $0.zone == wanted.zone }
                guard have >= wanted.count else {
                    throw .zoneTooSmall(wanted.zone, nodes: have, replicas: wanted.count)
                }
            }
        }
    }

    /// The preference lists of every vnode for a rule that uses zones, flattened: walking clockwise from
    /// each vnode until the rule is met. O(V · L), L the vnodes walked before the rule is met: a few
    /// times N when zones are mixed along the ring, up to V when a zone's nodes are few and far apart.
    func zonedPreferenceTable(owners: [Int32], nodes: [RingNode]) -> [Int32] {
        let count = owners.count
        let replicas = replicationFactor
        var zoneNames: [String] = []
        var zoneIndex: [String: Int] = [:]
        let zoneOfNode = nodes.map { node -> Int in
            if let index = zoneIndex[node.zone] { return index }
            zoneIndex[node.zone] = zoneNames.count
            zoneNames.append(node.zone)
            return zoneNames.count - 1
        }
        // What each zone may hold of a list.
        var quota = [Int](repeating: 0, count: zoneNames.count)
        switch self {
        case .simple(let replicas):
            quota = quota.map { _ in replicas }
        case .spread(_, let perZone):
            quota = quota.map { _ in perZone }
        case .zones(let counts):
            for wanted in counts { if let index = zoneIndex[wanted.zone] { quota[index] = wanted.count } }
        }
        var table = [Int32](repeating: 0, count: count * replicas)
        // `seen[node] == stamp` marks the nodes met in the current walk, without clearing per walk.
        var seen = [Int](repeating: -1, count: nodes.count)
        var held = [Int](repeating: 0, count: zoneNames.count)
        var passedOver: [Int32] = []
        for start in 0..<count {
            for index in held.indices { held[index] = 0 }
            passedOver.removeAll(keepingCapacity: true)
            var filled = 0
            var position = start
            var walked = 0
            while filled < replicas && walked < count {
                walked += 1
                let owner = owners[position]
                position = position + 1 == count ? 0 : position + 1
                guard seen[Int(owner)] != start else { continue }
                seen[Int(owner)] = start
                let zone = zoneOfNode[Int(owner)]
                if held[zone] < quota[zone] {
                    held[zone] += 1
                    table[start * replicas + filled] = owner
                    filled += 1
                } else {
                    passedOver.append(owner)
                }
            }
            // Too few zones for `spread`'s cap: the nodes passed over, in the order met. (`validate`
            // makes sure every zone of a `zones` rule has enough nodes.)
            guard case .spread = self else { continue }
            for owner in passedOver where filled < replicas {
                table[start * replicas + filled] = owner
                filled += 1
            }
        }
        return table
    }
}
