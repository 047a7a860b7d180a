import KVCore
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

    public var connectionsAcceptedCount: Int { connectionsAccepted.load(ordering: .relaxed) }
    public var protocolViolationCount: Int { protocolViolations.load(ordering: .relaxed) }
    public var refusedByRoleCount: Int { refusedByRole.load(ordering: .relaxed) }
    public var handshakesFailedCount: Int { handshakesFailed.load(ordering: .relaxed) }
    public var requestsServedCount: Int { requestsServed.load(ordering: .relaxed) }
}

/// A TLS-only RPC listener: mutual TLS, then `Hello`, then any number of multiplexed requests.
///
/// Each connection is served by its own child task; each request by a child task of the connection,
/// so one slow request does not hold up the others, and answers leave in completion order.
public final class RPCServer: Sendable {
    private let listener: NIOAsyncChannel<RPCServerConnection, Never>
    let configuration: RPCServerConfiguration
    let service: any RPCService
    let logger: Logger
    public let statistics = RPCServerStatistics()

    /// The address actually bound (useful with port 0).
    public let localAddress: SocketAddress

    private init(
        listener: NIOAsyncChannel<RPCServerConnection, Never>,
        configuration: RPCServerConfiguration,
        service: any RPCService,
        logger: Logger
    ) throws {
        self.listener = listener
        self.configuration = configuration
        self.service = service
        self.logger = logger
        guard let address = listener.channel.localAddress else {
            throw RPCError.connectFailed(
                address: "\(configuration.host):\(configuration.port)", reason: "no local address")
        }
        self.localAddress = address
    }

    /// Binds the listening socket. Call `run()` to accept connections.
    public static func bind(
        configuration: RPCServerConfiguration,
        tls: TLSContext,
        service: any RPCService,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) async throws -> RPCServer {
        let frameBytesMax = configuration.frameBytesMax
        let handshakeTimeout = configuration.handshakeTimeout
        let listener = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handshake = channel.eventLoop.makePromise(of: PeerIdentity.self)
                    try channel.pipeline.syncOperations.addHandlers([
                        OpenSSLHandler(context: tls, handshakeCompleted: handshake),
                        ByteToMessageHandler(FrameDecoder(frameBytesMax: frameBytesMax)),
                        MessageToByteHandler(FrameEncoder()),
                    ])
                    // Close connections that never finish TLS and Hello: an idle socket must not hold
                    // a slot forever.
                    let timeout = channel.eventLoop.scheduleTask(in: TimeAmount(handshakeTimeout)) {
                        channel.close(promise: nil)
                    }
                    let asyncChannel = try NIOAsyncChannel<Frame, Frame>(wrappingChannelSynchronously: channel)
                    return RPCServerConnection(
                        channel: asyncChannel, handshake: handshake.futureResult, timeout: timeout)
                }
            }
        return try RPCServer(listener: listener, configuration: configuration, service: service, logger: logger)
    }

    /// Accepts and serves connections until the task is cancelled or the listener closes.
    public func run() async throws {
        try await listener.executeThenClose { inbound in
            try await withThrowingDiscardingTaskGroup { group in
                for try await connection in inbound {
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
    var channel: NIOAsyncChannel<Frame, Frame>
    var handshake: EventLoopFuture<PeerIdentity>
    var timeout: Scheduled<Void>
}
