package import KVTLS
import KVWire

/// What one node answered to `KVClient.reloadCertificates(node:)`.
package struct CertificateReloadResult: Sendable, Hashable {
    /// The node asked.
    package var nodeID: String
    /// Why the node refused the new files (it goes on with the ones it had); nil when it reloaded.
    package var refusal: String?
    /// The node's certificate now in use: name, serial, issuer and end of validity.
    package var certificateName: String?
    package var certificateSerial: String?
    package var certificateIssuer: String?
    package var certificateNotAfterSeconds: UInt64?
    /// The names of the CA certificates the node now trusts, in its CA file's order.
    package var authorities: [String]
    /// How many certificates its CRLs revoke; nil when it has no CRL file.
    package var revokedCertificates: Int?

    package var isReloaded: Bool { refusal == nil }

    package init(
        nodeID: String, refusal: String? = nil, certificateName: String? = nil, certificateSerial: String? = nil,
        certificateIssuer: String? = nil, certificateNotAfterSeconds: UInt64? = nil, authorities: [String] = [],
        revokedCertificates: Int? = nil
    ) {
        self.nodeID = nodeID
        self.refusal = refusal
        self.certificateName = certificateName
        self.certificateSerial = certificateSerial
        self.certificateIssuer = certificateIssuer
        self.certificateNotAfterSeconds = certificateNotAfterSeconds
        self.authorities = authorities
        self.revokedCertificates = revokedCertificates
    }

    /// Reads `Admin` reloadCertificates' results (proto-spec/messages/07-admin.qkv); nil without an
    /// outcome.
    init?(nodeID: String, results: [Pair]) {
        let values = Dictionary(results.map { ($0.name, $0.value) }, uniquingKeysWith: { $1 })
        switch values["outcome"] {
        case "refused":
            self.init(nodeID: nodeID, refusal: values["reason"] ?? "no reason given")
        case "reloaded":
            let authorities = results.compactMap { pair -> (Int, String)? in
                guard pair.name.hasPrefix("ca_certificate."), let index = Int(pair.name.dropFirst(15)) else {
                    return nil
                }
                return (index, pair.value)
            }.sorted { $0.0 < $1.0 }.map(\.1)
            self.init(
                nodeID: nodeID, certificateName: values["certificate_name"],
                certificateSerial: values["certificate_serial"], certificateIssuer: values["certificate_issuer"],
                certificateNotAfterSeconds: values["certificate_not_after"].flatMap { UInt64($0) },
                authorities: authorities, revokedCertificates: values["crl_revoked"].flatMap { Int($0) })
        default:
            return nil
        }
    }
}

extension KVClient {
    /// Asks `node` to read its certificate, key, CA file and CRL file again (`Admin`
    /// reloadCertificates, as SIGHUP does): its new connections, inbound and outbound, use them, and
    /// established ones go on. Needs an admin certificate.
    ///
    /// A refusal (a file missing or broken, a key that does not match, a certificate that does not
    /// verify against the new CA file) is a result, not an error: the node keeps what it had.
    package func reloadCertificates(node: String) async throws -> CertificateReloadResult {
        try requireAdmin("reloading a node's certificates")
        let answer = try await call(
            .adminRequest(AdminRequest(command: .reloadCertificates, arguments: [])), node: node,
            in: try await currentTopology())
        guard case .adminResponse(let response) = answer else {
            throw KVClientError.protocolViolation("\(node) answered Admin with \(answer.type)")
        }
        guard let result = CertificateReloadResult(nodeID: node, results: response.results) else {
            throw KVClientError.protocolViolation("\(node) answered reloadCertificates without an outcome")
        }
        return result
    }

    /// Reads this client's own certificate, key, CA file and CRL file again
    /// (`KVClientConfiguration.tls`): connections made from now on use them; established ones go on.
    /// A long-running application calls it after its files were replaced (certificate renewal, each
    /// step of a CA rotation).
    ///
    /// - Throws: `TLSError.invalidConfiguration` saying why the new files were refused; the client
    ///   then keeps what it had.
    @discardableResult
    package func reloadCertificates() throws(TLSError) -> TLSMaterialSummary {
        try tls.reload()
    }
}
