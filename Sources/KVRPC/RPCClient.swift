public import KVCore
public import KVTLS
public import KVWire
public import NIOCore
public import NIOPosix
import Synchronization

/// How a client reconnects to a server that went away.
public struct ReconnectPolicy: Sendable, Hashable {
    /// The wait after the first failed attempt; doubled after each further failure.
    public var backoffInitial: Duration = .milliseconds(50)
    /// The longest wait between attempts.
    public var backoffMax: Duration = .seconds(5)
    /// The time one connection attempt (TCP, TLS and Hello) may take.
    public var connectTimeout: Duration = .seconds(3)

    public init() {}
}

/// A connection to one server that reconnects with backoff when it breaks.
///
/// While a server is in its backoff window, calls fail at once with the last connection error rather
/// than waiting: a node that refuses connections is skipped, not waited on. The backoff bounds how
/// often a dead server is dialled, not how long a live one is ignored: a probe (`send(_:timeout:probe:)`,
/// a failure detector's ping) dials through the window, and evidence that the server is back from
/// elsewhere (``resumeDialling()``: a connection from it, another connection's answer) ends the window,
/// so the next call dials instead of replaying an error remembered from while it was down.
public final class RPCClient: Sendable {
    private enum State {
        case idle(failures: Int, retryAt: ContinuousClock.Instant?, lastError: RPCError?)
        case connecting(EventLoopFuture<RPCConnection>)
        case connected(RPCConnection)
        case closed
    }

    public let host: String
    public let port: Int
    /// The node this client means to reach, when known: a server that is not it is refused.
    public let nodeID: String?
    private let tls: TLSContext
    private let hello: Hello
    private let policy: ReconnectPolicy
    private let group: any EventLoopGroup
    /// Where the connections' socket bytes are counted; nil: nowhere.
    private let traffic: PeerTraffic?
    /// The protocol versions this side speaks.
    public let versions: ProtocolRange
    /// Where the server's highest version is recorded at each handshake; nil: nowhere.
    private let peerVersions: PeerVersions?
    private let state = Mutex<State>(.idle(failures: 0, retryAt: nil, lastError: nil))
    /// The versions to announce first, when the server refused `versions` (a version-3 server) and
    /// the one-fewer retry was accepted: kept until a connection made with it ends, so the server
    /// costs one refused handshake per connection, not per attempt; a server upgraded meanwhile
    /// (its restart ended the connection) is offered every version again.
    private let fallback = Mutex<ProtocolRange?>(nil)

    public init(
        host: String,
        port: Int,
        tls: TLSContext,
        hello: Hello,
        nodeID: String? = nil,
        policy: ReconnectPolicy = ReconnectPolicy(),
        traffic: PeerTraffic? = nil,
        versions: ProtocolRange = WireProtocol.versions,
        peerVersions: PeerVersions? = nil,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.traffic = traffic
        self.versions = versions
        self.peerVersions = peerVersions
        self.host = host
        self.port = port
        self.nodeID = nodeID
        self.tls = tls
        self.hello = hello
        self.policy = policy
        self.group = group
    }

    /// `host:port`.
    public var address: String { "\(host):\(port)" }

    /// Sends one request, connecting first if needed. With `probe`, a server in its backoff window is
    /// dialled anyway (a request meant for this server alone, which has no other replica to go to).
    public func call(_ request: Message, timeout: Duration, probe: Bool = false) async throws -> Message {
        // A connection that closed is replaced by the next request (`connectionFuture`).
        let connection = try await connectionFuture(dialDuringBackoff: probe).get()
        return try await connection.call(request, timeout: timeout)
    }

    /// Sends one request without waiting: connects first if needed. The future fails at once when
    /// the server is in its backoff window, unless `probe` is set: a probe (a periodic ping) dials
    /// through the window, so a server that came back is found at the probe's pace.
    public func send(_ request: Message, timeout: Duration, probe: Bool = false) -> EventLoopFuture<Message> {
        send(timeout: timeout, probe: probe) { _ in request }
    }

    /// Sends the request `build` makes for the connection it goes on, connecting first if needed:
    /// for a caller whose request depends on the connection's protocol version (`RPCConnection.version`).
    public func send(
        timeout: Duration, probe: Bool = false, _ build: @escaping @Sendable (RPCConnection) -> Message
    ) -> EventLoopFuture<Message> {
        let answer = group.next().makePromise(of: Message.self)
        send(timeout: timeout, probe: probe, build) { answer.completeWith($0) }
        return answer.futureResult
    }

    /// `send(timeout:probe:_:then:)` of a request that does not depend on the connection: with no
    /// closure to make it on a connection that is up (this runs per request).
    public func send(
        _ request: Message, timeout: Duration, probe: Bool = false, then complete: @escaping RPCCompletion
    ) {
        send(.message(request), timeout: timeout, probe: probe, then: complete)
    }

    /// `send(timeout:probe:_:)` handing the answer to `complete` (on the connection's event loop, or
    /// at once when there is no connection to send on), with no future: the path of the SDK's requests.
    public func send(
        timeout: Duration, probe: Bool = false, _ build: @escaping @Sendable (RPCConnection) -> Message,
        then complete: @escaping RPCCompletion
    ) {
        send(.made(build), timeout: timeout, probe: probe, then: complete)
    }

    /// A request as a caller gives it: as it is, or made for the connection it goes on.
    private enum Request: Sendable {
        case message(Message)
        case made(@Sendable (RPCConnection) -> Message)

        func message(for connection: RPCConnection) -> Message {
            switch self {
            case .message(let message): message
            case .made(let build): build(connection)
            }
        }
    }

    private func send(_ request: Request, timeout: Duration, probe: Bool, then complete: @escaping RPCCompletion) {
        if let connection = activeConnection() {
            // The common case sends at once: no future to wait on for the connection.
            connection.send(request.message(for: connection), timeout: timeout, then: complete)
            return
        }
        connectionFuture(dialDuringBackoff: probe).whenComplete { connected in
            switch connected {
            case .success(let connection):
                connection.send(request.message(for: connection), timeout: timeout, then: complete)
            case .failure(let error): complete(.failure(error))
            }
        }
    }

    /// Sends the requests `build` makes for the connection they go on (a batch where its version has
    /// the batch message, each key's own request where it does not), connecting first if needed; the
    /// future completes with every answer, in order, once all are in. It fails only when there is no
    /// connection.
    public func send(
        timeout: Duration, all build: @escaping @Sendable (RPCConnection) -> [Message]
    ) -> EventLoopFuture<[Result<Message, any Error>]> {
        let connected = connectionFuture()
        return connected.flatMap { connection in
            let sent = build(connection).map { connection.send($0, timeout: timeout) }
            return EventLoopFuture.whenAllComplete(sent, on: connected.eventLoop)
        }
    }

    /// The connection requests can go on now, if there is one. A connection that closed is not: the
    /// next request connects anew (`connectionFuture`).
    private func activeConnection() -> RPCConnection? {
        state.withLock { state in
            if case .connected(let connection) = state, connection.isActive { return connection }
            return nil
        }
    }

    /// The current connection, made if there is none and the backoff window has passed.
    public func connection() async throws -> RPCConnection {
        try await connectionFuture().get()
    }

    private func connectionFuture(dialDuringBackoff: Bool = false) -> EventLoopFuture<RPCConnection> {
        enum Next {
            case use(RPCConnection)
            case wait(EventLoopFuture<RPCConnection>)
            case fail(RPCError)
        }
        let next: Next = state.withLock { state in
            switch state {
            case .connected(let connection) where connection.isActive:
                return .use(connection)
            case .connecting(let future):
                return .wait(future)
            case .closed:
                return .fail(.shutDown)
            case .idle(_, let retryAt?, let lastError?) where !dialDuringBackoff && ContinuousClock.now < retryAt:
                return .fail(lastError)
            case .connected, .idle:
                let failures: Int
                if case .idle(let count, _, _) = state {
                    failures = count
                } else {
                    failures = 0
                    fallback.withLock { $0 = nil }  // the connection ended
                }
                let promise = group.next().makePromise(of: RPCConnection.self)
                state = .connecting(promise.futureResult)
                let versions = fallback.withLock { $0 } ?? self.versions
                promise.completeWithTask { [self] in
                    do {
                        let connection = try await RPCConnection.negotiating(
                            host: host, port: port, tls: tls, hello: hello, versions: versions, nodeID: nodeID,
                            timeout: policy.connectTimeout, peerVersions: peerVersions, traffic: traffic,
                            group: group)
                        if connection.offered != self.versions {
                            fallback.withLock { $0 = connection.offered }
                        }
                        self.connected(connection)
                        return connection
                    } catch {
                        let rpcError = error as? RPCError ?? .connectFailed(address: address, reason: "\(error)")
                        self.failed(rpcError, failures: failures + 1)
                        throw rpcError
                    }
                }
                return .wait(promise.futureResult)
            }
        }
        switch next {
        case .use(let connection): return group.next().makeSucceededFuture(connection)
        case .wait(let future): return future
        case .fail(let error): return group.next().makeFailedFuture(error)
        }
    }

    /// Whether the server is in its backoff window after failed connection attempts.
    public var isBackingOff: Bool {
        state.withLock { state in
            if case .idle(_, let retryAt?, _) = state { return ContinuousClock.now < retryAt }
            return false
        }
    }

    /// Evidence that the server is up again (it connected to us, or answered elsewhere): ends the
    /// backoff window, so the next call dials at once. The failure count is kept, so a server that
    /// still cannot be reached backs off further.
    public func resumeDialling() {
        state.withLock { state in
            if case .idle(let failures, _?, _) = state {
                state = .idle(failures: failures, retryAt: nil, lastError: nil)
            }
        }
    }

    /// Closes the connection; later calls fail with `shutDown`.
    public func close() async {
        let previous = state.withLock { state in
            let previous = state
            state = .closed
            return previous
        }
        switch previous {
        case .connected(let connection): await connection.close()
        case .connecting(let future): try? await future.get().close()
        case .idle, .closed: break
        }
    }

    private func connected(_ connection: RPCConnection) {
        let keep = state.withLock { state in
            if case .closed = state { return false }
            state = .connected(connection)
            return true
        }
        if !keep {
            connection.startClosing()
        }
    }

    private func failed(_ error: RPCError, failures: Int) {
        let exponent = min(failures - 1, 16)
        let backoff = min(policy.backoffInitial * (1 << exponent), policy.backoffMax)
        state.withLock { state in
            if case .closed = state { return }
            state = .idle(failures: failures, retryAt: ContinuousClock.now + backoff, lastError: error)
        }
    }
}
