import COpenSSL
import Glibc
public import KVCore

/// What a TLS context loaded: its own certificate, the CA certificates it trusts and the CRLs it
/// applies. A reload answers with the new one, so an operator sees which files took effect.
public struct TLSMaterialSummary: Sendable, Hashable {
    /// Our own certificate; nil for a context made without one (a test knob).
    public var certificate: CertificateSummary?
    /// The CA certificates of the CA file, in file order (two during a CA rotation).
    public var authorities: [CertificateSummary]
    /// The CRLs of the CRL file; nil when no CRL file is configured.
    public var revocationLists: [RevocationListSummary]?

    public init(
        certificate: CertificateSummary?, authorities: [CertificateSummary],
        revocationLists: [RevocationListSummary]?
    ) {
        self.certificate = certificate
        self.authorities = authorities
        self.revocationLists = revocationLists
    }
}

/// The facts of one X.509 certificate an operator checks: whose it is, who issued it, until when.
public struct CertificateSummary: Sendable, Hashable {
    /// The subject's common name (a node id, a client's name, the CA's name).
    public var name: String
    /// The QuorumKV role of a leaf certificate; nil for a CA (or a certificate without one).
    public var role: Role?
    /// The serial number, upper-case hexadecimal (as `openssl x509 -serial` prints it).
    public var serial: String
    /// The issuer's common name.
    public var issuer: String
    /// Whether it is a CA certificate (basicConstraints CA:TRUE).
    public var isAuthority: Bool
    /// Start and end of validity, in seconds since the Unix epoch.
    public var notBeforeSeconds: UInt64?
    public var notAfterSeconds: UInt64?

    public init(
        name: String, role: Role?, serial: String, issuer: String, isAuthority: Bool, notBeforeSeconds: UInt64?,
        notAfterSeconds: UInt64?
    ) {
        self.name = name
        self.role = role
        self.serial = serial
        self.issuer = issuer
        self.isAuthority = isAuthority
        self.notBeforeSeconds = notBeforeSeconds
        self.notAfterSeconds = notAfterSeconds
    }

    init(certificate cert: OpaquePointer) {
        self.name = OpenSSL.commonName(of: cert) ?? ""
        self.role = OpenSSL.role(fromURIs: OpenSSL.subjectAlternativeNames(of: cert).uris)
        self.serial = OpenSSL.hex(X509_get0_serialNumber(cert))
        self.issuer = X509_get_issuer_name(cert).flatMap { OpenSSL.commonName(ofName: $0) } ?? ""
        self.isAuthority = X509_check_ca(cert) != 0
        self.notBeforeSeconds = OpenSSL.seconds(X509_get0_notBefore(cert))
        self.notAfterSeconds = OpenSSL.seconds(X509_get0_notAfter(cert))
        ERR_clear_error()
    }

    /// Every certificate in `pem`, in order. Throws `TLSError.invalidConfiguration` when there is none.
    public static func read(pem: String) throws(TLSError) -> [CertificateSummary] {
        OpenSSL.start()
        guard let bio = OpenSSL.makeReadBIO(pem) else {
            throw .invalidConfiguration("cannot read PEM: \(OpenSSL.drainErrors())")
        }
        defer { BIO_free(bio) }
        var summaries: [CertificateSummary] = []
        while let cert = PEM_read_bio_X509(bio, nil, nil, nil) {
            defer { X509_free(cert) }
            summaries.append(CertificateSummary(certificate: cert))
        }
        ERR_clear_error()
        guard !summaries.isEmpty else { throw .invalidConfiguration("no certificate in the PEM text") }
        return summaries
    }

    /// `2027-03-01T12:00:00Z`.
    public static func format(seconds: UInt64) -> String {
        var time = time_t(clamping: seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }
}

/// One certificate revocation list: its CA and the serials it revokes.
public struct RevocationListSummary: Sendable, Hashable {
    /// The issuing CA's common name.
    public var issuer: String
    /// The CRL number (increases with each list the CA signs); nil when absent.
    public var number: UInt64?
    /// The revoked certificates' serial numbers, upper-case hexadecimal.
    public var revokedSerials: [String]
    /// When the list was made and when its issuer promised the next one (seconds since the Unix
    /// epoch). QuorumKV goes on applying a list past its next update rather than refusing every peer.
    public var thisUpdateSeconds: UInt64?
    public var nextUpdateSeconds: UInt64?

    public init(
        issuer: String, number: UInt64?, revokedSerials: [String], thisUpdateSeconds: UInt64?,
        nextUpdateSeconds: UInt64?
    ) {
        self.issuer = issuer
        self.number = number
        self.revokedSerials = revokedSerials
        self.thisUpdateSeconds = thisUpdateSeconds
        self.nextUpdateSeconds = nextUpdateSeconds
    }

    init(crl: OpaquePointer) {
        self.issuer = X509_CRL_get_issuer(crl).flatMap { OpenSSL.commonName(ofName: $0) } ?? ""
        self.number = OpenSSL.crlNumber(crl)
        var serials: [String] = []
        if let revoked = X509_CRL_get_REVOKED(crl) {
            for index in 0..<CQKV_sk_X509_REVOKED_num(revoked) {
                guard let entry = CQKV_sk_X509_REVOKED_value(revoked, index) else { continue }
                serials.append(OpenSSL.hex(X509_REVOKED_get0_serialNumber(entry)))
            }
        }
        self.revokedSerials = serials
        self.thisUpdateSeconds = OpenSSL.seconds(X509_CRL_get0_lastUpdate(crl))
        self.nextUpdateSeconds = OpenSSL.seconds(X509_CRL_get0_nextUpdate(crl))
        ERR_clear_error()
    }

    /// Every CRL in `pem`, in order (none is not an error: a file may hold certificates only).
    public static func read(pem: String) throws(TLSError) -> [RevocationListSummary] {
        OpenSSL.start()
        guard let bio = OpenSSL.makeReadBIO(pem) else {
            throw .invalidConfiguration("cannot read PEM: \(OpenSSL.drainErrors())")
        }
        defer { BIO_free(bio) }
        var summaries: [RevocationListSummary] = []
        while let crl = PEM_read_bio_X509_CRL(bio, nil, nil, nil) {
            defer { X509_CRL_free(crl) }
            summaries.append(RevocationListSummary(crl: crl))
        }
        ERR_clear_error()
        return summaries
    }
}

extension OpenSSL {
    /// An ASN.1 integer (a serial number) in upper-case hexadecimal; "" when absent.
    static func hex(_ integer: UnsafePointer<ASN1_INTEGER>?) -> String {
        guard let integer, let number = ASN1_INTEGER_to_BN(integer, nil) else { return "" }
        defer { BN_free(number) }
        guard let text = BN_bn2hex(number) else { return "" }
        defer { CQKV_OPENSSL_free(text) }
        return String(cString: text)
    }

    /// An ASN.1 time in seconds since the Unix epoch; nil when absent, unreadable or before 1970.
    static func seconds(_ time: UnsafePointer<ASN1_TIME>?) -> UInt64? {
        guard let time else { return nil }
        var parts = tm()
        guard ASN1_TIME_to_tm(time, &parts) == 1 else { return nil }
        let seconds = timegm(&parts)
        return seconds >= 0 ? UInt64(seconds) : nil
    }

    /// The common name in an X.509 name (a subject or an issuer).
    static func commonName(ofName name: OpaquePointer) -> String? {
        let index = X509_NAME_get_index_by_NID(name, NID_commonName, -1)
        guard index >= 0, let entry = X509_NAME_get_entry(name, index), let data = X509_NAME_ENTRY_get_data(entry)
        else { return nil }
        var utf8: UnsafeMutablePointer<UInt8>? = nil
        let length = ASN1_STRING_to_UTF8(&utf8, data)
        guard length >= 0, let utf8 else { return nil }
        defer { CQKV_OPENSSL_free(utf8) }
        return String(decoding: UnsafeBufferPointer(start: utf8, count: Int(length)), as: UTF8.self)
    }

    /// A CRL's number extension; nil when absent or larger than 64 bits.
    static func crlNumber(_ crl: OpaquePointer) -> UInt64? {
        guard let raw = X509_CRL_get_ext_d2i(crl, NID_crl_number, nil, nil) else { return nil }
        let integer = raw.assumingMemoryBound(to: ASN1_INTEGER.self)
        defer { ASN1_INTEGER_free(integer) }
        var value: UInt64 = 0
        guard ASN1_INTEGER_get_uint64(&value, integer) == 1 else { return nil }
        return value
    }
}
