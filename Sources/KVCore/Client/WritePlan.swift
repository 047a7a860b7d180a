/// Where a write goes: which replicas it is sent to, what each ring's quorum is, and which fallbacks
/// take hints. The one copy of that rule: `KVClient` and the simulator's clients both plan every write
/// with it.
///
/// - Outside a membership change the write goes to the key's preference list, and W replicas must
///   apply it. W comes from the consistency level and the ring's N; a level that counts zones
///   (`local_quorum`, `each_quorum`) asks a majority of some zones' replicas instead
///   (`ConsistencyLevel.quorums`), and the write still goes to every replica.
/// - During a change (`next` given), when the key's next preference list differs, the write goes to
///   the union of both lists. W is required in each ring, each W taken from its own ring's N (a change
///   can raise N). Reads then find the write before and after ownership switches.
/// - Fallbacks are the current ring's, outside every replica the write goes to; a replica's hint
///   goes to the fallbacks of its own zone first (`HandOff`).
public struct WritePlan: Sendable, Hashable {
    /// W, as the caller asked for it.
    public var level: ConsistencyLevel
    /// How long each attempt may take.
    public var deadline: Duration
    /// How many times a superseded write is re-stamped and sent again before it gives up.
    public var supersededRetriesMax: Int
    /// Hinted handoff: fallbacks store hints for the replicas that do not acknowledge.
    public var hintedHandoff: Bool
    /// Sloppy quorum: a stored hint counts toward W (only with `hintedHandoff`).
    public var sloppyQuorum: Bool
    /// The client's zone, for `local_quorum`; empty when it has none.
    public var localZone = ""

    /// Test-only (a planted bug for the simulator's mutation check): during a change, writes go to the
    /// current ring only.
    package var writesToCurrentRingOnly = false
    /// Test-only (a planted bug): acknowledge at W-1 (see `WriteCoordinator.Configuration.acknowledgesEarly`).
    package var acknowledgesEarly = false

    public init(
        level: ConsistencyLevel, deadline: Duration, supersededRetriesMax: Int, hintedHandoff: Bool = true,
        sloppyQuorum: Bool = false
    ) {
        self.level = level
        self.deadline = deadline
        self.supersededRetriesMax = supersededRetriesMax
        self.hintedHandoff = hintedHandoff
        self.sloppyQuorum = sloppyQuorum
    }

    /// The write of the key at `token`, on the `current` ring and, during a change, the `next` one.
    /// `suspected` replicas (the failure detector's) are handed off at once.
    ///
    /// - Throws: ``QuorumError/invalidConsistency(_:replicationFactor:)`` when the level does not fit
    ///   a ring's N.
    public func operation(
        for token: Token, current: Ring, next: Ring? = nil, suspected: Set<String> = []
    ) throws(QuorumError) -> WriteOperation.Configuration {
        var replicas = current.preferenceList(for: token)
        var quorums = try groups(of: replicas, on: current)
        var required = min(quorums.reduce(0) { $0 + $1.required }, replicas.count)
        if let next, !writesToCurrentRingOnly, case let pending = next.preferenceList(for: token), pending != replicas {
            quorums += try groups(of: pending, on: next)
            replicas += pending.filter { !replicas.contains($0) }
            required = min(quorums[0].required, replicas.count)
        } else if quorums.count == 1 && quorums[0].replicas == replicas {
            quorums = []  // the whole list: `required` of `replicas` says it
        }
        var configuration = WriteOperation.Configuration(
            replicas: replicas, required: required, deadline: deadline, supersededRetriesMax: supersededRetriesMax,
            fallbacks: hintedHandoff ? current.fallbacks(for: token).filter { !replicas.contains($0) } : [],
            suspected: suspected)
        // No node past the preference list: the replicas hold each other's hints, which add no copy
        // and so never count toward a sloppy quorum.
        configuration.hintsToCoReplicas = hintedHandoff && configuration.fallbacks.isEmpty && replicas.count > 1
        configuration.hintsCountTowardQuorum = hintedHandoff && sloppyQuorum && !configuration.hintsToCoReplicas
        configuration.quorums = quorums
        configuration.acknowledgesEarly = acknowledgesEarly
        if hintedHandoff, current.hasZones {
            configuration.zones = current.zones(of: configuration.replicas + configuration.fallbacks)
        }
        return configuration
    }

    /// The quorums the level asks of one ring's `list` for the key.
    private func groups(of list: [String], on ring: Ring) throws(QuorumError) -> [WriteCoordinator.Quorum] {
        try level.quorums(
            of: list, replicationFactor: ring.replicationFactor,
            zones: level.countsZones ? ring.zones(of: list) : [:], localZone: localZone)
    }
}
