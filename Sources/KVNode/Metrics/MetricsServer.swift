import KVCore
public import KVTLS
public import NIOCore
import NIOHTTP1
public import NIOPosix

/// `GET /metrics` over HTTPS with mutual TLS: the node's metrics in the Prometheus text format, for
/// `kvd --metrics HOST:PORT`.
///
/// The same TLS server context as the RPC port: a scraper shows a certificate issued by the cluster
/// CA, of any role (`kvctl certs issue --role client --name prometheus`), or the handshake fails.
/// Nothing else is served: another path is 404, another method 405. Connections may be kept alive;
/// one idle for a minute, or that has not finished its handshake within ten seconds, is closed. At
/// most `connectionsMax` are open at once: past it a new one is closed before its handshake.
///
/// Without TLS (`kvd --metrics-local`, for a Prometheus on the same host) it binds loopback addresses
/// only: plain HTTP never leaves the host.
public final class MetricsServer: Sendable {
    /// The address the server listens on (the port chosen by the system when 0 was asked).
    public let localAddress: SocketAddress
    private let channel: any Channel
    private let open: OpenConnections

    /// The connections open now (tests).
    package var connectionsOpen: Int { open.current }

    /// Connections open at once, over every scraper: a scrape needs one, and anyone who reached the
    /// port held as many as they opened (300 idle ones, each a descriptor, until its handshake
    /// deadline), where the RPC port holds 64 handshakes.
    public static let connectionsMax = 64

    private init(channel: any Channel, open: OpenConnections) throws {
        guard let address = channel.localAddress else {
            throw NodeError.configuration("the metrics listener has no local address")
        }
        self.channel = channel
        self.open = open
        self.localAddress = address
    }

    /// Binds `host:port`; `render` is called once per scrape, on an event loop (it must not block).
    ///
    /// - Parameter tls: the server context of mutual TLS; nil: plain HTTP, on a loopback address only
    ///   (anything else throws `NodeError.configuration`).
    public static func bind(
        host: String, port: Int, tls: TLSContext?, render: @escaping @Sendable () -> String,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> MetricsServer {
        if tls == nil {
            guard let address = try? SocketAddress(ipAddress: host, port: port), Self.isLoopback(address) else {
                throw NodeError.configuration(
                    "plain-HTTP metrics bind a loopback address only (127.0.0.0/8 or ::1), not '\(host)'")
            }
        }
        let open = OpenConnections()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 64)
            .childChannelInitializer { channel in
                guard open.admit(max: Self.connectionsMax) else { return channel.close() }
                channel.closeFuture.whenComplete { _ in open.leave() }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        let handshake = channel.eventLoop.makePromise(of: PeerIdentity.self)
                        let timeout = channel.eventLoop.scheduleTask(in: .seconds(10)) { channel.close(promise: nil) }
                        handshake.futureResult.whenComplete { _ in timeout.cancel() }
                        try sync.addHandler(OpenSSLHandler(context: tls, handshakeCompleted: handshake))
                    }
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandlers([
                        IdleStateHandler(readTimeout: .seconds(60)),
                        MetricsHTTPHandler(render: render),
                    ])
                }
            }
            .bind(host: host, port: port)
            .get()
        return try MetricsServer(channel: channel, open: open)
    }

    /// Whether `address` is 127.0.0.0/8 or ::1.
    static func isLoopback(_ address: SocketAddress) -> Bool {
        switch address {
        case .v4: address.ipAddress?.hasPrefix("127.") == true
        case .v6: address.ipAddress == "::1"
        case .unixDomainSocket: false
        }
    }

    /// Stops listening; open scrapes finish on their own.
    public func close() async {
        try? await channel.close()
    }
}

/// Answers one request at a time on a connection (HTTP/1.1 without pipelining, as Prometheus scrapes).
private final class MetricsHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let render: @Sendable () -> String
    private var request: HTTPRequestHead?

    init(render: @escaping @Sendable () -> String) {
        self.render = render
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let status: HTTPResponseStatus
        var body: String
        var headers = HTTPHeaders()
        if path != "/metrics" {
            (status, body) = (.notFound, "only /metrics is served here\n")
        } else if head.method != .GET && head.method != .HEAD {
            (status, body) = (.methodNotAllowed, "use GET\n")
            headers.add(name: "Allow", value: "GET, HEAD")
        } else {
            (status, body) = (.ok, render())
        }
        let contentType = status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8"
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        let keepAlive = head.isKeepAlive
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        if head.method == .HEAD { body = "" }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil)
        if !body.isEmpty {
            context.write(
                wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
