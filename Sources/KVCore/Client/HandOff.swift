/// Hinted handoff for one write attempt: which replicas get a hint, at which fallback, and when to
/// give up. Part of ``WriteOperation``; sans-I/O like it.
///
/// Rules:
/// - A replica is handed off once per attempt, when it fails or when it has not answered by the hint
///   delay (whichever comes first). A replica that applied or answered superseded before that is
///   never handed off: it holds this version or a newer one.
/// - A hand-off walks the fallbacks in order, those in the replica's zone first (when zones are
///   known): the first one is asked; a refusal or failure moves to the next; the first that stores
///   the hint ends it. When every fallback failed, the hand-off is exhausted: that replica can only be
///   fixed by read repair or anti-entropy.
/// - At most one hint per replica is in flight at a time.
struct HandOff: Sendable, Hashable {
    enum State: Sendable, Hashable {
        /// Asked the replica's `index`-th fallback (`fallbacks(for:)`); no answer yet.
        case asking(index: Int)
        /// The replica's `index`-th fallback stored the hint.
        case stored(index: Int)
        /// Every fallback refused or failed; these are their reasons.
        case exhausted(reasons: [String])
    }

    let fallbacks: [String]
    /// The write's replicas, which hold each other's hints when there are no fallbacks
    /// (`WriteOperation.Configuration.hintsToCoReplicas`); empty otherwise.
    let coReplicas: [String]
    /// Each replica's and fallback's zone; empty when the ring has no zones.
    let zones: [String: String]
    /// Each replica's walk (`fallbacks(for:)`), fixed when its hand-off begins.
    private var orders: [String: [String]] = [:]
    /// Why each fallback asked so far failed, per replica still being handed off.
    private var reasonsSoFar: [String: [String]] = [:]
    /// The replicas that answered this attempt (applied, superseded or failed).
    private(set) var answered: Set<String> = []
    private(set) var states: [String: State] = [:]

    init(fallbacks: [String], coReplicas: [String] = [], zones: [String: String] = [:]) {
        self.fallbacks = fallbacks
        self.coReplicas = fallbacks.isEmpty && coReplicas.count > 1 ? coReplicas : []
        self.zones = zones
    }

    init(_ configuration: WriteOperation.Configuration) {
        self.init(
            fallbacks: configuration.fallbacks,
            coReplicas: configuration.hintsToCoReplicas ? configuration.replicas : [], zones: configuration.zones)
    }

    /// The order `replica`'s hint walks the fallbacks in (the other replicas, without fallbacks):
    /// those of its zone first, then the others, each group in ring order. A hint then stays in the
    /// zone that lost the replica, where the replayed write costs no cross-zone traffic and a zone's
    /// outage does not also take its hints.
    func fallbacks(for replica: String) -> [String] {
        let holders = fallbacks.isEmpty ? coReplicas.filter { $0 != replica } : fallbacks
        guard let zone = zones[replica], !zone.isEmpty else { return holders }
        return holders.filter { zones[$0] == zone } + holders.filter { zones[$0] != zone }
    }

    var isEnabled: Bool { !fallbacks.isEmpty || !coReplicas.isEmpty }

    /// True when no hint is waiting for an answer.
    var isIdle: Bool {
        !states.values.contains { if case .asking = $0 { true } else { false } }
    }

    /// The fallback holding `replica`'s hint, for every replica whose hint was stored.
    var stored: [String: String] {
        states.compactMap { replica, state in
            if case .stored(let index) = state, let order = orders[replica] { (replica, order[index]) } else { nil }
        }.reduce(into: [:]) { $0[$1.0] = $1.1 }
    }

    /// Records an answer from `replica`: only while hand-offs are enabled, the only time the answers
    /// are asked about (the set would be allocated for every write to a single replica otherwise).
    mutating func answered(_ replica: String) {
        guard isEnabled else { return }
        answered.insert(replica)
    }

    /// Starts `replica`'s hand-off unless it already has one: returns the fallback to ask, or nil.
    mutating func begin(_ replica: String) -> String? {
        guard isEnabled, states[replica] == nil else { return nil }
        let order = fallbacks(for: replica)
        orders[replica] = order
        states[replica] = .asking(index: 0)
        return order[0]
    }

    /// `fallback` stored `replica`'s hint. Returns false when that answer was not expected (a
    /// duplicate, or from a fallback not asked): it changes nothing.
    mutating func stored(_ replica: String, at fallback: String) -> Bool {
        guard case .asking(let index) = states[replica], orders[replica]?[index] == fallback else { return false }
        states[replica] = .stored(index: index)
        return true
    }

    /// What happens after `fallback` refused or failed `replica`'s hint.
    enum Next: Sendable, Hashable {
        /// The answer was not expected: nothing changes.
        case ignored
        /// Ask this fallback next.
        case ask(String)
        /// No fallback is left; every one failed for these reasons.
        case exhausted(reasons: [String])
    }

    mutating func failed(_ replica: String, at fallback: String, reason: String) -> Next {
        guard case .asking(let index) = states[replica], let order = orders[replica], order[index] == fallback else {
            return .ignored
        }
        let reasons = reasonsSoFar[replica, default: []] + ["\(fallback): \(reason)"]
        if index + 1 < order.count {
            reasonsSoFar[replica] = reasons
            states[replica] = .asking(index: index + 1)
            return .ask(order[index + 1])
        }
        reasonsSoFar[replica] = nil
        states[replica] = .exhausted(reasons: reasons)
        return .exhausted(reasons: reasons)
    }
}
