import KVCore
import KVTLS
import NIOCore
import NIOEmbedded

/// A CA and certificates for every role, made once per test (issuing is cheap: P-256).
struct TestPKI {
    let authority: IssuedCertificate
    let node: IssuedCertificate
    let client: IssuedCertificate
    let admin: IssuedCertificate

    init(nodeIP: String = "127.0.0.1") throws {
        self.authority = try CertificateIssuer.makeAuthority(commonName: "QuorumKV test CA")
        self.node = try CertificateIssuer.issue(
            role: .node, name: "n1", ipAddresses: [nodeIP], dnsNames: ["n1.quorumkv.test"], authority: self.authority
        )
        self.client = try CertificateIssuer.issue(role: .client, name: "app", authority: self.authority)
        self.admin = try CertificateIssuer.issue(role: .admin, name: "operator", authority: self.authority)
    }

    func configuration(_ certificate: IssuedCertificate) -> TLSConfiguration {
        TLSConfiguration(
            caPEM: self.authority.certificatePEM,
            certificatePEM: certificate.certificatePEM,
            keyPEM: certificate.privateKeyPEM
        )
    }

    func context(_ certificate: IssuedCertificate, side: TLSContext.Side) throws -> TLSContext {
        try TLSContext(configuration: self.configuration(certificate), side: side)
    }
}

/// Moves bytes between two embedded channels until neither has anything to send. Bytes a channel
/// wrote before closing (an alert, close_notify) are still delivered, as TCP would.
func interactInMemory(client: EmbeddedChannel, server: EmbeddedChannel) throws {
    var workToDo = true
    while workToDo {
        workToDo = false
        client.embeddedEventLoop.run()
        server.embeddedEventLoop.run()
        if let fromClient = try client.readOutbound(as: ByteBuffer.self) {
            if server.isActive { try server.writeInbound(fromClient) }
            workToDo = true
        }
        if let fromServer = try server.readOutbound(as: ByteBuffer.self) {
            if client.isActive { try client.writeInbound(fromServer) }
            workToDo = true
        }
    }
}

/// Reads every plaintext buffer an embedded channel passed up, as one string.
func readAllInbound(_ channel: EmbeddedChannel) throws -> String {
    var text = ""
    while var buffer = try channel.readInbound(as: ByteBuffer.self) {
        text += buffer.readString(length: buffer.readableBytes) ?? ""
    }
    return text
}
