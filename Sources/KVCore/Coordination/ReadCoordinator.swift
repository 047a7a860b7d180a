/// The quorum state machine of one read: asks replicas of the preference list for a key, collects
/// what they hold, and completes once — with the newest record, or failed.
///
/// Sans-I/O, like ``WriteCoordinator``: no I/O, no clock. The driver performs the returned actions
/// and feeds replies, expired deadlines and due speculations back through ``handle(_:)``.
///
/// Rules:
/// - ``start()`` asks the first `required` replicas in preference order (or all of them with
///   `askAll`), schedules the deadline and, when `speculationDelay` is set and some replica is left
///   unasked, schedules one speculation. With `quorums` (a level that counts zones), it asks the
///   first `required` of each group instead.
/// - The read completes at the `required`-th answer (with `quorums`: once every group has its
///   count), never before. The newest record among the answers wins; a tombstone is an answer like
///   any other.
/// - A failed replica is replaced at once by the next unasked one in preference order (of its group),
///   so a dead replica costs no waiting.
/// - As soon as so many replicas failed that `required` answers can no longer arrive (in some
///   group), the read fails without waiting for the deadline.
/// - The deadline fails the read, listing the asked replicas that stayed silent as
///   `no answer within <deadline>`; replicas never asked are not listed.
/// - ``Event/speculationDue`` before completion asks exactly one more replica, if one is left (of
///   the first group still short of its count).
///   The coordinator schedules a single speculation; each further `speculationDue` the driver feeds
///   asks at most one more.
/// - It completes exactly once; later events return no actions and do not change the outcome. Each
///   replica's first reply counts; duplicates and replies from replicas that were not asked are
///   ignored.
public struct ReadCoordinator: Sendable {
    public struct Configuration: Sendable, Hashable {
        /// The preference list, in ring order, without duplicates; replicas are asked in this order.
        public var replicas: [String]
        /// R: how many replicas must answer, in `1...replicas.count`.
        public var required: Int
        /// Ask all replicas at once instead of the first `required`.
        public var askAll: Bool
        /// How long after ``ReadCoordinator/start()`` the read may take.
        public var deadline: Duration
        /// When set and not every replica was asked: after this delay, if `required` answers have not
        /// arrived, ask one more replica. The driver computes it from the replicas' recent p99
        /// (``LatencyTracker``).
        public var speculationDelay: Duration?
        /// Groups of `replicas` that must each reach their own count (`ConsistencyLevel.quorums`, for
        /// `local_quorum` and `each_quorum`); `required` is then their sum. Empty: `required` of
        /// `replicas`.
        public var quorums: [ReplicaQuorum] = []

        public init(
            replicas: [String],
            required: Int,
            askAll: Bool = false,
            deadline: Duration,
            speculationDelay: Duration? = nil
        ) {
            self.replicas = replicas
            self.required = required
            self.askAll = askAll
            self.deadline = deadline
            self.speculationDelay = speculationDelay
        }
    }

    public enum Event: Sendable, Hashable {
        /// What the replica holds for the key: its record (possibly a tombstone), or nil for nothing.
        case answered(String, StoredRecord?)
        /// Transport error, refusal, storage failure...: the replica gave no answer.
        case failed(String, reason: String)
        /// The deadline scheduled by ``ReadCoordinator/start()`` has passed.
        case deadlinePassed
        /// The speculation scheduled by ``ReadCoordinator/start()`` is due.
        case speculationDue
    }

    public enum Action: Sendable, Hashable {
        /// Send the `Get` to this replica.
        case send(to: String)
        /// Feed ``Event/deadlinePassed`` after this long.
        case scheduleDeadline(after: Duration)
        /// Feed ``Event/speculationDue`` after this long.
        case scheduleSpeculation(after: Duration)
        /// The read is over; report this outcome to the caller.
        case complete(ReadOutcome)
    }

    public enum ReadOutcome: Sendable, Hashable {
        case answered(ReadResult)
        case failed(QuorumError)
    }

    /// What `required` replicas answered.
    public struct ReadResult: Sendable, Hashable {
        /// The record with the greatest version among the answers: a tombstone is returned as the
        /// record (the caller reports "not found"); nil when no replica that answered has the key.
        public var newest: StoredRecord?
        /// What each replica that answered holds: its version, or nil for nothing.
        public var answers: [String: Version?]
        /// Replicas that answered with an older version or nothing while `newest` exists, in
        /// preference-list order: the read-repair targets.
        public var stale: [String]

        public init(newest: StoredRecord?, answers: [String: Version?], stale: [String]) {
            self.newest = newest
            self.answers = answers
            self.stale = stale
        }

        /// What the read answers its caller at `nowMillis` (the reading client's clock): the newest
        /// record, or nil when there is none, it is a tombstone, or its value expired (an expired
        /// value is a delete at its own version). The one rule the SDK and the simulator read by.
        public func live(atMillis nowMillis: UInt64) -> StoredRecord? {
            guard let newest, !newest.isDeleted(atMillis: nowMillis) else { return nil }
            return newest
        }
    }

    private enum ReplicaState: Sendable, Hashable {
        case unasked
        case pending
        case answered(StoredRecord?)
        case failed(reason: String)
    }

    public let configuration: Configuration
    private var states: [ReplicaState]
    /// Each group that must reach its count (each of `configuration.quorums`, or `required` of all
    /// the replicas): the indices of its replicas in preference order, and its count.
    private let groups: [(members: [Int], required: Int)]
    private var answeredCount = 0
    private var failedCount = 0
    private var started = false
    /// How the read ended; nil until it has.
    public private(set) var outcome: ReadOutcome?

    /// - Precondition: `replicas` is not empty and has no duplicates, `required` is in
    ///   `1...replicas.count`, `deadline` is positive and `speculationDelay`, if set, is not negative.
    public init(configuration: Configuration) {
        let replicas = configuration.replicas
        precondition(!replicas.isEmpty, "a read needs at least one replica")
        precondition(replicas.hasDistinctElements, "duplicate replicas in \(replicas)")
        precondition(
            (1...replicas.count).contains(configuration.required),
            "required \(configuration.required) is outside 1...\(replicas.count)"
        )
        precondition(configuration.deadline > .zero, "deadline \(configuration.deadline) is not positive")
        if let delay = configuration.speculationDelay {
            precondition(delay >= .zero, "speculation delay \(delay) is negative")
        }
        for quorum in configuration.quorums {
            precondition(
                quorum.replicas.isContained(in: replicas) && (1...quorum.replicas.count).contains(quorum.required),
                "quorum \(quorum) does not fit the replicas \(replicas)")
        }
        self.configuration = configuration
        self.states = Array(repeating: .unasked, count: replicas.count)
        // Outside a membership change, one group of every replica, built without the list of
        // quorums a change has (this runs per read).
        self.groups =
            configuration.quorums.isEmpty
            ? [(Array(replicas.indices), configuration.required)]
            : configuration.quorums.map { quorum in
                (replicas.indices.filter { quorum.replicas.contains(replicas[$0]) }, quorum.required)
            }
    }

    public var isComplete: Bool { outcome != nil }

    /// Asks the first `required` replicas (or all), schedules the deadline and maybe a speculation.
    public mutating func start() -> [Action] {
        precondition(!started, "start() called twice")
        started = true
        defer { assertInvariants() }
        // At most every replica, the deadline and a speculation: one allocation (this runs per read).
        var actions: [Action] = []
        actions.reserveCapacity(states.count + 2)
        for group in groups {
            let wanted = configuration.askAll ? group.members.count : group.required
            while group.members.count(where: { states[$0] != .unasked }) < wanted, let index = firstUnasked(in: group) {
                actions.append(ask(index))
            }
        }
        actions.append(.scheduleDeadline(after: configuration.deadline))
        if let delay = configuration.speculationDelay, states.contains(.unasked) {
            actions.append(.scheduleSpeculation(after: delay))
        }
        return actions
    }

    /// Takes one event and returns what to do next: ask another replica, complete, or nothing.
    public mutating func handle(_ event: Event) -> [Action] {
        precondition(started, "handle(_:) called before start()")
        defer { assertInvariants() }
        switch event {
        case .answered(let node, let record):
            guard let index = pendingIndex(of: node) else { return [] }
            states[index] = .answered(record)
            answeredCount += 1
            guard outcome == nil, groups.allSatisfy(isMet) else { return [] }
            return complete(.answered(result()))

        case .failed(let node, let reason):
            guard let index = pendingIndex(of: node) else { return [] }
            states[index] = .failed(reason: reason)
            failedCount += 1
            guard outcome == nil else { return [] }
            if groups.contains(where: isUnreachable) {
                return complete(.failed(error(deadlinePassed: false)))
            }
            // The next unasked replica of each group the failed one was in.
            var actions: [Action] = []
            for group in groups where group.members.contains(index) {
                if let next = firstUnasked(in: group) { actions.append(ask(next)) }
            }
            return actions

        case .deadlinePassed:
            guard outcome == nil else { return [] }
            return complete(.failed(error(deadlinePassed: true)))

        case .speculationDue:
            guard outcome == nil else { return [] }
            for group in groups where !isMet(group) {
                if let index = firstUnasked(in: group) { return [ask(index)] }
            }
            return []
        }
    }

    private mutating func ask(_ index: Int) -> Action {
        assert(states[index] == .unasked)
        states[index] = .pending
        return .send(to: configuration.replicas[index])
    }

    /// The group's first replica in preference order not asked yet.
    private func firstUnasked(in group: (members: [Int], required: Int)) -> Int? {
        group.members.first { states[$0] == .unasked }
    }

    /// The group has its count of answers.
    private func isMet(_ group: (members: [Int], required: Int)) -> Bool {
        group.members.count { if case .answered = states[$0] { true } else { false } } >= group.required
    }

    /// So many of the group failed that it cannot reach its count.
    private func isUnreachable(_ group: (members: [Int], required: Int)) -> Bool {
        group.members.count - group.members.count { if case .failed = states[$0] { true } else { false } }
            < group.required
    }

    /// The index of `node` if it was asked and has not answered yet.
    private func pendingIndex(of node: String) -> Int? {
        guard let index = configuration.replicas.firstIndex(of: node), states[index] == .pending else {
            return nil
        }
        return index
    }

    private mutating func complete(_ outcome: ReadOutcome) -> [Action] {
        precondition(self.outcome == nil, "a read completes once")
        self.outcome = outcome
        return [.complete(outcome)]
    }

    private func result() -> ReadResult {
        var newest: StoredRecord?
        var answers: [String: Version?] = [:]
        for (node, state) in zip(configuration.replicas, states) {
            guard case .answered(let record) = state else { continue }
            answers[node] = .some(record?.version)
            if let record, newest.map({ record.version > $0.version }) ?? true {
                newest = record
            }
        }
        var stale: [String] = []
        if let newest {
            for node in configuration.replicas {
                guard let answer = answers[node] else { continue }
                if answer.map({ $0 < newest.version }) ?? true {
                    stale.append(node)
                }
            }
        }
        return ReadResult(newest: newest, answers: answers, stale: stale)
    }

    private func error(deadlinePassed: Bool) -> QuorumError {
        .ending(
            .read, deadlinePassed: deadlinePassed, required: configuration.required, deadline: configuration.deadline,
            standings: zip(configuration.replicas, states).map { node, state in
                switch state {
                case .answered: (node, .succeeded)
                case .failed(let reason): (node, .failed(reason: reason))
                case .pending: (node, .silent)
                case .unasked: (node, .neither)
                }
            }, groups: configuration.quorums)
    }

    private func assertInvariants() {
        assert(answeredCount == states.count(where: { if case .answered = $0 { true } else { false } }))
        assert(failedCount == states.count(where: { if case .failed = $0 { true } else { false } }))
        guard outcome == nil else { return }
        assert(!groups.allSatisfy(isMet), "enough replicas answered but the read is not complete")
        assert(!groups.contains(where: isUnreachable), "the quorum is unreachable but the read is not complete")
        for group in groups {
            let asked = group.members.count {
                switch states[$0] {
                case .pending, .answered: true
                case .unasked, .failed: false
                }
            }
            assert(
                asked >= group.required || firstUnasked(in: group) == nil, "too few replicas asked while some are left")
        }
    }
}
