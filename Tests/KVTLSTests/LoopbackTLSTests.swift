import KVCore
import KVTLS
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Mutual TLS over real loopback sockets: a node echoes what a good client sends, and refuses every
/// kind of bad peer in the handshake without ever echoing, while good clients keep working.
@Suite(.timeLimit(.minutes(3))) struct LoopbackTLSTests {
    /// Echoes plaintext back.
    private final class EchoHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            context.write(data, promise: nil)
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            context.flush()
        }
    }

    /// Collects what comes back until `expectedBytes` arrived, the channel closed, or an error.
    private final class ReplyCollector: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer

        private let expectedBytes: Int
        private let reply: EventLoopPromise<String>
        private var received = ""

        init(expectedBytes: Int, reply: EventLoopPromise<String>) {
            self.expectedBytes = expectedBytes
            self.reply = reply
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = Self.unwrapInboundIn(data)
            self.received += buffer.readString(length: buffer.readableBytes) ?? ""
            if self.received.utf8.count >= self.expectedBytes {
                self.reply.succeed(self.received)
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            self.reply.fail(error)
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.reply.fail(ChannelError.eof)
            context.fireChannelInactive()
        }
    }

    /// Records errors the server's pipeline saw, to check refusals happen in TLS, and counts the
    /// connections that have ended.
    private final class ErrorRecorder: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let errors = Mutex<[TLSError]>([])
        let closedConnections = Mutex(0)

        func channelInactive(context: ChannelHandlerContext) {
            self.closedConnections.withLock { $0 += 1 }
            context.fireChannelInactive()
        }

        /// Waits (up to 10 s) until `count` connections have ended on the server.
        func waitForClosedConnections(_ count: Int) async throws {
            for _ in 0..<1000 where self.closedConnections.withLock({ $0 }) < count {
                try await Task.sleep(for: .milliseconds(10))
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            if let error = error as? TLSError { self.errors.withLock { $0.append(error) } }
            context.fireErrorCaught(error)
        }
    }

    /// A node on 127.0.0.1, port chosen by the kernel, with an echo handler behind TLS.
    private struct EchoServer {
        let group: MultiThreadedEventLoopGroup
        let channel: any Channel
        let recorder: ErrorRecorder
        var port: Int { self.channel.localAddress?.port ?? 0 }

        static func start(context: TLSContext) async throws -> EchoServer {
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let recorder = ErrorRecorder()
            do {
                let channel = try await ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(OpenSSLHandler(context: context))
                            try channel.pipeline.syncOperations.addHandler(recorder)
                            try channel.pipeline.syncOperations.addHandler(EchoHandler())
                        }
                    }
                    .bind(host: "127.0.0.1", port: 0).get()
                return EchoServer(group: group, channel: channel, recorder: recorder)
            } catch {
                try? await group.shutdownGracefully()
                throw error
            }
        }

        func stop() async {
            try? await self.channel.close()
            try? await self.group.shutdownGracefully()
        }
    }

    /// Runs `body` against a fresh echo server and always stops it.
    private func withEchoServer(
        _ pki: TestPKI,
        _ body: (EchoServer) async throws -> Void
    ) async throws {
        let server = try await EchoServer.start(context: try pki.context(pki.node, side: .server))
        do {
            try await body(server)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    /// Connects over TLS, sends `message`, and returns what came back (or throws why not).
    private func echo(
        _ message: String,
        port: Int,
        group: any EventLoopGroup,
        context: TLSContext,
        expectedServerName: String? = "127.0.0.1"
    ) async throws -> String {
        let loop = group.next()
        let reply = loop.makePromise(of: String.self)
        let handshake = loop.makePromise(of: PeerIdentity.self)
        handshake.futureResult.whenFailure { reply.fail($0) }
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            OpenSSLHandler(
                                context: context, expectedServerName: expectedServerName, handshakeCompleted: handshake
                            )
                        )
                        try channel.pipeline.syncOperations.addHandler(
                            ReplyCollector(expectedBytes: message.utf8.count, reply: reply)
                        )
                    }
                }
                .connect(host: "127.0.0.1", port: port).get()
        } catch {
            handshake.fail(error)
            reply.fail(error)
            throw error
        }
        channel.writeAndFlush(ByteBuffer(string: message), promise: nil)
        do {
            let text = try await reply.futureResult.get()
            try? await channel.close()
            return text
        } catch {
            try? await channel.close()
            throw error
        }
    }

    private func expectGoodClientEchoes(_ server: EchoServer, _ pki: TestPKI) async throws {
        let text = try await echo(
            "ping", port: server.port, group: server.group, context: try pki.context(pki.client, side: .client)
        )
        #expect(text == "ping")
    }

    /// Each bad client is refused (never echoed), and a good client still echoes afterwards.
    private func expectRefused(
        _ server: EchoServer,
        _ pki: TestPKI,
        client: TLSContext,
        expectedServerName: String? = "127.0.0.1",
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> any Error {
        let result: Result<String, any Error>
        do {
            result = .success(
                try await echo(
                    "secret", port: server.port, group: server.group, context: client,
                    expectedServerName: expectedServerName
                )
            )
        } catch {
            result = .failure(error)
        }
        guard case .failure(let error) = result else {
            Issue.record("bad client was echoed", sourceLocation: sourceLocation)
            return TLSError.handshakeFailed
        }
        try await expectGoodClientEchoes(server, pki)
        return error
    }

    @Test func goodClientsEcho() async throws {
        let pki = try TestPKI()
        try await withEchoServer(pki) { server in
            try await expectGoodClientEchoes(server, pki)
            let text = try await echo(
                "admin here", port: server.port, group: server.group, context: try pki.context(pki.admin, side: .client)
            )
            #expect(text == "admin here")
            let big = String(repeating: "x", count: 100_000)
            let bigEcho = try await echo(
                big, port: server.port, group: server.group, context: try pki.context(pki.client, side: .client)
            )
            #expect(bigEcho == big)

            // Each client closed with close_notify: the server saw clean closes, no TLS error.
            try await server.recorder.waitForClosedConnections(3)
            #expect(server.recorder.closedConnections.withLock { $0 } == 3)
            #expect(server.recorder.errors.withLock { $0 }.isEmpty)
        }
    }

    @Test func clientWithoutCertificateIsRefused() async throws {
        let pki = try TestPKI()
        var configuration = pki.configuration(pki.client)
        configuration.omitsCertificate = true
        let client = try TLSContext(configuration: configuration, side: .client)
        try await withEchoServer(pki) { server in
            let error = try await expectRefused(server, pki, client: client)
            #expect(error is TLSError, "\(error)")
            #expect(server.recorder.errors.withLock { $0.contains(.handshakeFailed) })
        }
    }

    @Test func clientFromAnotherCAIsRefused() async throws {
        let pki = try TestPKI()
        let other = try TestPKI()
        // Trusts our CA (so it accepts the server) but presents a certificate from another CA.
        let configuration = TLSConfiguration(
            caPEM: pki.authority.certificatePEM, certificatePEM: other.client.certificatePEM,
            keyPEM: other.client.privateKeyPEM
        )
        let client = try TLSContext(configuration: configuration, side: .client)
        try await withEchoServer(pki) { server in
            let error = try await expectRefused(server, pki, client: client)
            #expect(error is TLSError, "\(error)")
            let serverErrors = server.recorder.errors.withLock { $0 }
            #expect(serverErrors.contains { $0 == .handshakeFailed && $0.description.contains("unable to get") })
        }
    }

    @Test func expiredClientCertificateIsRefused() async throws {
        let pki = try TestPKI()
        let expired = try CertificateIssuer.issue(
            role: .client, name: "old", authority: pki.authority, validityDays: 1, notBeforeOffsetDays: -10
        )
        let client = try TLSContext(configuration: pki.configuration(expired), side: .client)
        try await withEchoServer(pki) { server in
            let error = try await expectRefused(server, pki, client: client)
            #expect(error is TLSError, "\(error)")
            let serverErrors = server.recorder.errors.withLock { $0 }
            #expect(serverErrors.contains { $0.description.contains("certificate has expired") }, "\(serverErrors)")
        }
    }

    @Test func clientWithoutRoleIsRefused() async throws {
        let pki = try TestPKI()
        let noRole = try CertificateIssuer.issue(roleURI: nil, name: "nobody", authority: pki.authority)
        var configuration = pki.configuration(noRole)
        configuration.allowsCertificateWithoutRole = true
        let client = try TLSContext(configuration: configuration, side: .client)
        try await withEchoServer(pki) { server in
            let error = try await expectRefused(server, pki, client: client)
            #expect(error is TLSError, "\(error)")
            #expect(server.recorder.errors.withLock { $0.contains(.peerHasNoRole) })
        }
    }

    @Test func tls12OnlyClientIsRefused() async throws {
        let pki = try TestPKI()
        var configuration = pki.configuration(pki.client)
        configuration.protocolVersionMax = .tls12
        let client = try TLSContext(configuration: configuration, side: .client)
        try await withEchoServer(pki) { server in
            let error = try await expectRefused(server, pki, client: client)
            #expect(error as? TLSError == .handshakeFailed, "\(error)")
            #expect(server.recorder.errors.withLock { $0.contains(.handshakeFailed) })
        }
    }

    @Test func wrongServerNameIsRefusedByClient() async throws {
        let pki = try TestPKI(nodeIP: "127.0.0.1")
        try await withEchoServer(pki) { server in
            let error = try await expectRefused(
                server, pki, client: try pki.context(pki.client, side: .client), expectedServerName: "127.0.0.2"
            )
            #expect(error as? TLSError == .serverNameMismatch, "\(error)")
        }
    }

    @Test func plainTCPIsRefused() async throws {
        let pki = try TestPKI()
        try await withEchoServer(pki) { server in
            let loop = server.group.next()
            let received = loop.makePromise(of: String.self)
            let channel = try await ClientBootstrap(group: loop)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // Expect far more than an echo, so the collector reports only on close.
                        try channel.pipeline.syncOperations.addHandler(
                            ReplyCollector(expectedBytes: 1 << 20, reply: received)
                        )
                    }
                }
                .connect(host: "127.0.0.1", port: server.port).get()
            try await channel.writeAndFlush(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
            await #expect(throws: ChannelError.eof) { try await received.futureResult.get() }
            try? await channel.close()
            #expect(server.recorder.errors.withLock { $0.contains(.handshakeFailed) })
            try await expectGoodClientEchoes(server, pki)
        }
    }
}
