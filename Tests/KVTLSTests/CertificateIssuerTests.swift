import Foundation
import KVCore
import Testing

@testable import KVTLS

@Suite struct CertificateIssuerTests {
    @Test func issuedCertificatesLoadWithTheirIdentity() throws {
        let pki = try TestPKI(nodeIP: "127.0.0.11")
        #expect(pki.authority.certificatePEM.hasPrefix("-----BEGIN CERTIFICATE-----"))
        // PKCS#8, unencrypted: the PEM label is the plain private-key one, not "ENCRYPTED ..." or "EC ...".
        #expect(pemLabel(pki.node.privateKeyPEM) == ["PRIVATE", "KEY"].joined(separator: " "))

        let node = try pki.context(pki.node, side: .server).localIdentity
        #expect(
            node == PeerIdentity(name: "n1", role: .node, dnsNames: ["n1.quorumkv.test"], ipAddresses: ["127.0.0.11"]))
        let client = try pki.context(pki.client, side: .client).localIdentity
        #expect(client == PeerIdentity(name: "app", role: .client))
        let admin = try pki.context(pki.admin, side: .client).localIdentity
        #expect(admin == PeerIdentity(name: "operator", role: .admin))
    }

    @Test func ipv6AndSeveralNamesRoundTrip() throws {
        let authority = try CertificateIssuer.makeAuthority(commonName: "CA")
        let cert = try CertificateIssuer.issue(
            role: .node, name: "n2", ipAddresses: ["127.0.0.12", "::1"], dnsNames: ["a.test", "b.test"],
            authority: authority
        )
        let configuration = TLSConfiguration(
            caPEM: authority.certificatePEM, certificatePEM: cert.certificatePEM, keyPEM: cert.privateKeyPEM
        )
        let identity = try TLSContext(configuration: configuration, side: .server).localIdentity
        #expect(identity.ipAddresses == ["127.0.0.12", "::1"])
        #expect(identity.dnsNames == ["a.test", "b.test"])
    }

    @Test func serialsAreRandom() throws {
        let authority = try CertificateIssuer.makeAuthority(commonName: "CA")
        let a = try CertificateIssuer.issue(role: .client, name: "x", authority: authority)
        let b = try CertificateIssuer.issue(role: .client, name: "x", authority: authority)
        #expect(a.certificatePEM != b.certificatePEM)
    }

    @Test func certificateWithoutRoleIsRejectedByContext() throws {
        let authority = try CertificateIssuer.makeAuthority(commonName: "CA")
        let cert = try CertificateIssuer.issue(roleURI: nil, name: "nobody", authority: authority)
        let configuration = TLSConfiguration(
            caPEM: authority.certificatePEM, certificatePEM: cert.certificatePEM, keyPEM: cert.privateKeyPEM
        )
        let error = #expect(throws: TLSError.self) { try TLSContext(configuration: configuration, side: .client) }
        #expect(error == .invalidConfiguration)
        #expect(error?.description.contains("no QuorumKV role") == true)
    }

    @Test func mismatchedKeyIsRejected() throws {
        let pki = try TestPKI()
        let configuration = TLSConfiguration(
            caPEM: pki.authority.certificatePEM, certificatePEM: pki.node.certificatePEM,
            keyPEM: pki.client.privateKeyPEM
        )
        let error = #expect(throws: TLSError.self) { try TLSContext(configuration: configuration, side: .server) }
        #expect(error?.description.contains("does not match") == true)
    }

    @Test func badPEMIsRejected() throws {
        let pki = try TestPKI()
        let badCertificate = TLSConfiguration(
            caPEM: pki.authority.certificatePEM, certificatePEM: "garbage", keyPEM: pki.node.privateKeyPEM
        )
        #expect(throws: TLSError.invalidConfiguration) { try TLSContext(configuration: badCertificate, side: .server) }
        let badCA = TLSConfiguration(
            caPEM: "", certificatePEM: pki.node.certificatePEM, keyPEM: pki.node.privateKeyPEM
        )
        #expect(throws: TLSError.invalidConfiguration) { try TLSContext(configuration: badCA, side: .server) }
    }

    @Test func filesAreReadAndMissingFilesNamed() throws {
        let pki = try TestPKI()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kvtls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let ca = directory.appendingPathComponent("ca.pem").path
        let cert = directory.appendingPathComponent("n1.pem").path
        let key = directory.appendingPathComponent("n1-key.pem").path
        try pki.authority.certificatePEM.write(toFile: ca, atomically: true, encoding: .utf8)
        try pki.node.certificatePEM.write(toFile: cert, atomically: true, encoding: .utf8)
        try pki.node.privateKeyPEM.write(toFile: key, atomically: true, encoding: .utf8)
        // Readable by others: refused, naming the file and the fix.
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: key)
        let exposed = #expect(throws: TLSError.self) {
            try TLSContext(
                configuration: TLSConfiguration(caFile: ca, certificateFile: cert, keyFile: key), side: .server)
        }
        #expect(exposed?.description.contains("chmod 600 \(key)") == true)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key)

        let context = try TLSContext(
            configuration: TLSConfiguration(caFile: ca, certificateFile: cert, keyFile: key), side: .server
        )
        #expect(context.localIdentity.name == "n1")

        let missing = directory.appendingPathComponent("missing.pem").path
        let error = #expect(throws: TLSError.self) {
            try TLSContext(
                configuration: TLSConfiguration(caFile: ca, certificateFile: missing, keyFile: key), side: .server
            )
        }
        #expect(error?.description.contains(missing) == true)
    }
}

/// The label of a PEM block: the text between `-----BEGIN ` and `-----` on its first line.
func pemLabel(_ pem: String) -> String? {
    guard let first = pem.split(separator: "\n").first, first.hasPrefix("-----BEGIN "), first.hasSuffix("-----")
    else { return nil }
    return String(first.dropFirst("-----BEGIN ".count).dropLast("-----".count))
}
