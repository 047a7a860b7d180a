/// Which replicas a read asks and how many must answer: the one copy of that rule, which `KVClient`
/// and the simulator's clients both apply.
///
/// - R comes from the consistency level and the ring's N: the first R replicas in the caller's order
///   are asked (all with `askAll`), a failed one replaced by the next.
/// - A level that counts zones asks per zone (`ConsistencyLevel.quorums`): `local_quorum` a majority
///   of the key's replicas in `localZone`, `each_quorum` a majority in every zone holding replicas;
///   the read completes when each group has its count.
public struct ReadPlan: Sendable, Hashable {
    /// R, as the caller asked for it.
    public var level: ConsistencyLevel
    /// How long the read may take.
    public var deadline: Duration
    /// Ask every replica at once instead of R.
    public var askAll: Bool
    public var repair: ReadOperation.Repair
    /// The client's zone, for `local_quorum`; empty when it has none.
    public var localZone: String

    public init(
        level: ConsistencyLevel, deadline: Duration, askAll: Bool = false, repair: ReadOperation.Repair = .background,
        localZone: String = ""
    ) {
        self.level = level
        self.deadline = deadline
        self.askAll = askAll
        self.repair = repair
        self.localZone = localZone
    }

    /// The read of a key whose replicas on `ring` are `replicas`, in the order they should be asked
    /// (the preference list, or healthy replicas first). Without a speculation delay: the caller sets
    /// `coordinator.speculationDelay` from the latencies of the replicas asked first.
    ///
    /// - Throws: ``QuorumError`` when the level does not fit the ring's N or the replicas' zones.
    public func operation(replicas: [String], on ring: Ring) throws(QuorumError) -> ReadOperation.Configuration {
        let quorums = try level.quorums(
            of: replicas, replicationFactor: ring.replicationFactor,
            zones: level.countsZones ? ring.zones(of: replicas) : [:], localZone: localZone)
        var configuration = ReadOperation.Configuration(
            replicas: replicas, required: min(quorums.reduce(0) { $0 + $1.required }, replicas.count),
            askAll: askAll, deadline: deadline, repair: repair)
        if level.countsZones { configuration.coordinator.quorums = quorums }
        return configuration
    }

    /// The replicas asked first: the first R (of each zone's group, for levels that count zones).
    public static func firstAsked(_ configuration: ReadOperation.Configuration) -> [String] {
        let coordinator = configuration.coordinator
        guard !coordinator.quorums.isEmpty else { return Array(coordinator.replicas.prefix(coordinator.required)) }
        return coordinator.quorums.flatMap { $0.replicas.prefix($0.required) }
    }
}
