package import KVCore

/// How many of a key's replicas must answer a read or acknowledge a write.
///
/// With N replicas, reads at R and writes at W see each other's data whenever R + W > N: `quorum`
/// for both (the default) is that promise at the cost of waiting for a majority. See
/// <doc:ConsistencyTradeOffs> for the trade-offs of each choice.
public enum KVConsistency: Sendable, Hashable, CustomStringConvertible {
    /// One replica: the fastest answer, and the weakest promise.
    case one
    /// A strict majority of the key's N replicas (N/2 + 1).
    case quorum
    /// All N replicas: a single replica down fails the request.
    case all
    /// An explicit number of replicas, between 1 and N (checked when the request runs).
    case count(Int)
    /// A majority of the key's replicas in the client's zone (``KVClientConfiguration/zone``); the
    /// other zones' replicas still receive writes but are not waited for.
    case localQuorum
    /// A majority of the key's replicas in every zone that holds some.
    case eachQuorum

    /// Parses `one`, `quorum`, `all`, `local_quorum`, `each_quorum` (in any letter case) or a decimal
    /// count such as `2`: the form ``description`` prints. Nil for anything else.
    public init?(parsing text: String) {
        guard let level = ConsistencyLevel(parsing: text) else { return nil }
        self.init(level)
    }

    /// `one`, `quorum`, `all`, `local_quorum`, `each_quorum` or the count.
    public var description: String { level.description }

    /// The coordinators' level.
    package var level: ConsistencyLevel {
        switch self {
        case .one: .one
        case .quorum: .quorum
        case .all: .all
        case .count(let count): .count(count)
        case .localQuorum: .localQuorum
        case .eachQuorum: .eachQuorum
        }
    }

    /// The SDK's name for a coordinators' level.
    package init(_ level: ConsistencyLevel) {
        switch level {
        case .one: self = .one
        case .quorum: self = .quorum
        case .all: self = .all
        case .count(let count): self = .count(count)
        case .localQuorum: self = .localQuorum
        case .eachQuorum: self = .eachQuorum
        }
    }
}

/// What a read does about replicas that answered with an older version than the newest it saw.
public enum KVReadRepair: Sendable, Hashable {
    /// Repair nothing; anti-entropy catches the replicas up later.
    case none
    /// Write the newest version back to the stale replicas without waiting for them (the default).
    case background
    /// Write it back before the read answers, so that a following read at any level sees it.
    case blocking

    /// The read operation's mode.
    package var mode: ReadOperation.Repair {
        switch self {
        case .none: .none
        case .background: .background
        case .blocking: .blocking
        }
    }
}
