import KVCore
import Testing

@testable import KVTLS

/// `CertificateIssuer.revocationList` (`kvctl certs revoke`): CRLs a context loads, that keep what they
/// revoked before, and that only the CA of the revoked certificates may sign.
@Suite struct RevocationListTests {
    @Test func aListKeepsWhatItRevokedBeforeAndCountsItsNumberUp() throws {
        let pki = try TestPKI()
        let empty = try CertificateIssuer.revocationList(authority: pki.authority)
        let first = try #require(try RevocationListSummary.read(pem: empty).first)
        #expect(first.number == 1 && first.revokedSerials.isEmpty && first.issuer == "QuorumKV test CA")
        let nextUpdate = try #require(first.nextUpdateSeconds)
        let thisUpdate = try #require(first.thisUpdateSeconds)
        #expect(nextUpdate - thisUpdate == UInt64(CertificateIssuer.revocationListValidityDaysDefault) * 86_400)

        let client = try #require(try CertificateSummary.read(pem: pki.client.certificatePEM).first)
        let admin = try #require(try CertificateSummary.read(pem: pki.admin.certificatePEM).first)
        let one = try CertificateIssuer.revocationList(
            authority: pki.authority, revoking: [pki.client.certificatePEM], existingPEM: empty)
        // Revoking the same certificate again lists it once.
        let two = try CertificateIssuer.revocationList(
            authority: pki.authority, revoking: [pki.admin.certificatePEM, pki.client.certificatePEM],
            existingPEM: one)
        let summary = try #require(try RevocationListSummary.read(pem: two).first)
        #expect(summary.number == 3)
        #expect(Set(summary.revokedSerials) == [client.serial, admin.serial])
        #expect(summary.revokedSerials.count == 2)

        // A context loads it; its summary says what it revokes.
        let context = try TLSContext(
            configuration: TLSConfiguration(
                caPEM: pki.authority.certificatePEM, certificatePEM: pki.node.certificatePEM,
                keyPEM: pki.node.privateKeyPEM, crlPEM: two),
            side: .server)
        #expect(context.summary.revocationLists == [summary])
    }

    @Test func onlyTheIssuingCAMayRevokeAndExtendAList() throws {
        let pki = try TestPKI()
        let other = try CertificateIssuer.makeAuthority(commonName: "QuorumKV test CA")
        let error = #expect(throws: TLSError.self) {
            try CertificateIssuer.revocationList(authority: other, revoking: [pki.client.certificatePEM])
        }
        #expect(error?.description.contains("was not issued by this CA") == true, "\(error.map { "\($0)" } ?? "")")
        let list = try CertificateIssuer.revocationList(authority: pki.authority)
        let foreign = #expect(throws: TLSError.self) {
            try CertificateIssuer.revocationList(authority: other, existingPEM: list)
        }
        #expect(foreign?.description.contains("not signed by this CA") == true)
        // A context refuses a CRL no CA of its CA file signed: it would fail every handshake.
        let refused = #expect(throws: TLSError.self) {
            try TLSContext(
                configuration: TLSConfiguration(
                    caPEM: other.certificatePEM, certificatePEM: pki.node.certificatePEM,
                    keyPEM: pki.node.privateKeyPEM, crlPEM: list),
                side: .server)
        }
        #expect(refused?.description.contains("not signed by any CA certificate") == true)
    }

    @Test func summariesNameTheCertificateAndItsIssuer() throws {
        let pki = try TestPKI()
        let node = try #require(try CertificateSummary.read(pem: pki.node.certificatePEM).first)
        #expect(node.name == "n1" && node.role == .node && node.issuer == "QuorumKV test CA" && !node.isAuthority)
        #expect(node.serial.count == 32)
        let notBefore = try #require(node.notBeforeSeconds)
        let notAfter = try #require(node.notAfterSeconds)
        #expect(notAfter - notBefore == UInt64(CertificateIssuer.leafValidityDaysDefault) * 86_400)
        let authority = try #require(try CertificateSummary.read(pem: pki.authority.certificatePEM).first)
        #expect(authority.isAuthority && authority.role == nil)
        #expect(CertificateSummary.format(seconds: 86_400 * 365 + 3_723) == "1971-01-01T01:02:03Z")
    }
}
