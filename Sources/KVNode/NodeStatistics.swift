import Synchronization

/// Counters a node keeps about its hints, shared by the RPC service (which reports them) and the
/// hint replayer (which moves most of them).
public final class NodeStatistics: Sendable {
    let hintsStored = Atomic<Int>(0)
    let hintsRefused = Atomic<Int>(0)
    let hintsReplayed = Atomic<Int>(0)
    let hintsExpired = Atomic<Int>(0)

    public init() {}

    /// Name and value of every counter, for `Admin` stats.
    public var snapshot: [(name: String, value: Int)] {
        [
            ("hints_stored", hintsStored.load(ordering: .relaxed)),
            ("hints_refused", hintsRefused.load(ordering: .relaxed)),
            ("hints_replayed", hintsReplayed.load(ordering: .relaxed)),
            ("hints_expired", hintsExpired.load(ordering: .relaxed)),
        ]
    }
}
