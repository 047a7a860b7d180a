public import KVCore
public import KVTLS
public import KVWire
public import Logging
public import NIOCore
public import NIOPosix
import Synchronization

/// Answers the requests of one kind of server (a replica node, or a test double).
public protocol RPCService: Sendable {
    /// Answers one request that the caller's role is permitted to send.
    ///
    /// Throw `RPCError.remote(code, message:)` to answer with that `Error`; any other thrown error is
    /// answered as `internal` with its description.
    func handle(_ request: Message, from peer: PeerIdentity) async throws -> Message

    /// The cluster-map epoch and hybrid-logical-clock timestamp to put in a `HelloAck`.
    func handshakeState() -> (epoch: UInt64, clock: UInt64)

    /// Whether `answerWithoutTask(_:from:reply:)` may take requests of `type` (asked before one is
    /// decoded). No default: a service that wraps another must pass both on, or its requests would
    /// silently lose the event-loop path.
    func mayAnswerWithoutTask(_ type: MessageType) -> Bool

    /// Starts answering `request` on the connection's event loop, without a task: when it takes the
    /// request (true), it calls `reply` exactly once with what `handle(_:from:)` would answer — at
    /// once, or later from another thread (a write's group commit). False: it did not take it, and
    /// `handle(_:from:)` gets the request. It never blocks: no disk read, no lock held for long, no
    /// other node.
    func answerWithoutTask(
        _ request: Message, from peer: PeerIdentity,
        reply: @escaping @Sendable (Result<Message, any Error>) -> Void
    ) -> Bool
}

/// Where and how an `RPCServer` listens.
public struct RPCServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Connections whose `Hello` names another cluster are refused.
    public var clusterID: String
    /// This server's id, sent in `HelloAck`.
    public var nodeID: String
    public var frameBytesMax: Int = Limits.frameBytesMax
    public var requestsInFlightMax: Int = Limits.requestsInFlightPerConnectionMax
    /// A connection that has not completed TLS and `Hello` within this time is closed.
    public var handshakeTimeout: Duration = .seconds(10)
    /// Connections held open at once, over all peers; a new one past it is closed at once, before
    /// TLS (counted as `connections`).
    public var connectionsMax: Int = Limits.connectionsMax
    /// Connections held open at once with one certificate (its name and role); past it the `Hello`
    /// is answered `overloaded` and the connection closed (`per_identity`), so that one stolen or
    /// runaway certificate cannot take every slot.
    public var connectionsPerIdentityMax: Int = Limits.connectionsPerIdentityMax
    /// Connections in TLS or `Hello` at once; a new one past it is closed at once (`handshakes`), so
    /// a flood of half-open sockets costs no key exchange. Together with `handshakeTimeout` it bounds
    /// how long such a flood can keep honest clients out.
    public var handshakesInFlightMax: Int = Limits.handshakesInFlightMax
    /// A connection with no request in flight and no frame received for this long is closed (`idle`).
    /// Timed from its `Hello` on (the handshake has `handshakeTimeout`). Clients re-dial on their next
    /// call (`RPCClient` sees the closed connection); nodes ping each other every second, so their
    /// links stay up. A request written in the instant the server closes fails as `connectionClosed`
    /// (unread, so safe to retry), which the SDK treats as an unavailable replica.
    public var idleTimeout: Duration = .seconds(300)
    /// Once the first byte of a frame has arrived, the whole frame must arrive within this time, or
    /// the connection is closed (`frame_deadline`): a peer that trickles a frame (slowloris) cannot
    /// hold a connection and its buffer for ever.
    public var frameReadDeadline: Duration = .seconds(30)
    /// A connection whose peer stops taking its answers is closed (`answers_unread`) once, for this
    /// long, its channel has not been writable (the bytes waiting for the network above NIO's high
    /// water mark) and the peer took less than 32 KiB of them. Its reads are held from the moment it is
    /// not writable; without this a peer that stopped reading kept its answers in the node until the
    /// connection went idle, which it never did with answers in flight. A peer reading a backlog of
    /// answers, however slowly, keeps its connection.
    public var unreadAnswersDeadline: Duration = .seconds(30)
    /// Bytes one connection may have in flight: request frames read and not answered yet, and answers
    /// over 64 KiB not yet taken by the network; a request or an answer past it is answered
    /// `overloaded` (`in_flight_bytes`). One request is always admitted when no other is in flight,
    /// and one answer when the connection holds no other, so a frame larger than the budget is still
    /// served.
    public var inFlightBytesMax: Int = Limits.inFlightBytesPerConnectionMax
    /// Bytes all connections together may have in flight, as `inFlightBytesMax` counts them; a request
    /// or an answer past it is answered `overloaded` (`server_in_flight_bytes`). One is always admitted
    /// when nothing else is in flight.
    public var inFlightBytesServerMax: Int = Limits.inFlightBytesPerServerMax
    /// Bytes of frames still being received (their length known, their last byte not arrived) that all
    /// connections together may hold, counting only frames over 64 KiB (`ReceiveMemory`). A frame
    /// that finds no room waits, its connection reading nothing more, until earlier frames end
    /// (`receive_memory`, counted); its `frameReadDeadline` starts once it has room. A frame alone
    /// always has room.
    public var receivingBytesMax: Int = Limits.receivingBytesPerServerMax
    /// Violations one connection may commit that leave the frame stream intact (each answered with an
    /// `Error`); one more closes it (`violations`).
    public var protocolViolationsMax: Int = Limits.protocolViolationsPerConnectionMax
    /// The protocol versions this server speaks (`kvd --protocol-max` lowers the highest); a `Hello`
    /// whose range does not meet it is refused with `unsupportedVersion`.
    public var protocolVersions: ProtocolRange = WireProtocol.versions
    /// Where the highest version of each node that says `Hello` is recorded; nil: nowhere.
    public var peerVersions: PeerVersions?

    public init(host: String, port: Int, clusterID: String, nodeID: String) {
        self.host = host
        self.port = port
        self.clusterID = clusterID
        self.nodeID = nodeID
    }
}

/// Counters of what the server refused, for metrics and tests.
public final class RPCServerStatistics: Sendable {
    let connectionsAccepted = Atomic<Int>(0)
    let protocolViolations = Atomic<Int>(0)
    let refusedByRole = Atomic<Int>(0)
    let handshakesFailed = Atomic<Int>(0)
    let requestsServed = Atomic<Int>(0)
    /// Refusals to protect the server, by reason (a refusal is rare enough for a lock).
    private let refusals = Mutex<[RPCRefusal: Int]>([:])
    private let onRefusal: @Sendable (RPCRefusal) -> Void

    /// - Parameter onRefusal: called once per refusal, on whatever thread refused, after it was counted:
    ///   for a node to report it as a metric. It must not block.
    public init(onRefusal: @escaping @Sendable (RPCRefusal) -> Void = { _ in }) {
        self.onRefusal = onRefusal
    }

    public var connectionsAcceptedCount: Int { connectionsAccepted.load(ordering: .relaxed) }
    public var protocolViolationCount: Int { protocolViolations.load(ordering: .relaxed) }
    public var refusedByRoleCount: Int { refusedByRole.load(ordering: .relaxed) }
    public var handshakesFailedCount: Int { handshakesFailed.load(ordering: .relaxed) }
    public var requestsServedCount: Int { requestsServed.load(ordering: .relaxed) }

    /// How many times the server refused for `reason`.
    public func refusedCount(_ reason: RPCRefusal) -> Int {
        refusals.withLock { $0[reason, default: 0] }
    }

    /// Counts one refusal for `reason`, and tells `onRefusal`.
    public func recordRefusal(_ reason: RPCRefusal) {
        refusals.withLock { $0[reason, default: 0] += 1 }
        onRefusal(reason)
    }
}

/// A TLS-only RPC listener: mutual TLS, then `Hello`, then any number of multiplexed requests.
///
/// Each connection is served by its own child task; each request by a child task of the connection,
/// so one slow request does not hold up the others, and answers leave in completion order.
public final class RPCServer: Sendable {
    private let listener: NIOAsyncChannel<RPCServerConnection?, Never>
    let configuration: RPCServerConfiguration
    let service: any RPCService
    let logger: Logger
    let admission: ConnectionAdmission
    public var statistics: RPCServerStatistics { admission.statistics }
    /// Frames being received, over all connections (`receivingBytesMax`).
    let memory: ReceiveMemory
    /// Requests and large answers in flight, over all connections (`inFlightBytesServerMax`).
    let inFlight: ServerInFlightBytes

    /// The address actually bound (useful with port 0).
    public let localAddress: SocketAddress

    private init(
        listener: NIOAsyncChannel<RPCServerConnection?, Never>,
        configuration: RPCServerConfiguration,
        service: any RPCService,
        admission: ConnectionAdmission,
        memory: ReceiveMemory,
        inFlight: ServerInFlightBytes,
        logger: Logger
    ) throws {
        self.listener = listener
        self.configuration = configuration
        self.service = service
        self.admission = admission
        self.memory = memory
        self.inFlight = inFlight
        self.logger = logger
        guard let address = listener.channel.localAddress else {
            throw RPCError.connectFailed(
                address: "\(configuration.host):\(configuration.port)", reason: "no local address")
        }
        self.localAddress = address
    }

    /// Binds the listening socket. Call `run()` to accept connections.
    ///
    /// - Parameters:
    ///   - statistics: where the server counts what it served and refused; pass one made with an
    ///     `onRefusal` to report refusals elsewhere too.
    ///   - traffic: where each accepted connection's socket bytes are counted, under its peer once the
    ///     handshake verified it.
    public static func bind(
        configuration: RPCServerConfiguration,
        tls: TLSContext,
        service: any RPCService,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        statistics: RPCServerStatistics = RPCServerStatistics(),
        traffic: PeerTraffic? = nil,
        logger: Logger
    ) async throws -> RPCServer {
        let frameBytesMax = configuration.frameBytesMax
        let handshakeTimeout = configuration.handshakeTimeout
        let admission = ConnectionAdmission(configuration: configuration, statistics: statistics, logger: logger)
        let memory = ReceiveMemory(bytesMax: configuration.receivingBytesMax)
        let inFlight = ServerInFlightBytes(bytesMax: configuration.inFlightBytesServerMax)
        let listener = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture { () -> RPCServerConnection? in
                    // Past the connection or handshake cap: closed before TLS costs anything (counted).
                    guard let slot = admission.admitConnection() else {
                        channel.close(promise: nil)
                        return nil
                    }
                    channel.closeFuture.whenComplete { _ in slot.close() }
                    let handshake = channel.eventLoop.makePromise(of: PeerIdentity.self)
                    let budget = ConnectionBudget(
                        requestsMax: configuration.requestsInFlightMax, bytesMax: configuration.inFlightBytesMax,
                        server: inFlight, refused: { admission.refused($0) })
                    try LinkFaultHandler.install(on: channel)
                    let counted = try traffic.map { table in (table: table, counts: try table.install(on: channel)) }
                    let writer = FrameWriter(budget: budget)
                    try channel.pipeline.syncOperations.addHandlers([
                        OpenSSLHandler(context: tls, handshakeCompleted: handshake),
                        ConnectionGuardHandler(
                            frameReadDeadline: configuration.frameReadDeadline,
                            unreadAnswersDeadline: configuration.unreadAnswersDeadline,
                            idleTimeout: configuration.idleTimeout, budget: budget, memory: memory,
                            frameBytesMax: frameBytesMax, refused: { admission.refused($0) }),
                        ByteToMessageHandler(FrameDecoder(frameBytesMax: frameBytesMax)),
                        writer,
                    ])
                    // Right after the writer, which it hands its answers to.
                    let inline = InlineAnswerHandler(
                        service: service, writer: writer, budget: budget, statistics: admission.statistics,
                        logger: logger)
                    try channel.pipeline.syncOperations.addHandler(inline)
                    // Close connections that never finish TLS and Hello: an idle socket must not hold
                    // a slot forever.
                    let timeout = channel.eventLoop.scheduleTask(in: TimeAmount(handshakeTimeout)) {
                        channel.close(promise: nil)
                    }
                    let asyncChannel = try NIOAsyncChannel<Frame, OutboundFrame>(wrappingChannelSynchronously: channel)
                    return RPCServerConnection(
                        channel: asyncChannel, handshake: handshake.futureResult, timeout: timeout, slot: slot,
                        budget: budget, traffic: counted, inline: NIOLoopBound(inline, eventLoop: channel.eventLoop))
                }
            }
        return try RPCServer(
            listener: listener, configuration: configuration, service: service, admission: admission, memory: memory,
            inFlight: inFlight, logger: logger)
    }

    /// Accepts and serves connections until the task is cancelled or the listener closes.
    public func run() async throws {
        try await listener.executeThenClose { inbound in
            try await withThrowingDiscardingTaskGroup { group in
                for try await connection in inbound {
                    // nil: refused at accept, and already closed.
                    guard let connection else { continue }
                    statistics.connectionsAccepted.add(1, ordering: .relaxed)
                    group.addTask {
                        await self.serve(connection)
                    }
                }
            }
        }
    }

    /// Stops accepting connections; `run()` returns once open connections end (or its task is cancelled).
    public func stopAccepting() {
        listener.channel.close(promise: nil)
    }
}

/// One accepted connection before it is served.
struct RPCServerConnection: Sendable {
    var channel: NIOAsyncChannel<Frame, OutboundFrame>
    var handshake: EventLoopFuture<PeerIdentity>
    var timeout: Scheduled<Void>
    /// Its hold on the server's connection, handshake and per-certificate counts.
    var slot: ConnectionSlot
    /// What it has in flight.
    var budget: ConnectionBudget
    /// Where its bytes are counted, and its counts, to bind to the peer once verified.
    var traffic: (table: PeerTraffic, counts: ConnectionTraffic)?
    /// Answers what needs no waiting on the event loop, once opened after `Hello`.
    var inline: NIOLoopBound<InlineAnswerHandler>
}
