/// One client write (or delete) from its first stamp to its acknowledgement: runs one
/// ``WriteCoordinator`` per attempt, re-stamping past a newer version and retrying when a replica
/// answers superseded, as DESIGN.md's data-model rule says.
///
/// Sans-I/O, like the coordinators: no clock, randomness or I/O inside. The driver (`KVClient` over
/// TLS, or the simulator) owns the ``ClientClock`` shared by all operations of one client and the wall
/// clock, performs the returned actions, and feeds every reply and expired deadline back through
/// ``handle(_:clock:wallMillis:)``, tagged with the attempt it answers.
///
/// Rules:
/// - ``start(clock:wallMillis:)`` begins attempt 1: it stamps a version from the clock and sends it to
///   every replica, with one deadline for the attempt.
/// - Every reply's `clock` is observed, and so is the `current` version of a `superseded` reply,
///   whatever attempt the reply answers and even after completion: observing only ever moves the clock
///   forward, so it is always safe (see ``Event/observeClocks(_:)``).
/// - A reply or deadline for an earlier attempt is otherwise ignored: a late `applied` acknowledged an
///   older version, which must not count toward this one.
/// - Within an attempt, the ``WriteCoordinator`` decides: acknowledged at the `required`-th
///   `applied`, failed as soon as the quorum is out of reach or at the attempt's deadline.
/// - When the attempt completes superseded by `current` and fewer than `supersededRetriesMax`
///   retries were made, the next attempt starts at once: the clock observes `current.hlc` and stamps a
///   new version, which is therefore greater than `current` and than every earlier stamp, and goes to
///   every replica with a fresh deadline (so a write may take up to
///   `(supersededRetriesMax + 1) × deadline`).
/// - When the attempt is superseded and `supersededRetriesMax` retries were already made, the write
///   completes as ``WriteResult/conflict(attempts:)`` with `supersededRetriesMax + 1` attempts.
/// - It completes exactly once. Replies of the current attempt after completion still update
///   ``unacknowledged`` and may still hand a write off (below); nothing else happens after completion.
///
/// Hinted handoff (when `fallbacks` is not empty), for the current attempt only:
/// - A replica that fails, or has not answered `hintDelay` after the attempt began, is handed off:
///   the write goes as a `Hint` to the first fallback, then to the next when one refuses or fails,
///   until one stores it or none is left (``HandOff`` has the rules). This goes on after the write
///   completed, until ``isSettled``; the driver keeps feeding events until then (or gives up: a lost
///   hint only leaves the replica to read repair and anti-entropy).
/// - A replica the failure detector suspects (`suspected`) is handed off at the start of each
///   attempt, without waiting for `hintDelay`; the write is still sent to it as well.
/// - Strict quorum (default): hints never count toward `required`. The write is acknowledged by
///   `required` real applies, and fails as before.
/// - Sloppy quorum (`hintsCountTowardQuorum`): a stored hint counts as its replica's apply, and a
///   failed replica counts as failed only once every fallback failed its hint too. More writes
///   succeed while replicas are down, but an acknowledged write may then sit on fewer than `required`
///   real replicas until the hints are replayed: a quorum read can miss it meanwhile (R + W > N no
///   longer guarantees reading it), and it is lost if the fallback's disk is.
public struct WriteOperation: Sendable {
    public struct Configuration: Sendable, Hashable {
        /// The preference list: every replica the write goes to, in ring order, without duplicates.
        public var replicas: [String]
        /// W: how many replicas must apply the write, in `1...replicas.count`.
        public var required: Int
        /// How long each attempt may take.
        public var deadline: Duration
        /// How many times a superseded write is re-stamped and sent again before it gives up.
        public var supersededRetriesMax: Int

        /// Nodes outside the preference list that may hold hints for replicas that do not
        /// acknowledge, best first (``Ring/fallbacks(for:)``). Empty: no hinted handoff, unless
        /// `hintsToCoReplicas`.
        public var fallbacks: [String]
        /// With no fallback (N replicas on N nodes): a replica's hint goes to the other replicas, in
        /// preference order, as a Cassandra coordinator keeps hints itself. Without it a write a
        /// replica missed was left to read repair and anti-entropy, unseen: no hint queued, the
        /// cluster "healthy". Such hints never count toward `required` (they add no copy).
        public var hintsToCoReplicas = false
        /// The zone of each replica and fallback, when the ring's nodes have zones: a replica's hint
        /// goes to the fallbacks of its own zone first. Empty: fallbacks in ring order for every replica.
        public var zones: [String: String] = [:]
        /// Sloppy quorum: a hint stored for a replica counts toward `required` as that replica's apply.
        public var hintsCountTowardQuorum: Bool
        /// How long a replica may stay silent before its write is handed off; nil: half the deadline.
        public var hintDelay: Duration?
        /// Replicas the failure detector suspects: handed off at once.
        public var suspected: Set<String>
        /// During a membership change: the current and next preference lists, each with its own W
        /// (see `WriteCoordinator.Configuration.quorums`); `replicas` is then their union.
        public var quorums: [WriteCoordinator.Quorum] = []

        /// Test-only: see `WriteCoordinator.Configuration.acknowledgesEarly`.
        package var acknowledgesEarly = false

        public init(
            replicas: [String], required: Int, deadline: Duration, supersededRetriesMax: Int,
            fallbacks: [String] = [], hintsCountTowardQuorum: Bool = false, hintDelay: Duration? = nil,
            suspected: Set<String> = []
        ) {
            self.suspected = suspected
            self.replicas = replicas
            self.required = required
            self.deadline = deadline
            self.supersededRetriesMax = supersededRetriesMax
            self.fallbacks = fallbacks
            self.hintsCountTowardQuorum = hintsCountTowardQuorum
            self.hintDelay = hintDelay
        }

        /// When silent replicas are handed off.
        var effectiveHintDelay: Duration { hintDelay ?? deadline / 2 }
    }

    public enum Event: Sendable, Hashable {
        /// The replica stored the version of `attempt` (or already held exactly it); `clock` is the
        /// replica's clock.
        case applied(String, attempt: Int, clock: UInt64)
        /// The replica holds a newer version, `current`, and stored nothing.
        case superseded(String, attempt: Int, current: Version, clock: UInt64)
        /// Transport error, refusal, storage failure...: the replica did not store the write.
        case failed(String, attempt: Int, reason: String)
        /// The deadline scheduled for `attempt` has passed.
        case deadlinePassed(attempt: Int)
        /// The fallback (first) stored the hint for the replica (`for`); `clock` is the fallback's clock.
        case hintStored(String, for: String, attempt: Int, clock: UInt64)
        /// The fallback (first) refused the hint for the replica (`for`), or could not be reached.
        case hintFailed(String, for: String, attempt: Int, reason: String)
        /// The hint delay scheduled for `attempt` has passed: hand off the replicas still silent.
        case hintDue(attempt: Int)
    }

    public enum Action: Sendable, Hashable {
        /// Send the `Put` with this version to this replica; tag its reply with `attempt`.
        case send(to: String, version: Version, attempt: Int)
        /// Feed ``Event/deadlinePassed(attempt:)`` after this long.
        case scheduleDeadline(after: Duration, attempt: Int)
        /// Send a `Hint` to the fallback (`to`) holding this version for the replica (`for`); tag its
        /// reply with `attempt`.
        case hint(to: String, for: String, version: Version, attempt: Int)
        /// Feed ``Event/hintDue(attempt:)`` after this long.
        case scheduleHintDue(after: Duration, attempt: Int)
        /// The write is over; report this result to the caller.
        case complete(WriteResult)
    }

    public enum WriteResult: Sendable, Hashable {
        /// `required` replicas applied `version`; these ones, in preference-list order.
        case acknowledged(Version, by: [String])
        /// The attempt's quorum was out of reach or its deadline passed.
        case failed(QuorumError)
        /// Every one of `attempts` attempts was superseded by a newer version: other writers keep
        /// writing this key faster than this one can catch up.
        case conflict(attempts: Int)
        /// A replica holds `current`, further ahead of this client's wall clock than its
        /// `ClientClock.Bound` lets it follow: no stamp of this client can pass it (a clock far
        /// behind the cluster's, or a faulty replica).
        case beyondClockBound(current: Version)
    }

    public let configuration: Configuration
    /// The current attempt, from 1; 0 before ``start(clock:wallMillis:)``.
    public private(set) var attempt = 0
    /// The version of the current attempt; nil before ``start(clock:wallMillis:)``.
    public private(set) var version: Version?
    /// How the write ended; nil until it has.
    public private(set) var result: WriteResult?
    private var coordinator: WriteCoordinator?
    private var handOff: HandOff
    /// Sloppy quorum: why each replica failed whose failure waits for its hand-off to be exhausted.
    private var heldFailures: [String: String] = [:]
    private var hintDuePassed = false
    /// The current attempt's deadline passed.
    private var deadlinePassed = false

    /// - Precondition: the coordinator's preconditions (replicas not empty and distinct, `required` in
    ///   `1...replicas.count`, positive deadline), `supersededRetriesMax >= 0`, and fallbacks distinct and
    ///   outside the preference list. These are programmer errors: resolve a user's consistency level
    ///   first.
    public init(configuration: Configuration) {
        precondition(
            !configuration.hintsToCoReplicas
                || (configuration.fallbacks.isEmpty && !configuration.hintsCountTowardQuorum),
            "hints to co-replicas are for writes without fallbacks, and never count toward the quorum")
        precondition(
            configuration.supersededRetriesMax >= 0,
            "supersededRetriesMax \(configuration.supersededRetriesMax) is negative"
        )
        precondition(
            configuration.fallbacks.hasDistinctElements
                && configuration.fallbacks.isDisjoint(with: configuration.replicas),
            "fallbacks \(configuration.fallbacks) repeat or overlap the replicas \(configuration.replicas)"
        )
        precondition(configuration.effectiveHintDelay > .zero, "hint delay is not positive")
        self.handOff = HandOff(configuration)
        // Checks the coordinator's preconditions now rather than at the first attempt.
        WriteCoordinator.checkPreconditions(Self.coordinatorConfiguration(configuration))
        self.configuration = configuration
    }

    public var isComplete: Bool { result != nil }

    /// Complete, and no hand-off is left to do: every hint sent was answered, and every replica of the
    /// last attempt answered or was handed off at the hint delay. Without fallbacks (N replicas on N
    /// nodes), once every replica of the last attempt answered or its deadline passed: a client that
    /// closes as soon as W replicas acknowledged (a one-shot `kvctl put`) must not drop the write on
    /// its way to the others, since no hint would bring it to them. The driver may stop feeding events.
    public var isSettled: Bool {
        guard result != nil else { return false }
        guard handOff.isEnabled else { return deadlinePassed || (coordinator?.hasEveryAnswer ?? true) }
        return handOff.isIdle && (hintDuePassed || handOff.answered.count == configuration.replicas.count)
    }

    /// The fallback holding each replica's hint, for the replicas of the current attempt whose hint was
    /// stored.
    public var hinted: [String: String] { handOff.stored }

    /// Replicas of the current attempt that did not apply it — failed or never answered — in
    /// preference-list order (hinted-handoff candidates later). Before the start, every replica.
    public var unacknowledged: [String] {
        coordinator?.unacknowledged ?? configuration.replicas
    }

    /// Stamps the first version and sends it to every replica.
    ///
    /// - Parameters:
    ///   - clock: the client's clock, shared by all its operations.
    ///   - wallMillis: the wall clock now, in milliseconds since the Unix epoch.
    public mutating func start(clock: inout ClientClock, wallMillis: UInt64) -> [Action] {
        precondition(attempt == 0, "start(clock:wallMillis:) called twice")
        defer { assertInvariants(clock) }
        return beginAttempt(clock: &clock, wallMillis: wallMillis)
    }

    /// Takes one event and returns what to do next: nothing, a new attempt, or the completion.
    ///
    /// - Parameter wallMillis: the wall clock now; used only when a new attempt is stamped.
    /// - Precondition: started, and `event` answers an attempt that was begun.
    public mutating func handle(_ event: Event, clock: inout ClientClock, wallMillis: UInt64) -> [Action] {
        precondition(attempt > 0, "handle(_:clock:wallMillis:) called before start(clock:wallMillis:)")
        precondition((1...attempt).contains(event.attempt), "event for attempt \(event.attempt) of \(attempt)")
        defer { assertInvariants(clock) }
        event.observeClocks(&clock)
        guard event.attempt == attempt, coordinator != nil else { return [] }
        var next: [Action] = []
        // After completion the coordinator still records replies, so `unacknowledged` stays exact.
        // It is changed where it is kept: a copy would copy its replicas' states at every reply.
        var actions: [WriteCoordinator.Action] = []
        if let coordinatorEvent = handOffStep(event, sending: &next) {
            actions = coordinator!.handle(coordinatorEvent)
        }
        guard result == nil else {
            assert(actions.isEmpty, "a completed write coordinator asked for \(actions)")
            return next
        }
        for action in actions {
            switch action {
            case .send, .scheduleDeadline:
                preconditionFailure("a started write coordinator asked for \(action)")
            case .complete(.acknowledged(let nodes)):
                next.append(complete(.acknowledged(version!, by: nodes)))
            case .complete(.failed(let error)):
                next.append(complete(.failed(error)))
            case .complete(.superseded(let current)):
                // A correct replica reports a newer version; a faulty one cannot break the rule either,
                // because the next stamp is past both `current` and every earlier stamp.
                guard attempt <= configuration.supersededRetriesMax else {
                    next.append(complete(.conflict(attempts: attempt)))
                    break
                }
                clock.observe(current.hlc)
                guard clock.last >= current.hlc else {
                    next.append(complete(.beyondClockBound(current: current)))
                    break
                }
                next += beginAttempt(clock: &clock, wallMillis: wallMillis)
                assert(version! > current)
            }
        }
        return next
    }

    private mutating func beginAttempt(clock: inout ClientClock, wallMillis: UInt64) -> [Action] {
        let stamped = clock.stamp(wallMillis: wallMillis)
        if let version {
            assert(stamped > version, "attempt \(attempt + 1) stamped \(stamped), not after \(version)")
        }
        attempt += 1
        version = stamped
        handOff = HandOff(configuration)
        heldFailures = [:]
        hintDuePassed = false
        deadlinePassed = false
        var coordinator = WriteCoordinator(configuration: Self.coordinatorConfiguration(configuration))
        // Room for every send, the deadline, the hint delay and a hint per suspected replica: one
        // allocation (this runs per write).
        var actions: [Action] = []
        actions.reserveCapacity(2 * configuration.replicas.count + 2)
        for action in coordinator.start() {
            switch action {
            case .send(let node):
                actions.append(.send(to: node, version: stamped, attempt: attempt))
            case .scheduleDeadline(let after):
                actions.append(.scheduleDeadline(after: after, attempt: attempt))
            case .complete:
                preconditionFailure("a write coordinator completed at its start")
            }
        }
        if handOff.isEnabled {
            actions.append(.scheduleHintDue(after: configuration.effectiveHintDelay, attempt: attempt))
            for replica in configuration.replicas where configuration.suspected.contains(replica) {
                if let fallback = handOff.begin(replica) {
                    actions.append(.hint(to: fallback, for: replica, version: stamped, attempt: attempt))
                }
            }
        }
        self.coordinator = coordinator
        return actions
    }

    /// Applies the hand-off rules to one event of the current attempt: appends the hints to send to
    /// `sending`, and returns what the quorum coordinator must learn from it, if anything.
    private mutating func handOffStep(_ event: Event, sending: inout [Action]) -> WriteCoordinator.Event? {
        let sloppy = configuration.hintsCountTowardQuorum
        func handOff(_ replica: String) {
            if let fallback = self.handOff.begin(replica) {
                sending.append(.hint(to: fallback, for: replica, version: version!, attempt: attempt))
            }
        }
        switch event {
        case .applied(let node, _, _):
            handOffAnswered(node)
            return .applied(node)
        case .superseded(let node, _, let current, _):
            handOffAnswered(node)
            return .superseded(node, current: current)
        case .failed(let node, _, let reason):
            guard configuration.replicas.contains(node), !self.handOff.answered.contains(node) else {
                return .failed(node, reason: reason)
            }
            handOffAnswered(node)
            handOff(node)
            guard sloppy else { return .failed(node, reason: reason) }
            switch self.handOff.states[node] {
            case .asking:
                heldFailures[node] = reason
                return nil
            case .stored:
                return nil
            case .exhausted(let reasons):
                return .failed(node, reason: Self.handOffFailure(reason, reasons))
            case nil:
                return .failed(node, reason: reason)
            }
        case .deadlinePassed:
            deadlinePassed = true
            return .deadlinePassed
        case .hintDue:
            hintDuePassed = true
            for replica in configuration.replicas where !self.handOff.answered.contains(replica) {
                handOff(replica)
            }
            return nil
        case .hintStored(let fallback, let replica, _, _):
            guard self.handOff.stored(replica, at: fallback), sloppy else { return nil }
            heldFailures[replica] = nil
            return .applied(replica)
        case .hintFailed(let fallback, let replica, _, let reason):
            switch self.handOff.failed(replica, at: fallback, reason: reason) {
            case .ignored:
                return nil
            case .ask(let next):
                sending.append(.hint(to: next, for: replica, version: version!, attempt: attempt))
                return nil
            case .exhausted(let reasons):
                guard sloppy, let held = heldFailures.removeValue(forKey: replica) else { return nil }
                return .failed(replica, reason: Self.handOffFailure(held, reasons))
            }
        }
    }

    private mutating func handOffAnswered(_ node: String) {
        if configuration.replicas.contains(node) {
            handOff.answered(node)
        }
    }

    private static func handOffFailure(_ reason: String, _ hintReasons: [String]) -> String {
        "\(reason); no fallback stored its hint (\(hintReasons.joined(separator: "; ")))"
    }

    private mutating func complete(_ result: WriteResult) -> Action {
        precondition(self.result == nil, "a write completes once")
        self.result = result
        return .complete(result)
    }

    private static func coordinatorConfiguration(_ configuration: Configuration) -> WriteCoordinator.Configuration {
        var coordinator = WriteCoordinator.Configuration(
            replicas: configuration.replicas,
            required: configuration.required,
            deadline: configuration.deadline
        )
        coordinator.acknowledgesEarly = configuration.acknowledgesEarly
        coordinator.quorums = configuration.quorums
        return coordinator
    }

    private func assertInvariants(_ clock: ClientClock) {
        assert((1...configuration.supersededRetriesMax + 1).contains(attempt), "attempt \(attempt) out of bounds")
        guard let version, let coordinator else {
            assertionFailure("a started write has no version or coordinator")
            return
        }
        assert(version.writer == clock.writer, "version \(version) not stamped by writer \(clock.writer)")
        assert(clock.last >= version.hlc, "the clock fell behind the version it stamped")
        switch (result, coordinator.outcome) {
        case (nil, nil):
            break
        case (.acknowledged(let acknowledged, let by), .acknowledged(let nodes)):
            assert(acknowledged == version && by == nodes)
        case (.failed(let error), .failed(let coordinatorError)):
            assert(error == coordinatorError)
        case (.conflict(let attempts), .superseded):
            assert(attempts == attempt && attempt == configuration.supersededRetriesMax + 1)
        case (.beyondClockBound(let current), .superseded(current: let reported)):
            assert(current == reported && clock.last < current.hlc)
        default:
            assertionFailure("write result \(String(describing: result)) does not match attempt \(attempt)'s outcome")
        }
    }
}

extension WriteOperation.Event {
    /// The attempt this event answers.
    public var attempt: Int {
        switch self {
        case .applied(_, let attempt, _), .superseded(_, let attempt, _, _), .failed(_, let attempt, _),
            .deadlinePassed(let attempt), .hintStored(_, _, let attempt, _), .hintFailed(_, _, let attempt, _),
            .hintDue(let attempt):
            attempt
        }
    }

    /// Moves `clock` past the clocks this event reports: a reply's `clock`, and a superseded reply's
    /// `current.hlc`. ``WriteOperation/handle(_:clock:wallMillis:)`` does this for every event; a
    /// driver that drops replies arriving after completion may call it to keep their clocks.
    public func observeClocks(_ clock: inout ClientClock) {
        switch self {
        case .applied(_, _, let remote), .hintStored(_, _, _, let remote):
            clock.observe(remote)
        case .superseded(_, _, let current, let remote):
            clock.observe(remote)
            clock.observe(current.hlc)
        case .failed, .deadlinePassed, .hintFailed, .hintDue:
            break
        }
    }
}
