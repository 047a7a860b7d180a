/// The quorum state machine of one write: sends a `Put` to every replica of the preference list,
/// counts their replies, and completes once — acknowledged, superseded or failed.
///
/// Sans-I/O, like etcd raft's `RawNode`: the coordinator performs no I/O and reads no clock. The
/// driver (`KVClient` over TLS, or the simulator) calls ``start()``, performs the returned actions,
/// and feeds every reply and expired deadline back through ``handle(_:)``. Times are durations
/// relative to the moment the actions are returned; the driver owns the clock.
///
/// Rules:
/// - ``start()`` sends to all replicas at once and schedules one deadline.
/// - The write is acknowledged at the `required`-th `applied`, never before.
/// - The first `superseded` before completion completes the write as superseded: some replica holds
///   a newer version, so this one must never be acknowledged. The caller re-stamps past `current`
///   and runs a new coordinator.
/// - As soon as so many replicas failed that `required` can no longer be reached, the write fails
///   without waiting for the deadline.
/// - The deadline fails the write, listing the silent replicas as `no answer within <deadline>`.
/// - It completes exactly once; later events return no actions. Each replica's first reply counts;
///   duplicates and replies from replicas outside the preference list are ignored, because networks
///   duplicate messages. Replies after completion still update ``unacknowledged``.
public struct WriteCoordinator: Sendable {
    /// A group of replicas of which `required` must apply the write.
    public typealias Quorum = ReplicaQuorum

    public struct Configuration: Sendable, Hashable {
        /// The preference list: every replica the write goes to, in ring order, without duplicates.
        public var replicas: [String]
        /// W: how many replicas must apply the write, in `1...replicas.count`.
        public var required: Int
        /// How long after ``WriteCoordinator/start()`` the write may take.
        public var deadline: Duration
        /// During a membership change, the current and the next preference lists (subsets of
        /// `replicas`), each of which must reach its own count: the write is acknowledged only when
        /// both hold it, so reads find it before and after ownership switches. Empty: `required` of
        /// `replicas`.
        public var quorums: [Quorum] = []

        /// Test-only fault switch for the simulator's mutation check: acknowledge at `required - 1`
        /// applies. Never set outside tests; `package` keeps it out of the SDK's API.
        package var acknowledgesEarly = false

        public init(replicas: [String], required: Int, deadline: Duration) {
            self.replicas = replicas
            self.required = required
            self.deadline = deadline
        }
    }

    public enum Event: Sendable, Hashable {
        /// The replica stored this version, or already held exactly it.
        case applied(String)
        /// The replica holds a newer version, `current`, and stored nothing.
        case superseded(String, current: Version)
        /// Transport error, refusal, storage failure...: the replica did not store the write.
        case failed(String, reason: String)
        /// The deadline scheduled by ``WriteCoordinator/start()`` has passed.
        case deadlinePassed
    }

    public enum Action: Sendable, Hashable {
        /// Send the `Put` to this replica.
        case send(to: String)
        /// Feed ``Event/deadlinePassed`` after this long.
        case scheduleDeadline(after: Duration)
        /// The write is over; report this outcome to the caller.
        case complete(WriteOutcome)
    }

    public enum WriteOutcome: Sendable, Hashable {
        /// `required` replicas applied the write; these ones, in preference-list order.
        case acknowledged(by: [String])
        /// A replica holds a newer version: re-stamp past `current` and run a new coordinator. The
        /// write must not be acknowledged.
        case superseded(current: Version)
        case failed(QuorumError)
    }

    private enum ReplicaState: Sendable, Hashable {
        case pending
        case applied
        case superseded(Version)
        case failed(reason: String)
    }

    public let configuration: Configuration
    private var states: [ReplicaState]
    private var appliedCount = 0
    private var failedCount = 0
    private var started = false
    /// How the write ended; nil until it has.
    public private(set) var outcome: WriteOutcome?

    /// - Precondition: `replicas` is not empty and has no duplicates, `required` is in
    ///   `1...replicas.count`, and `deadline` is positive. These are programmer errors: resolve a
    ///   user's consistency level with ``ConsistencyLevel/required(replicationFactor:)`` first.
    public init(configuration: Configuration) {
        Self.checkPreconditions(configuration)
        self.configuration = configuration
        self.states = Array(repeating: .pending, count: configuration.replicas.count)
    }

    /// Checks what ``init(configuration:)`` requires of `configuration`, without building a
    /// coordinator: a ``WriteOperation`` checks its attempts' configuration once, up front.
    static func checkPreconditions(_ configuration: Configuration) {
        let replicas = configuration.replicas
        precondition(!replicas.isEmpty, "a write needs at least one replica")
        precondition(replicas.hasDistinctElements, "duplicate replicas in \(replicas)")
        precondition(
            (1...replicas.count).contains(configuration.required),
            "required \(configuration.required) is outside 1...\(replicas.count)"
        )
        precondition(configuration.deadline > .zero, "deadline \(configuration.deadline) is not positive")
        for quorum in configuration.quorums {
            precondition(
                quorum.replicas.isContained(in: replicas) && (1...quorum.replicas.count).contains(quorum.required),
                "quorum \(quorum) does not fit the replicas \(replicas)")
        }
    }

    public var isComplete: Bool { outcome != nil }

    /// Every replica answered (applied, superseded or failed), the quorum reached or not.
    public var hasEveryAnswer: Bool { !states.contains(.pending) }

    /// Replicas that did not apply the write — failed or never answered — in preference-list order:
    /// the hinted-handoff candidates. Replicas that answered `superseded` hold a newer version and
    /// need no hint, so they are not listed.
    public var unacknowledged: [String] {
        zip(configuration.replicas, states).compactMap { node, state in
            switch state {
            case .pending, .failed: node
            case .applied, .superseded: nil
            }
        }
    }

    /// Sends the write to every replica at once and schedules the deadline.
    public mutating func start() -> [Action] {
        precondition(!started, "start() called twice")
        started = true
        // Every replica and the deadline, in one allocation (this runs per write).
        var actions: [Action] = []
        actions.reserveCapacity(configuration.replicas.count + 1)
        for replica in configuration.replicas { actions.append(.send(to: replica)) }
        actions.append(.scheduleDeadline(after: configuration.deadline))
        assertInvariants()
        return actions
    }

    /// Takes one event and returns what to do next: nothing, or the completion.
    public mutating func handle(_ event: Event) -> [Action] {
        precondition(started, "handle(_:) called before start()")
        defer { assertInvariants() }
        switch event {
        case .applied(let node):
            guard let index = pendingIndex(of: node) else { return [] }
            states[index] = .applied
            appliedCount += 1
            guard outcome == nil, quorumsMet else { return [] }
            let acknowledged = zip(configuration.replicas, states).compactMap { $1 == .applied ? $0 : nil }
            return complete(.acknowledged(by: acknowledged))

        case .superseded(let node, let current):
            guard let index = pendingIndex(of: node) else { return [] }
            states[index] = .superseded(current)
            guard outcome == nil else { return [] }
            return complete(.superseded(current: current))

        case .failed(let node, let reason):
            guard let index = pendingIndex(of: node) else { return [] }
            states[index] = .failed(reason: reason)
            failedCount += 1
            guard outcome == nil, quorumUnreachable else { return [] }
            return complete(.failed(error(deadlinePassed: false)))

        case .deadlinePassed:
            guard outcome == nil else { return [] }
            return complete(.failed(error(deadlinePassed: true)))
        }
    }

    /// The index of `node` if it is in the preference list and has not answered yet.
    private func pendingIndex(of node: String) -> Int? {
        guard let index = configuration.replicas.firstIndex(of: node), states[index] == .pending else {
            return nil
        }
        return index
    }

    private mutating func complete(_ outcome: WriteOutcome) -> [Action] {
        precondition(self.outcome == nil, "a write completes once")
        self.outcome = outcome
        return [.complete(outcome)]
    }

    private func error(deadlinePassed: Bool) -> QuorumError {
        .ending(
            .write, deadlinePassed: deadlinePassed, required: configuration.required, deadline: configuration.deadline,
            standings: zip(configuration.replicas, states).map { node, state in
                switch state {
                case .applied: (node, .succeeded)
                case .failed(let reason): (node, .failed(reason: reason))
                case .pending: (node, .silent)
                case .superseded: (node, .neither)
                }
            }, groups: configuration.quorums)
    }

    /// How many applies acknowledge a quorum: `required`, unless the mutation check broke the rule.
    private func threshold(_ quorum: Quorum) -> Int {
        configuration.acknowledgesEarly ? max(1, quorum.required - 1) : quorum.required
    }

    /// How many of `quorum`'s replicas are in `state`.
    private func count(in quorum: Quorum, where matches: (ReplicaState) -> Bool) -> Int {
        zip(configuration.replicas, states).count { quorum.replicas.contains($0.0) && matches($0.1) }
    }

    /// Every quorum has enough applies.
    private var quorumsMet: Bool {
        everyQuorum { quorum in count(in: quorum, where: { $0 == .applied }) >= threshold(quorum) }
    }

    /// Some quorum has too many failures to ever be met.
    private var quorumUnreachable: Bool {
        !everyQuorum { quorum in
            quorum.replicas.count - count(in: quorum, where: { if case .failed = $0 { true } else { false } })
                >= quorum.required
        }
    }

    /// Whether `holds` is true of every group that must reach its count: the `quorums`, or outside a
    /// membership change `required` of all `replicas` (not built as a list: this runs at every reply).
    private func everyQuorum(_ holds: (Quorum) -> Bool) -> Bool {
        guard !configuration.quorums.isEmpty else {
            return holds(Quorum(replicas: configuration.replicas, required: configuration.required))
        }
        return configuration.quorums.allSatisfy(holds)
    }

    private func assertInvariants() {
        assert(appliedCount == states.count(where: { $0 == .applied }))
        assert(failedCount == states.count(where: { if case .failed = $0 { true } else { false } }))
        guard outcome == nil else { return }
        assert(!quorumsMet, "enough replicas applied but the write is not complete")
        assert(!quorumUnreachable, "the quorum is unreachable but the write is not complete")
        assert(
            !states.contains(where: { if case .superseded = $0 { true } else { false } }),
            "a replica superseded the write but it is not complete"
        )
    }
}
