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
/// - It completes exactly once; later events return no actions. Replies of the current attempt after
///   completion still update ``unacknowledged``.
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

        /// Test-only: see `WriteCoordinator.Configuration.acknowledgesEarly`.
        package var acknowledgesEarly = false

        public init(replicas: [String], required: Int, deadline: Duration, supersededRetriesMax: Int) {
            self.replicas = replicas
            self.required = required
            self.deadline = deadline
            self.supersededRetriesMax = supersededRetriesMax
        }
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
    }

    public enum Action: Sendable, Hashable {
        /// Send the `Put` with this version to this replica; tag its reply with `attempt`.
        case send(to: String, version: Version, attempt: Int)
        /// Feed ``Event/deadlinePassed(attempt:)`` after this long.
        case scheduleDeadline(after: Duration, attempt: Int)
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
    }

    public let configuration: Configuration
    /// The current attempt, from 1; 0 before ``start(clock:wallMillis:)``.
    public private(set) var attempt = 0
    /// The version of the current attempt; nil before ``start(clock:wallMillis:)``.
    public private(set) var version: Version?
    /// How the write ended; nil until it has.
    public private(set) var result: WriteResult?
    private var coordinator: WriteCoordinator?

    /// - Precondition: the coordinator's preconditions (replicas not empty and distinct, `required` in
    ///   `1...replicas.count`, positive deadline) and `supersededRetriesMax >= 0`. These are programmer
    ///   errors: resolve a user's consistency level first.
    public init(configuration: Configuration) {
        precondition(
            configuration.supersededRetriesMax >= 0,
            "supersededRetriesMax \(configuration.supersededRetriesMax) is negative"
        )
        // Checks the coordinator's preconditions now rather than at the first attempt.
        _ = WriteCoordinator(configuration: Self.coordinatorConfiguration(configuration))
        self.configuration = configuration
    }

    public var isComplete: Bool { result != nil }

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
        guard event.attempt == attempt, var coordinator else { return [] }
        // After completion the coordinator still records replies, so `unacknowledged` stays exact.
        let actions = coordinator.handle(event.coordinatorEvent)
        self.coordinator = coordinator
        guard result == nil else {
            assert(actions.isEmpty, "a completed write coordinator asked for \(actions)")
            return []
        }
        var next: [Action] = []
        for action in actions {
            switch action {
            case .send, .scheduleDeadline:
                preconditionFailure("a started write coordinator asked for \(action)")
            case .complete(.acknowledged(let nodes)):
                next += complete(.acknowledged(version!, by: nodes))
            case .complete(.failed(let error)):
                next += complete(.failed(error))
            case .complete(.superseded(let current)):
                // A correct replica reports a newer version; a faulty one cannot break the rule either,
                // because the next stamp is past both `current` and every earlier stamp.
                guard attempt <= configuration.supersededRetriesMax else {
                    next += complete(.conflict(attempts: attempt))
                    break
                }
                clock.observe(current.hlc)
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
        var coordinator = WriteCoordinator(configuration: Self.coordinatorConfiguration(configuration))
        let actions = coordinator.start().map { action -> Action in
            switch action {
            case .send(let node):
                return .send(to: node, version: stamped, attempt: attempt)
            case .scheduleDeadline(let after):
                return .scheduleDeadline(after: after, attempt: attempt)
            case .complete:
                preconditionFailure("a write coordinator completed at its start")
            }
        }
        self.coordinator = coordinator
        return actions
    }

    private mutating func complete(_ result: WriteResult) -> [Action] {
        precondition(self.result == nil, "a write completes once")
        self.result = result
        return [.complete(result)]
    }

    private static func coordinatorConfiguration(_ configuration: Configuration) -> WriteCoordinator.Configuration {
        var coordinator = WriteCoordinator.Configuration(
            replicas: configuration.replicas,
            required: configuration.required,
            deadline: configuration.deadline
        )
        coordinator.acknowledgesEarly = configuration.acknowledgesEarly
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
            .deadlinePassed(let attempt):
            attempt
        }
    }

    /// Moves `clock` past the clocks this event reports: a reply's `clock`, and a superseded reply's
    /// `current.hlc`. ``WriteOperation/handle(_:clock:wallMillis:)`` does this for every event; a
    /// driver that drops replies arriving after completion may call it to keep their clocks.
    public func observeClocks(_ clock: inout ClientClock) {
        switch self {
        case .applied(_, _, let remote):
            clock.observe(remote)
        case .superseded(_, _, let current, let remote):
            clock.observe(remote)
            clock.observe(current.hlc)
        case .failed, .deadlinePassed:
            break
        }
    }

    fileprivate var coordinatorEvent: WriteCoordinator.Event {
        switch self {
        case .applied(let node, _, _): .applied(node)
        case .superseded(let node, _, let current, _): .superseded(node, current: current)
        case .failed(let node, _, let reason): .failed(node, reason: reason)
        case .deadlinePassed: .deadlinePassed
        }
    }
}
