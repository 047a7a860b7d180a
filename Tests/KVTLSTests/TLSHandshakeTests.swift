import KVCore
import KVTLS
import NIOCore
import NIOEmbedded
import Testing

/// Handshakes between two `EmbeddedChannel`s, bytes moved by `interactInMemory`.
@Suite(.timeLimit(.minutes(3))) struct TLSHandshakeTests {
    /// A connected pair with TLS handlers; the promises report each side's view of its peer.
    struct Pair {
        let client: EmbeddedChannel
        let server: EmbeddedChannel
        let clientSawPeer: EventLoopFuture<PeerIdentity>
        let serverSawPeer: EventLoopFuture<PeerIdentity>

        init(clientContext: TLSContext, serverContext: TLSContext, expectedServerName: String? = nil) throws {
            self.client = EmbeddedChannel()
            self.server = EmbeddedChannel()
            let clientPromise = self.client.eventLoop.makePromise(of: PeerIdentity.self)
            let serverPromise = self.server.eventLoop.makePromise(of: PeerIdentity.self)
            self.clientSawPeer = clientPromise.futureResult
            self.serverSawPeer = serverPromise.futureResult
            try self.client.pipeline.syncOperations.addHandler(
                OpenSSLHandler(
                    context: clientContext, expectedServerName: expectedServerName, handshakeCompleted: clientPromise
                )
            )
            try self.server.pipeline.syncOperations.addHandler(
                OpenSSLHandler(context: serverContext, handshakeCompleted: serverPromise)
            )
            let address = try SocketAddress(ipAddress: "127.0.0.1", port: 7000)
            try self.server.connect(to: address).wait()
            try self.client.connect(to: address).wait()
        }

        func finish() {
            _ = try? self.client.finish(acceptAlreadyClosed: true)
            _ = try? self.server.finish(acceptAlreadyClosed: true)
        }
    }

    @Test func goodPeersExchangeDataBothWays() throws {
        let pki = try TestPKI()
        let pair = try Pair(
            clientContext: try pki.context(pki.client, side: .client),
            serverContext: try pki.context(pki.node, side: .server),
            expectedServerName: "127.0.0.1"
        )
        defer { pair.finish() }

        // Written before the handshake: buffered until it completes.
        // (`writeOutbound` would wait for the write's promise, which only completes after the handshake.)
        let earlyWrite = pair.client.writeAndFlush(ByteBuffer(string: "hello "))
        try interactInMemory(client: pair.client, server: pair.server)
        try earlyWrite.wait()

        #expect(try pair.clientSawPeer.wait() == pki.context(pki.node, side: .server).localIdentity)
        #expect(try pair.serverSawPeer.wait().name == "app")
        #expect(try pair.serverSawPeer.wait().role == .client)
        #expect(try pair.server.pipeline.syncOperations.handler(type: OpenSSLHandler.self).peerIdentity?.name == "app")

        try pair.client.writeOutbound(ByteBuffer(string: "server"))
        try pair.server.writeOutbound(ByteBuffer(string: "hi client"))
        try interactInMemory(client: pair.client, server: pair.server)
        #expect(try readAllInbound(pair.server) == "hello server")
        #expect(try readAllInbound(pair.client) == "hi client")
    }

    @Test func adminMayConnectAndNodeToNodeWorks() throws {
        let pki = try TestPKI()
        for certificate in [pki.admin, pki.node] {
            let pair = try Pair(
                clientContext: try pki.context(certificate, side: .client),
                serverContext: try pki.context(pki.node, side: .server)
            )
            defer { pair.finish() }
            try interactInMemory(client: pair.client, server: pair.server)
            #expect(
                try pair.serverSawPeer.wait().name
                    == (certificate.certificatePEM == pki.admin.certificatePEM ? "operator" : "n1"))
        }
    }

    @Test func closeSendsCloseNotifyAndBothSidesClose() throws {
        let pki = try TestPKI()
        let pair = try Pair(
            clientContext: try pki.context(pki.client, side: .client),
            serverContext: try pki.context(pki.node, side: .server)
        )
        defer { pair.finish() }
        try interactInMemory(client: pair.client, server: pair.server)
        _ = try pair.clientSawPeer.wait()

        let closed = pair.client.close()
        // The close_notify is written, the client closes; the server answers by closing as well.
        let closeNotify = try #require(try pair.client.readOutbound(as: ByteBuffer.self))
        #expect(!pair.client.isActive)
        try closed.wait()
        try pair.server.writeInbound(closeNotify)
        pair.server.embeddedEventLoop.run()
        #expect(!pair.server.isActive)
        #expect(try pair.server.readOutbound(as: ByteBuffer.self) != nil)  // its own close_notify
    }

    @Test func serverCloseIsCleanOnBothSides() throws {
        let pki = try TestPKI()
        let pair = try Pair(
            clientContext: try pki.context(pki.client, side: .client),
            serverContext: try pki.context(pki.node, side: .server)
        )
        defer { pair.finish() }
        // The server may write before the handshake is done: it waits, then goes out.
        let early = pair.server.writeAndFlush(ByteBuffer(string: "welcome"))
        try interactInMemory(client: pair.client, server: pair.server)
        try early.wait()
        #expect(try readAllInbound(pair.client) == "welcome")

        let closed = pair.server.close()
        // interactInMemory throws if either side fired an error (e.g. an unclean shutdown).
        try interactInMemory(client: pair.client, server: pair.server)
        try closed.wait()
        #expect(!pair.server.isActive)
        #expect(!pair.client.isActive)
    }

    @Test func closeBeforeHandshakeFailsThePromise() throws {
        let pki = try TestPKI()
        let pair = try Pair(
            clientContext: try pki.context(pki.client, side: .client),
            serverContext: try pki.context(pki.node, side: .server)
        )
        defer { pair.finish() }
        try pair.client.close().wait()
        #expect(throws: TLSError.closedDuringHandshake) { try pair.clientSawPeer.wait() }
    }

    @Test func serverWithClientRoleIsRefusedByClient() throws {
        let pki = try TestPKI()
        let pair = try Pair(
            clientContext: try pki.context(pki.client, side: .client),
            serverContext: try pki.context(pki.admin, side: .server)
        )
        defer { pair.finish() }
        #expect(throws: TLSError.peerRoleNotAllowed) { try interactInMemory(client: pair.client, server: pair.server) }
        #expect(throws: TLSError.peerRoleNotAllowed) { try pair.clientSawPeer.wait() }
        #expect(!pair.client.isActive)
    }

    /// A peer that offers only a finite-field group (which could make a node compute an 8192-bit
    /// key exchange per connection) gets no handshake; X25519 and P-256 work.
    @Test(arguments: [("ffdhe2048", false), ("ffdhe8192", false), ("X25519", true), ("P-256", true)])
    func onlyX25519AndP256AreAccepted(group: String, accepted: Bool) throws {
        let pki = try TestPKI()
        var configuration = pki.configuration(pki.client)
        configuration.keyExchangeGroups = group
        let pair = try Pair(
            clientContext: try TLSContext(configuration: configuration, side: .client),
            serverContext: try pki.context(pki.node, side: .server))
        defer { pair.finish() }
        if accepted {
            try interactInMemory(client: pair.client, server: pair.server)
            #expect(try pair.serverSawPeer.wait().role == .client)
        } else {
            #expect(throws: TLSError.self) {
                try interactInMemory(client: pair.client, server: pair.server)
                _ = try pair.serverSawPeer.wait()
            }
            #expect(!pair.server.isActive)
        }
    }

    @Test func wrongServerNameIsRefused() throws {
        let pki = try TestPKI(nodeIP: "127.0.0.1")
        for name in ["127.0.0.2", "n2.quorumkv.test"] {
            let pair = try Pair(
                clientContext: try pki.context(pki.client, side: .client),
                serverContext: try pki.context(pki.node, side: .server),
                expectedServerName: name
            )
            defer { pair.finish() }
            #expect(throws: TLSError.serverNameMismatch) {
                try interactInMemory(client: pair.client, server: pair.server)
            }
            #expect(throws: TLSError.serverNameMismatch) { try pair.clientSawPeer.wait() }
        }
        let pair = try Pair(
            clientContext: try pki.context(pki.client, side: .client),
            serverContext: try pki.context(pki.node, side: .server),
            expectedServerName: "n1.quorumkv.test"
        )
        defer { pair.finish() }
        try interactInMemory(client: pair.client, server: pair.server)
        #expect(try pair.clientSawPeer.wait().name == "n1")
    }

    @Test func clientWithoutRoleIsRefusedInTheHandshake() throws {
        let pki = try TestPKI()
        let noRole = try CertificateIssuer.issue(roleURI: nil, name: "nobody", authority: pki.authority)
        var configuration = pki.configuration(noRole)
        configuration.allowsCertificateWithoutRole = true
        let pair = try Pair(
            clientContext: try TLSContext(configuration: configuration, side: .client),
            serverContext: try pki.context(pki.node, side: .server)
        )
        defer { pair.finish() }
        let write = pair.client.writeAndFlush(ByteBuffer(string: "let me in"))
        // The server refuses; the TLS 1.3 client learns it on its next read.
        var errors: [TLSError] = []
        for _ in 0..<4 {
            do {
                try interactInMemory(client: pair.client, server: pair.server)
                break
            } catch let error as TLSError {
                errors.append(error)
            }
        }
        #expect(errors.contains(.peerHasNoRole))
        #expect(throws: TLSError.self) { try pair.serverSawPeer.wait() }
        #expect(try readAllInbound(pair.server) == "")
        #expect(!pair.server.isActive)
        #expect(!pair.client.isActive)
        _ = write
    }

    @Test func serverWithoutRoleIsRefusedByClient() throws {
        let pki = try TestPKI()
        let noRole = try CertificateIssuer.issue(
            roleURI: "urn:quorumkv:role:superuser", name: "n9", ipAddresses: ["127.0.0.1"], authority: pki.authority
        )
        var configuration = pki.configuration(noRole)
        configuration.allowsCertificateWithoutRole = true
        let pair = try Pair(
            clientContext: try pki.context(pki.client, side: .client),
            serverContext: try TLSContext(configuration: configuration, side: .server)
        )
        defer { pair.finish() }
        #expect(throws: TLSError.peerHasNoRole) { try interactInMemory(client: pair.client, server: pair.server) }
        #expect(throws: TLSError.peerHasNoRole) { try pair.clientSawPeer.wait() }
    }
}
