/// One client read: runs a ``ReadCoordinator`` and moves the client's clock past what the replicas
/// report.
///
/// Sans-I/O, like the coordinators: no clock, randomness or I/O inside. The driver performs the
/// returned actions and feeds every answer, failure, expired deadline and due speculation back through
/// ``handle(_:clock:)``.
///
/// Rules:
/// - The quorum rules are the ``ReadCoordinator``'s: ask R replicas (or all), replace a failed one at
///   once, fail fast when R answers can no longer arrive or at the deadline, speculate once.
/// - Every answer's `clock` is observed, and so is the `hlc` of the record it holds (so the newest
///   version's `hlc` is always observed), whether or not the answer still counts and even after
///   completion (see ``Event/observeClocks(_:)``). A write this client stamps after the read is
///   therefore ordered after every version the read saw.
/// - Read repair: when the answers disagree, the newest record (a tombstone included) is written back,
///   with its own version, to every replica that answered with an older version or nothing. In
///   `background` mode (the default) the repairs go out with the completion and nobody waits for
///   them; in `blocking` mode the read completes once every repair was acknowledged or failed, or at
///   the read's deadline, whichever comes first; `none` repairs nothing.
/// - It completes exactly once; later events return no actions.
public struct ReadOperation: Sendable {
    /// What a read does about replicas it finds stale.
    public enum Repair: Sendable, Hashable {
        case none
        /// Write the newest version back without waiting (the default).
        case background
        /// Write it back before answering.
        case blocking
    }

    public struct Configuration: Sendable, Hashable {
        /// The quorum of the read: replicas, R, ask-all, deadline and speculation delay.
        public var coordinator: ReadCoordinator.Configuration
        public var repair: Repair

        public init(coordinator: ReadCoordinator.Configuration, repair: Repair = .background) {
            self.coordinator = coordinator
            self.repair = repair
        }

        public init(
            replicas: [String],
            required: Int,
            askAll: Bool = false,
            deadline: Duration,
            speculationDelay: Duration? = nil,
            repair: Repair = .background
        ) {
            self.coordinator = ReadCoordinator.Configuration(
                replicas: replicas,
                required: required,
                askAll: askAll,
                deadline: deadline,
                speculationDelay: speculationDelay
            )
            self.repair = repair
        }
    }

    public enum Event: Sendable, Hashable {
        /// What the replica holds for the key (nil for nothing), and the replica's clock.
        case answered(String, StoredRecord?, clock: UInt64)
        /// Transport error, refusal, storage failure...: the replica gave no answer.
        case failed(String, reason: String)
        /// The deadline scheduled by ``ReadOperation/start(clock:)`` has passed.
        case deadlinePassed
        /// The speculation scheduled by ``ReadOperation/start(clock:)`` is due.
        case speculationDue
        /// A replica acknowledged a repair write (applied it, or already held something newer).
        case repaired(String)
        /// A repair write to this replica failed.
        case repairFailed(String, reason: String)
    }

    public enum Action: Sendable, Hashable {
        /// Send the `Get` to this replica.
        case send(to: String)
        /// Feed ``Event/deadlinePassed`` after this long.
        case scheduleDeadline(after: Duration)
        /// Feed ``Event/speculationDue`` after this long.
        case scheduleSpeculation(after: Duration)
        /// Write this record (with its own version) to this stale replica; feed back
        /// ``Event/repaired(_:)`` or ``Event/repairFailed(_:reason:)``.
        case repair(to: String, record: StoredRecord)
        /// The read is over; report this outcome to the caller.
        case complete(ReadCoordinator.ReadOutcome)
    }

    public let configuration: Configuration
    private var coordinator: ReadCoordinator
    private var started = false
    /// A blocking read's answer, held until its repairs are done.
    private var held: ReadCoordinator.ReadOutcome?
    private var repairsPending: Set<String> = []
    /// The outcome handed to the caller; nil until then.
    public private(set) var outcome: ReadCoordinator.ReadOutcome?
    /// The replicas a repair was sent to.
    public private(set) var repairs: [String] = []

    /// - Precondition: the ``ReadCoordinator``'s preconditions on the configuration.
    public init(configuration: Configuration) {
        self.configuration = configuration
        self.coordinator = ReadCoordinator(configuration: configuration.coordinator)
    }

    public var isComplete: Bool { outcome != nil }

    /// Asks the first replicas, schedules the deadline and maybe a speculation.
    ///
    /// A read stamps nothing; it takes the client's clock like ``WriteOperation`` does so that a
    /// driver treats both alike.
    public mutating func start(clock: inout ClientClock) -> [Action] {
        precondition(!started, "start(clock:) called twice")
        started = true
        let actions = coordinator.start().map(Action.init)
        assert(actions.allSatisfy { if case .complete = $0 { false } else { true } }, "completed at its start")
        return actions
    }

    /// Takes one event and returns what to do next: ask another replica, complete, or nothing.
    public mutating func handle(_ event: Event, clock: inout ClientClock) -> [Action] {
        precondition(started, "handle(_:clock:) called before start(clock:)")
        event.observeClocks(&clock)
        switch event {
        case .repaired(let node), .repairFailed(let node, _):
            repairsPending.remove(node)
            return releaseHeld(when: repairsPending.isEmpty)
        case .deadlinePassed where held != nil:
            // The answer stands; repairs still running finish in the background.
            return releaseHeld(when: true)
        default:
            break
        }
        guard let coordinatorEvent = event.coordinatorEvent else { return [] }
        let wasComplete = coordinator.isComplete
        var actions: [Action] = []
        for action in coordinator.handle(coordinatorEvent) {
            if case .complete(let result) = action {
                finish(result, into: &actions)
            } else {
                actions.append(Action(action))
            }
        }
        assert(!wasComplete || actions.isEmpty, "a completed read asked for more")
        if case .answered(let result) = coordinator.outcome, let newest = result.newest {
            assert(clock.last >= newest.version.hlc, "the newest version read was not observed")
        }
        return actions
    }

    /// The coordinator completed: repair what is stale, and complete now or after the repairs. Appends
    /// to `actions`, which is usually empty: a completion costs no array of its own.
    private mutating func finish(_ result: ReadCoordinator.ReadOutcome, into actions: inout [Action]) {
        guard case .answered(let answer) = result, let newest = answer.newest, !answer.stale.isEmpty,
            configuration.repair != .none
        else {
            outcome = result
            actions.append(.complete(result))
            return
        }
        repairs = answer.stale
        actions += answer.stale.map { Action.repair(to: $0, record: newest) }
        if configuration.repair == .background {
            outcome = result
            actions.append(.complete(result))
            return
        }
        held = result
        repairsPending = Set(answer.stale)
    }

    private mutating func releaseHeld(when ready: Bool) -> [Action] {
        guard ready, let result = held else { return [] }
        held = nil
        outcome = result
        return [.complete(result)]
    }
}

extension ReadOperation.Event {
    /// Moves `clock` past the clocks this event reports: an answer's `clock` and the `hlc` of the
    /// record it holds. ``ReadOperation/handle(_:clock:)`` does this for every event; a driver that
    /// drops answers arriving after completion may call it to keep their clocks.
    public func observeClocks(_ clock: inout ClientClock) {
        guard case .answered(_, let record, let remote) = self else { return }
        clock.observe(remote)
        if let record {
            clock.observe(record.version.hlc)
        }
    }

    fileprivate var coordinatorEvent: ReadCoordinator.Event? {
        switch self {
        case .answered(let node, let record, _): .answered(node, record)
        case .failed(let node, let reason): .failed(node, reason: reason)
        case .deadlinePassed: .deadlinePassed
        case .speculationDue: .speculationDue
        case .repaired, .repairFailed: nil
        }
    }
}

extension ReadOperation.Action {
    fileprivate init(_ action: ReadCoordinator.Action) {
        switch action {
        case .send(let node): self = .send(to: node)
        case .scheduleDeadline(let after): self = .scheduleDeadline(after: after)
        case .scheduleSpeculation(let after): self = .scheduleSpeculation(after: after)
        case .complete(let outcome): self = .complete(outcome)
        }
    }
}
