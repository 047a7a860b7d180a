public import KVCore
public import KVTLS
public import KVWire
public import NIOCore
public import NIOPosix
import Synchronization

/// What a request's answer is handed to, on the connection's event loop: the decoded answer, or why
/// there is none (an `Error` answer is `RPCError.remote`).
public typealias RPCCompletion = @Sendable (Result<Message, any Error>) -> Void

/// One client connection to one server: mutual TLS, `Hello`/`HelloAck`, then multiplexed requests.
///
/// A connection is up only once `HelloAck` has arrived: with TLS 1.3 the client's handshake completes
/// before the server has judged the client certificate, so handshake completion proves nothing.
public final class RPCConnection: Sendable {
    private let channel: any Channel
    /// Where requests go, on the channel's event loop.
    private let handler: NIOLoopBound<RPCClientHandler>
    private let nextRequestID = Atomic<UInt64>(2)
    /// The server's identity, from its certificate.
    public let server: PeerIdentity
    /// The server's answer to our `Hello`.
    public let helloAck: HelloAck
    /// The versions the accepted `Hello` announced: the caller's, or one fewer after a refusal.
    public let offered: ProtocolRange

    /// The connection's protocol version (`HelloAck.protocolVersion`): it decides what is sent on it.
    public var version: UInt16 { helloAck.protocolVersion }

    /// The highest version the server speaks, which may be above the connection's.
    public var serverHighestVersion: UInt16 {
        max(helloAck.highestVersion ?? helloAck.protocolVersion, helloAck.protocolVersion)
    }

    private init(
        channel: any Channel, handler: NIOLoopBound<RPCClientHandler>, server: PeerIdentity, helloAck: HelloAck,
        offered: ProtocolRange
    ) {
        self.channel = channel
        self.handler = handler
        self.server = server
        self.helloAck = helloAck
        self.offered = offered
    }

    /// Connects as `connect(host:port:tls:hello:versions:...)` does, and once more announcing one
    /// version fewer when the server refuses with `unsupportedVersion`.
    ///
    /// A version-3 server reads only `Hello.protocolVersion` and refuses any but 3, even from a peer
    /// that also speaks 3; the retry announces `versions.withoutHighest`. At most one retry: a server
    /// that refuses that too shares no version with this side. The caller keeps `offered` to start
    /// its next connection to the same server there (`RPCClient`).
    public static func negotiating(
        host: String,
        port: Int,
        tls: TLSContext,
        hello: Hello,
        versions: ProtocolRange,
        nodeID: String? = nil,
        timeout: Duration,
        peerVersions: PeerVersions? = nil,
        traffic: PeerTraffic? = nil,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> RPCConnection {
        do {
            return try await connect(
                host: host, port: port, tls: tls, hello: hello, versions: versions, nodeID: nodeID, timeout: timeout,
                peerVersions: peerVersions, traffic: traffic, group: group)
        } catch let error as RPCError where error.remoteCode == .unsupportedVersion {
            guard let lower = versions.withoutHighest else { throw error }
            return try await connect(
                host: host, port: port, tls: tls, hello: hello, versions: lower, nodeID: nodeID, timeout: timeout,
                peerVersions: peerVersions, traffic: traffic, group: group)
        }
    }

    /// Connects, completes TLS, and exchanges `Hello`/`HelloAck`.
    ///
    /// - Parameters:
    ///   - nodeID: the node the caller means to reach, when it knows: the server's certificate and its
    ///     `HelloAck` must both name it, so an address that now belongs to another node (or a node
    ///     certificate presented by the wrong node) is not taken for it.
    ///   - traffic: where the connection's socket bytes are counted, under the server's id once it is
    ///     verified.
    ///   - versions: the protocol versions to announce: they replace `hello`'s `protocolVersion` and
    ///     `lowestVersion` (left out when the highest predates it, as an older release sends it); nil:
    ///     `hello` is sent as it is (tests of hostile handshakes).
    ///   - peerVersions: where the server's highest version is recorded when it is a node.
    /// - Throws: `RPCError.connectFailed` when the server is unreachable, the TLS handshake fails or
    ///   the server is not `nodeID`; `RPCError.remote` when the server refuses the `Hello` (cluster,
    ///   version, role or node id mismatch); `RPCError.protocolViolation` when its `HelloAck` names
    ///   a version that was not offered.
    public static func connect(
        host: String,
        port: Int,
        tls: TLSContext,
        hello: Hello,
        versions: ProtocolRange? = nil,
        nodeID: String? = nil,
        timeout: Duration,
        peerVersions: PeerVersions? = nil,
        requestsInFlightMax: Int = Limits.requestsInFlightPerConnectionMax,
        frameBytesMax: Int = Limits.frameBytesMax,
        traffic: PeerTraffic? = nil,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> RPCConnection {
        let address = "\(host):\(port)"
        let counted = traffic?.open()
        let eventLoop = group.next()
        let handshake = eventLoop.makePromise(of: PeerIdentity.self)
        // The handler requests go to, handed out of the pipeline as it is built: it may be gone from the
        // pipeline by the time the caller looks (a server that refuses the certificate closes at once).
        let requests = eventLoop.makePromise(of: NIOLoopBound<RPCClientHandler>.self)
        let failure = ConnectionFailure()
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: eventLoop)
                .connectTimeout(TimeAmount(timeout))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try LinkFaultHandler.install(on: channel)
                        if let traffic, let counted { try traffic.attach(counted, to: channel) }
                        let handler = RPCClientHandler(requestsInFlightMax: requestsInFlightMax, failure: failure)
                        try channel.pipeline.syncOperations.addHandlers([
                            OpenSSLHandler(context: tls, expectedServerName: host, handshakeCompleted: handshake),
                            ByteToMessageHandler(FrameDecoder(frameBytesMax: frameBytesMax)),
                            handler,
                        ])
                        requests.succeed(NIOLoopBound(handler, eventLoop: channel.eventLoop))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            if let counted { traffic?.close(counted) }
            handshake.fail(RPCError.connectFailed(address: address, reason: "\(error)"))
            requests.fail(RPCError.connectFailed(address: address, reason: "\(error)"))
            throw RPCError.connectFailed(address: address, reason: describe(error))
        }
        do {
            let handler = try await requests.futureResult.get()
            var request = Message.hello(hello)
            if let versions {
                var hello = hello
                hello.protocolVersion = versions.highest
                hello.lowestVersion = versions.lowest
                request = Message.hello(hello).restricted(toProtocol: versions.highest)
            }
            let offered =
                versions ?? ProtocolRange.announced(highest: hello.protocolVersion, lowest: hello.lowestVersion)
            let answer = try await send(request, requestID: 1, timeout: timeout, to: handler).get()
            guard case .helloAck(let ack) = answer else {
                throw RPCError.protocolViolation("expected HelloAck, got \(answer.type)")
            }
            guard let offered, offered.speaks(ack.protocolVersion) else {
                throw RPCError.protocolViolation(
                    "the server chose protocol version \(ack.protocolVersion), which was not offered")
            }
            let server = try await handshake.futureResult.get()
            if let nodeID, server.name != nodeID || ack.nodeId != nodeID {
                throw RPCError.connectFailed(
                    address: address,
                    reason:
                        "expected node '\(nodeID)' there, but its certificate names '\(server.name)' and it says it is '\(ack.nodeId)'"
                )
            }
            if let counted { traffic?.identify(counted, as: server) }
            let connection = RPCConnection(
                channel: channel, handler: handler, server: server, helloAck: ack, offered: offered)
            if server.role == .node {
                peerVersions?.record(server.name, highest: connection.serverHighestVersion)
            }
            return connection
        } catch let error as RPCError where error.remoteCode != nil {
            try? await channel.close()
            throw error
        } catch {
            try? await channel.close()
            throw RPCError.connectFailed(address: address, reason: describe(error))
        }
    }

    /// Sends one request and waits for its answer.
    ///
    /// - Throws: `RPCError.remote` when the server answered with an `Error`; `deadlineExceeded` when no
    ///   answer came within `timeout`; `connectionClosed` when the connection broke.
    public func call(_ request: Message, timeout: Duration) async throws -> Message {
        try await send(request, timeout: timeout).get()
    }

    /// Sends one request; the future completes with its answer, or fails as `call` throws.
    ///
    /// For callers that fan a request out and must not wait for the slowest answer: nothing here
    /// blocks, and answers that arrive after the caller moved on are simply dropped.
    public func send(_ request: Message, timeout: Duration) -> EventLoopFuture<Message> {
        let answer = channel.eventLoop.makePromise(of: Message.self)
        send(request, timeout: timeout) { answer.completeWith($0) }
        return answer.futureResult
    }

    /// Sends one request and hands its answer (or why there is none, as `call` throws) to `complete`,
    /// on the connection's event loop (at once, on the caller's thread, when it cannot be sent on this
    /// connection's version): the path of the SDK's requests, with no future.
    ///
    /// Fields the connection's version lacks are left out (`Message.restricted(toProtocol:)`); a
    /// message type it lacks fails with `protocolViolation` without being sent. On a connection with
    /// batches (version 4), a client `Put` may leave in one `PutBatch` with the others sent before the
    /// same flush; it is answered as its own all the same (`RPCClientHandler`).
    public func send(_ request: Message, timeout: Duration, then complete: @escaping RPCCompletion) {
        guard request.type.protocolVersionMin <= version else {
            complete(
                .failure(
                    RPCError.protocolViolation(
                        "\(request.type) needs protocol version \(request.type.protocolVersionMin); the connection to \(server.name) speaks \(version)"
                    )))
            return
        }
        let id = nextRequestID.wrappingAdd(1, ordering: .relaxed).oldValue
        Self.submit(
            OutboundRequest(
                message: request.restricted(toProtocol: version), requestID: id, complete: complete, timeout: timeout,
                mayJoinBatch: version >= MessageType.putBatchRequest.protocolVersionMin),
            to: handler)
    }

    /// Whether the connection is still open.
    public var isActive: Bool { channel.isActive }

    /// The event loop the connection's channel runs on.
    public var eventLoop: any EventLoop { channel.eventLoop }

    /// The local address of the connection.
    public var localAddress: SocketAddress? { channel.localAddress }

    /// Starts closing the connection without waiting for it.
    public func startClosing() {
        channel.close(promise: nil)
    }

    /// Closes the connection; pending requests fail with `connectionClosed`.
    public func close() async {
        try? await channel.close()
    }

    /// Sends `request` (the handshake's `Hello`) before the connection exists.
    private static func send(
        _ request: Message, requestID: UInt64, timeout: Duration, to handler: NIOLoopBound<RPCClientHandler>
    ) -> EventLoopFuture<Message> {
        let answer = handler.eventLoop.makePromise(of: Message.self)
        submit(
            OutboundRequest(
                message: request, requestID: requestID, complete: { answer.completeWith($0) }, timeout: timeout),
            to: handler)
        return answer.futureResult
    }

    /// Hands `request` to the connection's handler on its event loop: at once when already there.
    private static func submit(_ request: OutboundRequest, to handler: NIOLoopBound<RPCClientHandler>) {
        if handler.eventLoop.inEventLoop {
            handler.value.submit(request)
        } else {
            handler.eventLoop.execute { handler.value.submit(request) }
        }
    }
}

/// A one-line description of a connection error, without NIO's type names where a plainer word exists.
func describe(_ error: any Error) -> String {
    if let error = error as? RPCError {
        return "\(error)"
    }
    if let error = error as? IOError, error.errnoCode == 111 {
        return "connection refused"
    }
    let text = "\(error)"
    if text.contains("connectTimeout") || text.contains("ConnectTimeout") {
        return "connection timed out"
    }
    if text.contains("connection refused") || text.contains("Connection refused") {
        return "connection refused"
    }
    return text
}
