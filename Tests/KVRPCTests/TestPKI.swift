import KVCore
import KVTLS

/// Certificates for one test cluster, made in memory.
struct TestPKI: Sendable {
    let authority: IssuedCertificate
    let node: IssuedCertificate
    let client: IssuedCertificate
    let admin: IssuedCertificate
    let nodeName = "n1"

    /// One PKI for the whole test process: key generation is the slow part.
    static let shared: TestPKI = {
        do {
            return try TestPKI()
        } catch {
            fatalError("cannot build the test PKI: \(error)")
        }
    }()

    private init() throws {
        authority = try CertificateIssuer.makeAuthority(commonName: "test CA")
        node = try CertificateIssuer.issue(
            role: .node, name: "n1", ipAddresses: ["127.0.0.1"], dnsNames: ["localhost"], authority: authority)
        client = try CertificateIssuer.issue(role: .client, name: "client", authority: authority)
        admin = try CertificateIssuer.issue(role: .admin, name: "admin", authority: authority)
    }

    func configuration(_ issued: IssuedCertificate) -> TLSConfiguration {
        TLSConfiguration(
            caPEM: authority.certificatePEM, certificatePEM: issued.certificatePEM, keyPEM: issued.privateKeyPEM)
    }

    func serverContext() throws -> TLSContext {
        try TLSContext(configuration: configuration(node), side: .server)
    }

    func clientContext(_ issued: IssuedCertificate? = nil) throws -> TLSContext {
        try TLSContext(configuration: configuration(issued ?? client), side: .client)
    }
}
