import KVCore
import KVTLS
import Logging
import Synchronization

/// The server-wide side of the connection limits (connections open, connections in TLS or `Hello`,
/// connections per certificate), and the one place where refusals are counted and logged.
///
/// Refusals are counted one by one (`RPCServerStatistics`) but logged at most once per `logInterval`,
/// as one line with what was refused since the last: a flood must not flood the log too.
final class ConnectionAdmission: Sendable {
    /// A certificate as the per-certificate cap counts it.
    struct Identity: Hashable, Sendable {
        var name: String
        var role: Role
    }

    private struct Counts {
        var open = 0
        var handshaking = 0
        var perIdentity: [Identity: Int] = [:]
    }

    private struct LogState {
        var last: ContinuousClock.Instant?
        var pending: [RPCRefusal: Int] = [:]
    }

    let statistics: RPCServerStatistics
    private let connectionsMax: Int
    private let connectionsPerIdentityMax: Int
    private let handshakesMax: Int
    private let counts = Mutex(Counts())
    private let logger: Logger
    private let logInterval: Duration
    private let logState = Mutex(LogState())

    init(
        configuration: RPCServerConfiguration, statistics: RPCServerStatistics, logger: Logger,
        logInterval: Duration = .seconds(10)
    ) {
        self.statistics = statistics
        self.connectionsMax = configuration.connectionsMax
        self.connectionsPerIdentityMax = configuration.connectionsPerIdentityMax
        self.handshakesMax = configuration.handshakesInFlightMax
        self.logger = logger
        self.logInterval = logInterval
    }

    /// Admits a new connection, which then counts as open and handshaking until its slot gives them
    /// back; nil (counted) when the server holds `connectionsMax` connections or `handshakesInFlightMax`
    /// handshakes already.
    func admitConnection() -> ConnectionSlot? {
        let refusal: RPCRefusal? = counts.withLock { counts in
            if counts.open >= connectionsMax { return .connections }
            if counts.handshaking >= handshakesMax { return .handshakes }
            counts.open += 1
            counts.handshaking += 1
            return nil
        }
        if let refusal {
            refused(refusal)
            return nil
        }
        return ConnectionSlot(admission: self)
    }

    /// Connections open now (admitted and not closed).
    var openCount: Int { counts.withLock { $0.open } }

    /// Counts and (rate-limited) logs one refusal.
    func refused(_ reason: RPCRefusal) {
        statistics.recordRefusal(reason)
        let now = ContinuousClock.now
        let line: [RPCRefusal: Int]? = logState.withLock { state in
            state.pending[reason, default: 0] += 1
            if let last = state.last, now - last < logInterval { return nil }
            state.last = now
            defer { state.pending = [:] }
            return state.pending
        }
        logger.debug("refused", metadata: ["rpc.refusal": "\(reason.rawValue)"])
        if let line {
            var metadata: Logger.Metadata = [:]
            for (reason, count) in line {
                metadata["rpc.refused.\(reason.rawValue)"] = "\(count)"
            }
            logger.info("refusing connections or requests to protect the node", metadata: metadata)
        }
    }

    fileprivate func endHandshake() {
        counts.withLock { $0.handshaking -= 1 }
    }

    fileprivate func claim(_ identity: Identity) -> Bool {
        counts.withLock { counts in
            let held = counts.perIdentity[identity, default: 0]
            guard held < connectionsPerIdentityMax else { return false }
            counts.perIdentity[identity] = held + 1
            return true
        }
    }

    fileprivate func close(identity: Identity?) {
        counts.withLock { counts in
            counts.open -= 1
            if let identity {
                let held = counts.perIdentity[identity, default: 0] - 1
                counts.perIdentity[identity] = held > 0 ? held : nil
            }
        }
    }
}

/// One admitted connection's hold on the server's counts: each part is given back exactly once,
/// whichever of the connection's task and its channel's close comes first.
final class ConnectionSlot: Sendable {
    private struct State {
        var handshaking = true
        var identity: ConnectionAdmission.Identity?
        var open = true
    }

    private let admission: ConnectionAdmission
    private let state = Mutex(State())

    fileprivate init(admission: ConnectionAdmission) {
        self.admission = admission
    }

    /// The handshake (TLS and `Hello`) is over, accepted or not: its slot goes back.
    func endHandshake() {
        let wasHandshaking = state.withLock { state in
            defer { state.handshaking = false }
            return state.handshaking
        }
        if wasHandshaking { admission.endHandshake() }
    }

    /// Counts the connection against its certificate's cap; false when the cap is reached (or the
    /// connection already closed), and then nothing is held.
    func claim(_ identity: ConnectionAdmission.Identity) -> Bool {
        state.withLock { state in
            guard state.open, state.identity == nil, admission.claim(identity) else { return false }
            state.identity = identity
            return true
        }
    }

    /// The connection closed: everything it held goes back.
    func close() {
        let held: (handshaking: Bool, identity: ConnectionAdmission.Identity?)? = state.withLock { state in
            guard state.open else { return nil }
            defer { state = State(handshaking: false, identity: nil, open: false) }
            return (state.handshaking, state.identity)
        }
        guard let held else { return }
        if held.handshaking { admission.endHandshake() }
        admission.close(identity: held.identity)
    }
}
