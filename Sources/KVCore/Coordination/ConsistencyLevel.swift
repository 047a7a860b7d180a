/// How many replicas must answer a read or acknowledge a write: `one`, `quorum` (N/2+1), `all`, or
/// an explicit count.
///
/// A level is chosen per request and resolved against the cluster's replication factor N with
/// ``required(replicationFactor:)``; an explicit count outside `1...N` is refused there, not trapped,
/// because it comes from a user (a flag, a config file, an SDK call).
public enum ConsistencyLevel: Sendable, Hashable, CustomStringConvertible {
    case one
    case quorum
    case all
    case count(Int)

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
        default:
            guard !text.isEmpty, text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
                let count = Int(text)
            else {
                return nil
            }
            self = .count(count)
        }
    }

    /// `one`, `quorum`, `all` or the count: the form ``init(parsing:)`` reads back.
    public var description: String {
        switch self {
        case .one: "one"
        case .quorum: "quorum"
        case .all: "all"
        case .count(let count): String(count)
        }
    }
}
