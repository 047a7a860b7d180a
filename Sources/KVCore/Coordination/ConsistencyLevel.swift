/// How many replicas must answer a read or acknowledge a write: `one`, `quorum` (N/2+1), `all`, an
/// explicit count, or a quorum counted per zone: `local_quorum` (a majority of the key's replicas in
/// the client's zone) and `each_quorum` (a majority in every zone that holds replicas of the key), as
/// Cassandra's levels of the same names.
///
/// A level is chosen per request and resolved against the cluster's replication factor N with
/// ``required(replicationFactor:)``; an explicit count outside `1...N` is refused there, not trapped,
/// because it comes from a user (a flag, a config file, an SDK call).
public enum ConsistencyLevel: Sendable, Hashable, CustomStringConvertible {
    case one
    case quorum
    case all
    case count(Int)
    /// A majority of the key's replicas in the client's zone (`KVClientConfiguration.zone`); the
    /// other zones' replicas still receive writes but are not waited for.
    case localQuorum
    /// A majority of the key's replicas in each zone that holds some.
    case eachQuorum

    /// The number of replicas this level needs out of `n`.
    ///
    /// `quorum` is a strict majority, `n / 2 + 1`, so that any read quorum overlaps any write quorum
    /// when both use it.
    ///
    /// - Throws: ``QuorumError/invalidConsistency(_:replicationFactor:)`` when `n` is not positive or
    ///   an explicit count is outside `1...n`.
    public func required(replicationFactor n: Int) throws(QuorumError) -> Int {
        guard n >= 1 else {
            throw QuorumError.invalidConsistency(self, replicationFactor: n)
        }
        switch self {
        case .one:
            return 1
        case .quorum:
            return n / 2 + 1
        case .localQuorum, .eachQuorum:
            // Counted per zone by `quorums(of:replicationFactor:zones:localZone:)`; as one count, a
            // majority of N (what `each_quorum` needs at least).
            return n / 2 + 1
        case .all:
            return n
        case .count(let count):
            guard (1...n).contains(count) else {
                throw QuorumError.invalidConsistency(self, replicationFactor: n)
            }
            return count
        }
    }

    /// Parses `one`, `quorum`, `all` (in any letter case) or a decimal count such as `2`.
    ///
    /// Only the syntax is checked here: whether a count fits the replication factor is decided by
    /// ``required(replicationFactor:)``, which knows N and can say so.
    public init?(parsing text: String) {
        switch text.lowercased() {
        case "one":
            self = .one
        case "quorum":
            self = .quorum
        case "all":
            self = .all
        case "local_quorum":
            self = .localQuorum
        case "each_quorum":
            self = .eachQuorum
        default:
            guard !text.isEmpty, text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
                let count = Int(text)
            else {
                return nil
            }
            self = .count(count)
        }
    }

    /// `one`, `quorum`, `all`, `local_quorum`, `each_quorum` or the count: the form
    /// ``init(parsing:)`` reads back.
    public var description: String {
        switch self {
        case .one: "one"
        case .quorum: "quorum"
        case .all: "all"
        case .count(let count): String(count)
        case .localQuorum: "local_quorum"
        case .eachQuorum: "each_quorum"
        }
    }

    /// Whether the level counts replies per zone.
    public var countsZones: Bool {
        switch self {
        case .localQuorum, .eachQuorum: true
        case .one, .quorum, .all, .count: false
        }
    }

    /// The groups of `replicas` (a key's preference list) that must each reach their count: one group
    /// of all of them with ``required(replicationFactor:)`` (at most the list's length) for levels that
    /// do not count zones; for `local_quorum` the replicas in `localZone`, a majority of them; for
    /// `each_quorum` one group per zone holding replicas (in the order the list meets them), a
    /// majority of each. `zones` gives each replica's zone (missing: no zone).
    ///
    /// - Throws: ``QuorumError/invalidConsistency(_:replicationFactor:)`` as `required` does;
    ///   ``QuorumError/zonesUnfit(_:replicas:reason:)`` for `local_quorum` without a local zone or
    ///   with no replica of the key in it.
    public func quorums(
        of replicas: [String], replicationFactor n: Int, zones: [String: String], localZone: String
    ) throws(QuorumError) -> [ReplicaQuorum] {
        switch self {
        case .one, .quorum, .all, .count:
            return [
                ReplicaQuorum(replicas: replicas, required: min(try required(replicationFactor: n), replicas.count))
            ]
        case .localQuorum:
            guard !localZone.isEmpty else {
                throw .zonesUnfit(
                    self, replicas: replicas.count, reason: "the client has no zone (set the client's zone)")
            }
            let local = replicas.filter { zones[$0] == localZone }
            guard !local.isEmpty else {
                throw .zonesUnfit(
                    self, replicas: replicas.count,
                    reason: "none of the key's \(replicas.count) replicas is in zone \(localZone)")
            }
            return [ReplicaQuorum(replicas: local, required: local.count / 2 + 1)]
        case .eachQuorum:
            var order: [String] = []
            var members: [String: [String]] = [:]
            for replica in replicas {
                let zone = zones[replica] ?? ""
                if members[zone] == nil { order.append(zone) }
                members[zone, default: []].append(replica)
            }
            return order.map { zone in
                let group = members[zone] ?? []
                return ReplicaQuorum(replicas: group, required: group.count / 2 + 1)
            }
        }
    }
}

/// A group of a request's replicas of which `required` must answer (or apply the write): a whole
/// preference list, its replicas in one zone, or during a membership change each ring's list.
public struct ReplicaQuorum: Sendable, Hashable, CustomStringConvertible {
    public var replicas: [String]
    public var required: Int

    public init(replicas: [String], required: Int) {
        self.replicas = replicas
        self.required = required
    }

    public var description: String { "\(required) of \(replicas.joined(separator: ","))" }
}
