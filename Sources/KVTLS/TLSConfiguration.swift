/// The highest TLS version a context offers. Production always uses `.tls13`; tests lower it to
/// check that a TLS 1.2-only peer is refused.
package enum TLSProtocolVersion: Sendable, Hashable {
    case tls12
    case tls13
}

/// Where a TLS context gets its trust anchor and its own certificate and key: PEM files or PEM text.
///
/// Files are read when a `TLSContext` is made, and again by `TLSContext.reload()` (a node's SIGHUP or
/// `kvctl certs reload`), so new files take effect without a restart.
///
/// The CA file may hold several CA certificates (during a CA rotation, the old and the new one): a
/// peer whose certificate any of them issued is trusted. The optional certificate revocation list
/// (CRL) file may hold one CRL per CA; a certificate it lists is refused in the handshake.
public struct TLSConfiguration: Sendable {
    enum Source: Sendable {
        case files(ca: String, certificate: String, key: String, crl: String?)
        case pem(ca: String, certificate: String, key: String, crl: String?)
    }

    var source: Source

    /// The highest protocol version offered; the lowest is 1.3 unless this is lower.
    package var protocolVersionMax: TLSProtocolVersion = .tls13

    /// The TLS 1.3 key-exchange groups offered and accepted, in OpenSSL's list syntax. Only X25519
    /// and P-256: OpenSSL also accepts finite-field groups up to 8192 bits, and a peer that offers only
    /// those would make a node compute such a key exchange for every connection it opens. Tests change
    /// it to see a peer offering other groups refused.
    package var keyExchangeGroups = "X25519:P-256"

    /// Test knob: load no certificate or key, so the peer sees a client without a certificate.
    package var omitsCertificate: Bool = false

    /// Test knob: accept our own certificate even if it carries no QuorumKV role, so tests can
    /// present one to a peer and watch it be refused.
    package var allowsCertificateWithoutRole: Bool = false

    /// Reads the cluster CA (one or more CA certificates), our certificate and our private key from PEM
    /// files, and the certificate revocation lists from `crlFile` when given.
    public init(caFile: String, certificateFile: String, keyFile: String, crlFile: String? = nil) {
        self.source = .files(ca: caFile, certificate: certificateFile, key: keyFile, crl: crlFile)
    }

    /// Takes the cluster CA, our certificate, our private key and optionally CRLs as PEM text.
    public init(caPEM: String, certificatePEM: String, keyPEM: String, crlPEM: String? = nil) {
        self.source = .pem(ca: caPEM, certificate: certificatePEM, key: keyPEM, crl: crlPEM)
    }

    /// The CRL file, when the configuration reads files and names one.
    public var crlFile: String? {
        if case .files(_, _, _, let crl) = source { return crl }
        return nil
    }
}
