import Foundation
import KVCore
import KVRPC
import KVTLS
import KVWire
import Logging
import NIOCore
import Testing

/// Certificate reload, CA bundles and CRLs over real loopback RPC (issue 16): a context reloaded from
/// its files serves new connections, inbound and outbound, with the new material while established
/// ones go on; refused files leave the old material serving; a CA file with two CAs trusts the leaves
/// of both; a certificate a CRL lists is refused in the handshake.
@Suite(.timeLimit(.minutes(2)))
struct CertificateReloadTests {
    /// Files a test rewrites between reloads, in a folder of their own.
    struct Folder {
        let path: String

        init() throws {
            path =
                FileManager.default.temporaryDirectory.appendingPathComponent("kvrpc-reload-\(UUID().uuidString)")
                .path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }

        /// Writes `text` to `name` in the folder (replacing it) with `mode`, and returns its path.
        @discardableResult
        func write(_ text: String, _ name: String, mode: Int = 0o644) throws -> String {
            let file = "\(path)/\(name)"
            try? FileManager.default.removeItem(atPath: file)
            guard
                FileManager.default.createFile(
                    atPath: file, contents: Data(text.utf8), attributes: [.posixPermissions: mode])
            else { throw CocoaError(.fileWriteUnknown) }
            return file
        }

        /// Writes a CA file (the certificates of `authorities`), `issued`'s certificate and key, and a
        /// CRL file when given; returns the configuration that reads them.
        func write(
            authorities: [IssuedCertificate], issued: IssuedCertificate, crl: String? = nil, prefix: String
        ) throws -> TLSConfiguration {
            let ca = try write(authorities.map(\.certificatePEM).joined(), "\(prefix)-ca.pem")
            let certificate = try write(issued.certificatePEM, "\(prefix).pem")
            let key = try write(issued.privateKeyPEM, "\(prefix)-key.pem", mode: 0o600)
            let crlFile = try crl.map { try write($0, "\(prefix)-crl.pem") }
            return TLSConfiguration(caFile: ca, certificateFile: certificate, keyFile: key, crlFile: crlFile)
        }

        func remove() {
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    /// A way to make a server's files unacceptable, and what the refused reload must say.
    struct Breakage: Sendable {
        var name: String
        var reason: String
        var apply: @Sendable () throws -> Void

        init(_ name: String, _ reason: String, apply: @escaping @Sendable () throws -> Void) {
            self.name = name
            self.reason = reason
            self.apply = apply
        }
    }

    /// Runs an `RPCServer` with `tls` on `host` for the duration of `body`, and stops it afterwards.
    func withServer<T: Sendable>(
        _ tls: TLSContext, host: String, _ body: @Sendable (RPCServer) async throws -> T
    ) async throws -> T {
        var configuration = RPCServerConfiguration(host: host, port: 0, clusterID: "test", nodeID: "n1")
        configuration.handshakeTimeout = .seconds(300)  // a busy CI machine is not what these tests are about
        let server = try await RPCServer.bind(
            configuration: configuration, tls: tls, service: EchoService(),
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            defer {
                server.stopAccepting()
                group.cancelAll()
            }
            return try await body(server)
        }
    }

    func connect(_ server: RPCServer, host: String, tls: TLSContext, role: Role = .client) async throws
        -> RPCConnection
    {
        try await RPCConnection.connect(
            host: host, port: server.localAddress.port ?? 0, tls: tls, hello: hello(role: role),
            timeout: .seconds(10))
    }

    /// A ping on `connection` is answered.
    func expectAnswers(_ connection: RPCConnection, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let answer = try await connection.call(.pingRequest(PingRequest(epoch: 0, clock: 5)), timeout: .seconds(10))
        guard case .pingResponse = answer else {
            Issue.record("answered \(answer.type)", sourceLocation: sourceLocation)
            return
        }
    }

    /// Connecting fails, and the reason contains `text`.
    func expectRefused(
        _ server: RPCServer, host: String, tls: TLSContext, _ text: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        let failedBefore = server.statistics.handshakesFailedCount
        do {
            let connection = try await connect(server, host: host, tls: tls)
            await connection.close()
            Issue.record("the connection was accepted", sourceLocation: sourceLocation)
        } catch {
            // The reason, or (when the peer's close overtakes the local TLS error) a closed connection
            // whose handshake the server counted as failed.
            var closedInHandshake = false
            if "\(error)".contains("connection closed") {
                // The server counts the failed handshake once its side of the connection ends.
                let deadline = ContinuousClock.now + .seconds(20)
                while server.statistics.handshakesFailedCount == failedBefore, ContinuousClock.now < deadline {
                    try? await Task.sleep(for: .milliseconds(20))
                }
                closedInHandshake = server.statistics.handshakesFailedCount > failedBefore
            }
            #expect(
                "\(error)".contains(text) || closedInHandshake, "\(error)", sourceLocation: sourceLocation)
        }
    }

    static func node(_ authority: IssuedCertificate, ip: String, dns: [String] = [], name: String = "n1") throws
        -> IssuedCertificate
    {
        try CertificateIssuer.issue(role: .node, name: name, ipAddresses: [ip], dnsNames: dns, authority: authority)
    }

    static func client(_ authority: IssuedCertificate, name: String = "app") throws -> IssuedCertificate {
        try CertificateIssuer.issue(role: .client, name: name, authority: authority)
    }

    @Test func reloadServesNewConnectionsWithTheNewFilesWhileEstablishedOnesGoOn() async throws {
        let host = "127.0.0.95"
        let folder = try Folder()
        defer { folder.remove() }
        let old = try CertificateIssuer.makeAuthority(commonName: "old CA")
        let new = try CertificateIssuer.makeAuthority(commonName: "new CA")
        let serverFiles = try folder.write(
            authorities: [old], issued: try Self.node(old, ip: host, dns: ["before.test"]), prefix: "server")
        let clientFiles = try folder.write(authorities: [old], issued: try Self.client(old), prefix: "client")
        let serverTLS = try TLSContext(configuration: serverFiles, side: .server)
        let clientTLS = try TLSContext(configuration: clientFiles, side: .client)
        try await withServer(serverTLS, host: host) { server in
            let established = try await connect(server, host: host, tls: clientTLS)
            #expect(established.server.dnsNames == ["before.test"])
            let rpcClient = RPCClient(
                host: host, port: server.localAddress.port ?? 0, tls: clientTLS, hello: hello())
            _ = try await rpcClient.call(.pingRequest(PingRequest(epoch: 0, clock: 1)), timeout: .seconds(10))

            // The server moves to the new CA: a certificate it issued, a CA file trusting both.
            try folder.write(try Self.node(new, ip: host, dns: ["after.test"]).certificatePEM, "server.pem")
            try folder.write(
                try Self.node(new, ip: host, dns: ["after.test"]).privateKeyPEM, "server-key.pem", mode: 0o600)
            // (That key belongs to another certificate: refused, nothing changes.)
            #expect(throws: TLSError.invalidConfiguration) { try serverTLS.reload() }
            #expect(serverTLS.summary.certificate?.issuer == "old CA")
            let moved = try Self.node(new, ip: host, dns: ["after.test"])
            try folder.write(moved.certificatePEM, "server.pem")
            try folder.write(moved.privateKeyPEM, "server-key.pem", mode: 0o600)
            try folder.write(old.certificatePEM + new.certificatePEM, "server-ca.pem")
            let summary = try serverTLS.reload()
            #expect(summary.certificate?.issuer == "new CA")
            #expect(summary.authorities.map(\.name) == ["old CA", "new CA"])
            #expect(serverTLS.localIdentity.dnsNames == ["after.test"])

            // The connection made before goes on, with the material it started with.
            try await expectAnswers(established)
            #expect(established.server.dnsNames == ["before.test"])
            // A new connection gets the new certificate, which this client (trusting the old CA only)
            // refuses: the server really serves new connections with the new files.
            await expectRefused(server, host: host, tls: clientTLS, "certificate verify failed")

            // The client side reloads too: its CA file now trusts both CAs. Its new outbound
            // connections, direct and through an RPCClient, verify the new certificate.
            try folder.write(old.certificatePEM + new.certificatePEM, "client-ca.pem")
            try clientTLS.reload()
            let fresh = try await connect(server, host: host, tls: clientTLS)
            #expect(fresh.server.dnsNames == ["after.test"])
            try await expectAnswers(fresh)
            await fresh.close()
            await established.close()
            // The RPCClient's connection was made before: it goes on; once closed, the redial uses the
            // reloaded client material.
            _ = try await rpcClient.call(.pingRequest(PingRequest(epoch: 0, clock: 2)), timeout: .seconds(10))
            let redial = try await rpcClient.connection()
            await redial.close()
            _ = try await rpcClient.call(
                .pingRequest(PingRequest(epoch: 0, clock: 3)), timeout: .seconds(10), probe: true)
            #expect(try await rpcClient.connection().server.dnsNames == ["after.test"])
            await rpcClient.close()
        }
    }

    @Test func refusedReloadsKeepTheMaterialInUseAndSayWhy() async throws {
        let host = "127.0.0.96"
        let folder = try Folder()
        defer { folder.remove() }
        let authority = try CertificateIssuer.makeAuthority(commonName: "cluster CA")
        let stranger = try CertificateIssuer.makeAuthority(commonName: "stranger CA")
        let node = try Self.node(authority, ip: host)
        let emptyList = try CertificateIssuer.revocationList(authority: authority)
        let files = try folder.write(authorities: [authority], issued: node, crl: emptyList, prefix: "server")
        let serverTLS = try TLSContext(configuration: files, side: .server)
        let serial = try #require(serverTLS.summary.certificate?.serial)
        let app = try Self.client(authority)
        let clientTLS = try TLSContext(
            configuration: TLSConfiguration(
                caPEM: authority.certificatePEM, certificatePEM: app.certificatePEM, keyPEM: app.privateKeyPEM),
            side: .client)
        let other = try Self.node(authority, ip: host)
        let expired = try CertificateIssuer.issue(
            role: .node, name: "n1", ipAddresses: [host], authority: authority, validityDays: 10,
            notBeforeOffsetDays: -20)
        let fromStranger = try Self.node(stranger, ip: host)
        let anotherNode = try Self.node(authority, ip: host, name: "n2")
        let strangersList = try CertificateIssuer.revocationList(authority: stranger)

        let breakages = [
            Breakage("key of another certificate", "private key does not match certificate") {
                try folder.write(other.privateKeyPEM, "server-key.pem", mode: 0o600)
            },
            Breakage("garbage certificate", "bad certificate PEM") {
                try folder.write("garbage", "server.pem")
            },
            Breakage("CA file gone", "cannot read CA file") {
                try FileManager.default.removeItem(atPath: "\(folder.path)/server-ca.pem")
            },
            Breakage("key readable by others", "chmod 600") {
                try folder.write(node.privateKeyPEM, "server-key.pem", mode: 0o644)
            },
            Breakage("expired certificate", "expired") {
                try folder.write(expired.certificatePEM, "server.pem")
                try folder.write(expired.privateKeyPEM, "server-key.pem", mode: 0o600)
            },
            Breakage("certificate of a CA the CA file lacks", "does not verify against the new CA file") {
                try folder.write(fromStranger.certificatePEM, "server.pem")
                try folder.write(fromStranger.privateKeyPEM, "server-key.pem", mode: 0o600)
            },
            Breakage("certificate for another node", "issued to 'n2'") {
                try folder.write(anotherNode.certificatePEM, "server.pem")
                try folder.write(anotherNode.privateKeyPEM, "server-key.pem", mode: 0o600)
            },
            Breakage("CRL no CA of the CA file signed", "not signed by any CA certificate") {
                try folder.write(strangersList, "server-crl.pem")
            },
        ]
        try await withServer(serverTLS, host: host) { server in
            for breakage in breakages {
                let name = breakage.name
                _ = try folder.write(authorities: [authority], issued: node, crl: emptyList, prefix: "server")
                try breakage.apply()
                let error = #expect(throws: TLSError.self, "\(name)") { try serverTLS.reload() }
                #expect(
                    error?.description.contains(breakage.reason) == true, "\(name): \(error.map { "\($0)" } ?? "")")
                // The material in use is unchanged, and new connections still get it.
                #expect(serverTLS.summary.certificate?.serial == serial, "\(name)")
                let connection = try await connect(server, host: host, tls: clientTLS)
                #expect(connection.server.name == "n1", "\(name)")
                try await expectAnswers(connection)
                await connection.close()
            }
        }
    }

    @Test func aCAFileWithTwoAuthoritiesTrustsTheLeavesOfBoth() async throws {
        let host = "127.0.0.97"
        // Two CAs of the same name (the default name of `kvctl certs init`), told apart by their keys.
        let first = try CertificateIssuer.makeAuthority(commonName: "QuorumKV cluster CA")
        let second = try CertificateIssuer.makeAuthority(commonName: "QuorumKV cluster CA")
        let third = try CertificateIssuer.makeAuthority(commonName: "another cluster's CA")
        let bundle = first.certificatePEM + second.certificatePEM
        @Sendable func context(_ issued: IssuedCertificate, _ side: TLSContext.Side, trusting ca: String = bundle)
            throws
            -> TLSContext
        {
            try TLSContext(
                configuration: TLSConfiguration(
                    caPEM: ca, certificatePEM: issued.certificatePEM, keyPEM: issued.privateKeyPEM),
                side: side)
        }
        // Inbound: a node whose certificate the first CA issued accepts clients of either CA.
        let server = try context(try Self.node(first, ip: host), .server)
        #expect(server.summary.authorities.count == 2)
        try await withServer(server, host: host) { server in
            for authority in [first, second] {
                let connection = try await connect(
                    server, host: host, tls: try context(try Self.client(authority), .client))
                try await expectAnswers(connection)
                await connection.close()
            }
            await expectRefused(
                server, host: host,
                tls: try context(try Self.client(third), .client, trusting: bundle + third.certificatePEM),
                "unknown ca")
        }
        // Outbound: a client trusting both verifies a node whose certificate the second CA issued.
        let secondServer = try context(try Self.node(second, ip: host), .server)
        try await withServer(secondServer, host: host) { server in
            let connection = try await connect(server, host: host, tls: try context(try Self.client(first), .client))
            #expect(connection.server.name == "n1")
            try await expectAnswers(connection)
            await connection.close()
        }
    }

    @Test func aCertificateTheCRLListsIsRefusedInTheHandshake() async throws {
        let host = "127.0.0.95"
        let folder = try Folder()
        defer { folder.remove() }
        let authority = try CertificateIssuer.makeAuthority(commonName: "cluster CA")
        let newer = try CertificateIssuer.makeAuthority(commonName: "newer CA")
        let revoked = try Self.client(authority, name: "revoked")
        let kept = try Self.client(authority, name: "kept")
        let list = try CertificateIssuer.revocationList(authority: authority, revoking: [revoked.certificatePEM])
        let files = try folder.write(
            authorities: [authority, newer], issued: try Self.node(authority, ip: host), crl: list, prefix: "server")
        let serverTLS = try TLSContext(configuration: files, side: .server)
        #expect(serverTLS.summary.revocationLists?.first?.revokedSerials.count == 1)
        @Sendable func client(_ issued: IssuedCertificate, crl: String? = nil) throws -> TLSContext {
            try TLSContext(
                configuration: TLSConfiguration(
                    caPEM: authority.certificatePEM + newer.certificatePEM, certificatePEM: issued.certificatePEM,
                    keyPEM: issued.privateKeyPEM, crlPEM: crl),
                side: .client)
        }
        try await withServer(serverTLS, host: host) { server in
            await expectRefused(server, host: host, tls: try client(revoked), "revoked")
            let established = try await connect(server, host: host, tls: try client(kept))
            try await expectAnswers(established)
            // A CA with no CRL in the file (a new CA, mid-rotation) revokes nothing.
            let fromNewer = try await connect(server, host: host, tls: try client(try Self.client(newer)))
            try await expectAnswers(fromNewer)
            await fromNewer.close()
            #expect(server.statistics.handshakesFailedCount >= 1)

            // Revoking the other one takes effect on reload, for new connections.
            let longer = try CertificateIssuer.revocationList(
                authority: authority, revoking: [kept.certificatePEM], existingPEM: list)
            try folder.write(longer, "server-crl.pem")
            let summary = try serverTLS.reload()
            #expect(summary.revocationLists?.first?.revokedSerials.count == 2)
            await expectRefused(server, host: host, tls: try client(kept), "revoked")
            await expectRefused(server, host: host, tls: try client(revoked), "revoked")
            try await expectAnswers(established)
            await established.close()
        }
        // The client side applies its CRL to the node it dials: a revoked node certificate is refused.
        let revokedNode = try Self.node(authority, ip: host)
        let nodeList = try CertificateIssuer.revocationList(
            authority: authority, revoking: [revokedNode.certificatePEM])
        let revokedServer = try TLSContext(
            configuration: TLSConfiguration(
                caPEM: authority.certificatePEM, certificatePEM: revokedNode.certificatePEM,
                keyPEM: revokedNode.privateKeyPEM),
            side: .server)
        try await withServer(revokedServer, host: host) { server in
            await expectRefused(server, host: host, tls: try client(kept, crl: nodeList), "revoked")
        }
    }
}
