import KVCore
public import KVStorage

/// One round of hint replay for one target: which hints expire, which are sent, and which are deleted.
///
/// Sans-I/O, like the SDK's operations: the driver (`HintReplayer` over TLS, or the simulator) reads
/// a batch from the `HintStore` in version order, performs the returned actions and feeds back every
/// answer. Rules:
/// - Hints stored more than `windowMillis` ago are expired: deleted unsent and counted, whether or not
///   the target answers (anti-entropy must fix that replica).
/// - When the target is believed reachable, the live hints are sent as ordinary `Put`s in version
///   order, at most `concurrency` at a time; each is deleted only after the target acknowledged it
///   (applied, or already held something newer).
/// - The first failure stops the round from sending more (the target is down again): the rest wait for
///   the next round. The hints in flight still finish.
/// - Answers for hints not in flight (duplicates, or after a timeout already failed them) change
///   nothing.
public struct HintReplayRound: Sendable {
    public enum Action: Sendable, Hashable {
        /// Delete this hint: it is older than the hint window. Count it as expired.
        case expire(HintID, StoredHint)
        /// Send this hint to its target as a `Put`; feed back its answer.
        case send(HintID, StoredHint)
        /// Delete this hint: its target acknowledged it. Count it as replayed.
        case delete(HintID, StoredHint)
    }

    public enum Event: Sendable, Hashable {
        /// The target applied the hint's write or already held a newer version.
        case acknowledged(HintID)
        /// The target did not answer, refused, or its storage failed.
        case failed(HintID, reason: String)
    }

    private var expiring: [(id: HintID, hint: StoredHint)]
    private var waiting: [(id: HintID, hint: StoredHint)]
    private var inFlight: [HintID: StoredHint] = [:]
    private let concurrency: Int
    /// Set by the first failure: nothing more is sent.
    public private(set) var failure: String?
    public private(set) var replayed = 0
    public private(set) var expired = 0
    /// Hints sent so far.
    public private(set) var sent = 0

    /// Test-only (a planted bug for the simulator's mutation check): delete each hint as it is sent,
    /// before its target acknowledged it.
    package var deletesOnSend = false
    private var deletedEarly: Set<HintID> = []

    /// - Parameters:
    ///   - batch: the target's oldest hints, in version order (`HintStore.hints(for:limit:)`).
    ///   - nowMillis: the holder's wall clock, in milliseconds since the Unix epoch.
    ///   - window: the hint window: a hint stored longer ago than that expires.
    ///   - targetReachable: false while the target is known to be down: only expiry happens.
    ///   - concurrency: replays in flight at once, at least 1.
    public init(
        batch: [(id: HintID, hint: StoredHint)], nowMillis: UInt64, window: Duration, targetReachable: Bool,
        concurrency: Int
    ) {
        precondition(concurrency >= 1, "concurrency \(concurrency) is below 1")
        self.concurrency = concurrency
        var live: [(id: HintID, hint: StoredHint)] = []
        var expiring: [(id: HintID, hint: StoredHint)] = []
        let windowMillis = window.wholeMillisecondsClamped
        for entry in batch {
            if nowMillis > entry.hint.storedAtMillis && nowMillis - entry.hint.storedAtMillis > windowMillis {
                expiring.append(entry)
            } else {
                live.append(entry)
            }
        }
        self.expiring = expiring
        self.waiting = targetReachable ? live : []
    }

    /// True once nothing is in flight and nothing more will be sent.
    public var isFinished: Bool {
        inFlight.isEmpty && (waiting.isEmpty || failure != nil) && expiring.isEmpty
    }

    /// The expiries, and the first `concurrency` sends.
    public mutating func start() -> [Action] {
        let expiries = expiring.map { Action.expire($0.id, $0.hint) }
        expired = expiring.count
        expiring = []
        return expiries + sendMore()
    }

    public mutating func handle(_ event: Event) -> [Action] {
        switch event {
        case .acknowledged(let id):
            guard let hint = inFlight.removeValue(forKey: id) else { return [] }
            replayed += 1
            let deleted = deletedEarly.remove(id) != nil
            return (deleted ? [] : [.delete(id, hint)]) + sendMore()
        case .failed(let id, let reason):
            guard inFlight.removeValue(forKey: id) != nil else { return [] }
            if failure == nil { failure = reason }
            return []
        }
    }

    private mutating func sendMore() -> [Action] {
        guard failure == nil else { return [] }
        var actions: [Action] = []
        while inFlight.count < concurrency, !waiting.isEmpty {
            let next = waiting.removeFirst()
            inFlight[next.id] = next.hint
            sent += 1
            actions.append(.send(next.id, next.hint))
            if deletesOnSend {
                deletedEarly.insert(next.id)
                actions.append(.delete(next.id, next.hint))
            }
        }
        return actions
    }
}
