/// One anti-entropy repair of one vnode range between this node and the range's other replicas: which
/// co-replica to compare with next, whether the range ends confirmed, and whether its tombstones may
/// be purged. The one copy of that rule: `kvd`'s `AntiEntropy` drives it with `AntiEntropySession`s
/// over RPC, the simulator's nodes with their synchronous comparisons.
///
/// The co-replicas are compared one after the other, in the order given (the range's preference
/// list minus this node). A comparison copies what differs both ways, so each co-replica ends with
/// everything this node held when they compared, but not with what a later co-replica gave this node.
/// So when a later co-replica gave this node records and every comparison succeeded, the earlier
/// co-replicas, up to the last that gave records, are compared again: the repair then leaves every
/// replica with the newest version this node saw. (The second comparisons are not followed by a
/// third: the first ones already brought everything this node learned.) After a failure nothing is
/// compared again: the range is not confirmed anyway, and the next pass repairs it.
///
/// The range is **confirmed** when every comparison succeeded: every co-replica then holds each of
/// this node's tombstones, something newer, or nothing for the key (it purged it already). Only then
/// does `TombstonePolicy.mayPurge(confirmed:)` let the node purge the range's tombstones older than
/// `purgeHorizon`: a co-replica that is down fails its comparison, and a tombstone it has not
/// received must not vanish from the others.
///
/// No I/O: the driver asks `step`, runs the comparison it names, reports it with
/// `compared(with:keysReceived:failed:)`, and on `.finished` records the range as compared (when
/// confirmed) and purges (when the outcome says so).
public struct RangeRepair: Sendable, Hashable {
    /// What the driver does next.
    public enum Step: Sendable, Hashable {
        /// Compare the range with this co-replica, copying what differs both ways, with tombstones
        /// older than `purgeHorizon` not copied where their key is absent.
        case compare(String)
        /// Every comparison is done.
        case finished(Outcome)
    }

    /// What a finished repair concluded.
    public struct Outcome: Sendable, Hashable {
        /// Every comparison succeeded: the range counts as compared with every co-replica (its repair
        /// marks may be cleared).
        public var confirmed: Bool
        /// Purge this node's tombstones of the range older than this version; nil: purge nothing.
        public var purgeBefore: Version?

        public init(confirmed: Bool, purgeBefore: Version?) {
            self.confirmed = confirmed
            self.purgeBefore = purgeBefore
        }
    }

    public let range: TokenRangeSpan
    /// The range's other replicas, compared in this order.
    public let coReplicas: [String]
    /// Tombstones older than this may be purged, and are not copied where their key is absent
    /// (`TombstonePolicy.horizon(nowMillis:rangesMoving:)`; nil: none).
    public let purgeHorizon: Version?
    public let policy: TombstonePolicy
    /// Every comparison asked so far and still to ask, in order: each co-replica once, then, when a
    /// later one gave records, the earlier ones again. At most `2 × coReplicas.count - 1`.
    public private(set) var comparisons: [String]
    /// How many of `comparisons` are done.
    public private(set) var completed = 0
    /// How many of the completed comparisons failed.
    public private(set) var failures = 0
    /// The index in `coReplicas` of the last one that gave this node records in the first round.
    private var lastGiving: Int?

    public init(range: TokenRangeSpan, coReplicas: [String], purgeHorizon: Version?, policy: TombstonePolicy) {
        self.range = range
        self.coReplicas = coReplicas
        self.purgeHorizon = purgeHorizon
        self.policy = policy
        self.comparisons = coReplicas
    }

    /// The next comparison, or the outcome once every comparison is done.
    public var step: Step {
        if completed < comparisons.count {
            return .compare(comparisons[completed])
        }
        let confirmed = failures == 0
        let purges = purgeHorizon != nil && policy.mayPurge(confirmed: confirmed)
        return .finished(Outcome(confirmed: confirmed, purgeBefore: purges ? purgeHorizon : nil))
    }

    /// The comparison `step` asked for, with `peer`, is done: this node applied `keysReceived`
    /// records from it (a comparison that `failed` counts what it applied before it stopped).
    public mutating func compared(with peer: String, keysReceived: Int, failed: Bool) {
        precondition(completed < comparisons.count, "\(range): a comparison reported after the repair finished")
        precondition(comparisons[completed] == peer, "\(range): compared with \(peer), not \(comparisons[completed])")
        precondition(keysReceived >= 0, "\(range): \(keysReceived) keys received")
        if failed { failures += 1 }
        if completed < coReplicas.count && keysReceived > 0 { lastGiving = completed }
        completed += 1
        // The first round is over: records from a later co-replica have not reached the earlier ones.
        if completed == coReplicas.count, failures == 0, let lastGiving, lastGiving > 0 {
            comparisons += coReplicas.prefix(lastGiving)
        }
        assert(completed <= comparisons.count && comparisons.count < 2 * coReplicas.count)
    }
}
