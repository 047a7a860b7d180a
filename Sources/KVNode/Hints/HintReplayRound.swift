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
/// - Of the live hints of one key in the batch, only the newest is sent: once the target
///   acknowledged it, it holds that version or a newer one, which supersedes the older hints' writes
///   (the replica keeps the newest version), so they are deleted with it, unsent. A key written many
///   times while its replica was down is replayed once a batch, not once a write.
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
        /// Delete this hint: its target acknowledged it, or a newer hint of its key. Count it as replayed.
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
    /// Per hint to send, the older live hints of its key in the batch: deleted once it is acknowledged.
    private var covered: [HintID: [(id: HintID, hint: StoredHint)]]
    private var inFlight: [HintID: StoredHint] = [:]
    private let concurrency: Int
    /// Set by the first failure: nothing more is sent.
    public private(set) var failure: String?
    /// Hints deleted because the target acknowledged them or a newer hint of their key.
    public private(set) var replayed = 0
    /// Of `replayed`, those deleted unsent, covered by a newer hint of their key.
    public private(set) var coalesced = 0
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
        (self.waiting, self.covered) = targetReachable ? Self.newestOfEachKey(live) : ([], [:])
    }

    private struct HintedKey: Hashable {
        let keyspace: UInt32
        let key: [UInt8]
    }

    /// The newest hint of each key, in the batch's order, and the older hints each one covers.
    private static func newestOfEachKey(_ live: [(id: HintID, hint: StoredHint)]) -> (
        newest: [(id: HintID, hint: StoredHint)], covered: [HintID: [(id: HintID, hint: StoredHint)]]
    ) {
        var newestOf: [HintedKey: (id: HintID, hint: StoredHint)] = [:]
        for entry in live {
            let key = HintedKey(keyspace: entry.hint.keyspace, key: entry.hint.key)
            if let newest = newestOf[key], newest.hint.record.version >= entry.hint.record.version { continue }
            newestOf[key] = entry
        }
        var newest: [(id: HintID, hint: StoredHint)] = []
        var covered: [HintID: [(id: HintID, hint: StoredHint)]] = [:]
        for entry in live {
            // Every key has its newest: the loop above saw each entry.
            guard let keyNewest = newestOf[HintedKey(keyspace: entry.hint.keyspace, key: entry.hint.key)] else {
                continue
            }
            if keyNewest.id == entry.id {
                newest.append(entry)
            } else {
                covered[keyNewest.id, default: []].append(entry)
            }
        }
        return (newest, covered)
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
            let older = covered.removeValue(forKey: id) ?? []
            replayed += 1 + older.count
            coalesced += older.count
            let deleted = deletedEarly.remove(id) != nil
            return (deleted ? [] : [.delete(id, hint)]) + older.map { .delete($0.id, $0.hint) } + sendMore()
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
