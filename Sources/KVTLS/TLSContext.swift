import COpenSSL
import Glibc
import KVCore

/// An OpenSSL `SSL_CTX` set up for QuorumKV: TLS 1.3 only, mutual authentication against the one
/// cluster CA, and a role in every certificate.
///
/// Immutable after `init`, so one context serves every connection of a node or client from any event
/// loop (`SSL_CTX` is safe to share once configured). Make a new context to reload certificates.
public final class TLSContext: @unchecked Sendable {
    /// Which end of connections this context serves. A client additionally requires the server's
    /// certificate to carry the `node` role.
    public enum Side: Sendable {
        case server
        case client
    }

    let sslContext: OpaquePointer
    public let side: Side
    private let identity: PeerIdentity?
    /// When our own certificate expires, in seconds since the Unix epoch; nil without a certificate.
    public let certificateNotAfterSeconds: UInt64?

    /// The name, role and SANs of our own certificate.
    ///
    /// A context made with the package-only `omitsCertificate` or `allowsCertificateWithoutRole` knobs
    /// may have no role; it then reports an empty name with the client role.
    public var localIdentity: PeerIdentity { self.identity ?? PeerIdentity(name: "", role: .client) }

    /// Builds the context. Throws `TLSError.invalidConfiguration` naming the cause: a missing file, bad
    /// PEM, a key that does not match the certificate, or a certificate without a QuorumKV role.
    public init(configuration: TLSConfiguration, side: Side) throws {
        let caPEM: String
        let certificatePEM: String
        let keyPEM: String
        switch configuration.source {
        case .files(let ca, let certificate, let key):
            caPEM = try OpenSSL.readFile(ca, what: "CA")
            certificatePEM =
                configuration.omitsCertificate ? "" : try OpenSSL.readFile(certificate, what: "certificate")
            if !configuration.omitsCertificate { try Self.checkPrivate(keyFile: key) }
            keyPEM = configuration.omitsCertificate ? "" : try OpenSSL.readFile(key, what: "key")
        case .pem(let ca, let certificate, let key):
            (caPEM, certificatePEM, keyPEM) = (ca, certificate, key)
        }

        ERR_clear_error()
        guard let context = SSL_CTX_new(side == .server ? TLS_server_method() : TLS_client_method()) else {
            throw TLSError.invalidConfiguration("cannot create SSL_CTX: \(OpenSSL.drainErrors())")
        }
        do {
            try Self.configure(context, side: side, configuration: configuration)
            try Self.loadTrust(context, caPEM: caPEM)
            if configuration.omitsCertificate {
                self.identity = nil
            } else {
                self.identity = try Self.loadIdentity(
                    context, certificatePEM: certificatePEM, keyPEM: keyPEM,
                    allowsNoRole: configuration.allowsCertificateWithoutRole
                )
            }
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        self.sslContext = context
        self.side = side
        self.certificateNotAfterSeconds = Self.notAfterSeconds(context)
    }

    /// The end of validity of the context's certificate, in seconds since the Unix epoch.
    private static func notAfterSeconds(_ context: OpaquePointer) -> UInt64? {
        guard let certificate = SSL_CTX_get0_certificate(context), let notAfter = X509_get0_notAfter(certificate)
        else { return nil }
        var time = tm()
        guard ASN1_TIME_to_tm(notAfter, &time) == 1 else { return nil }
        let seconds = timegm(&time)
        return seconds >= 0 ? UInt64(seconds) : nil
    }

    /// Refuses a private key file that its group or others may read or write: whoever can read it can
    /// act as this node or client (ssh refuses such keys the same way).
    private static func checkPrivate(keyFile path: String) throws(TLSError) {
        var status = stat()
        guard stat(path, &status) == 0 else { return }  // reading it names the error
        let mode = status.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw .invalidConfiguration(
                "private key file \(path) has mode 0\(String(mode, radix: 8)): it must not be readable by group or others (chmod 600 \(path))"
            )
        }
    }

    deinit {
        SSL_CTX_free(self.sslContext)
    }

    private static func configure(_ context: OpaquePointer, side: Side, configuration: TLSConfiguration)
        throws(TLSError)
    {
        let versionMax: Int32 = configuration.protocolVersionMax == .tls13 ? TLS1_3_VERSION : TLS1_2_VERSION
        guard CQKV_SSL_CTX_set_min_proto_version(context, versionMax) == 1,
            CQKV_SSL_CTX_set_max_proto_version(context, versionMax) == 1
        else {
            throw .invalidConfiguration("cannot restrict protocol versions: \(OpenSSL.drainErrors())")
        }
        guard CQKV_SSL_CTX_set1_groups_list(context, configuration.keyExchangeGroups) == 1 else {
            throw .invalidConfiguration(
                "cannot set the key-exchange groups \(configuration.keyExchangeGroups): \(OpenSSL.drainErrors())")
        }
        SSL_CTX_set_options(
            context,
            CQKV_SSL_OP_NO_COMPRESSION | CQKV_SSL_OP_NO_RENEGOTIATION | CQKV_SSL_OP_NO_TICKET
                | CQKV_SSL_OP_CIPHER_SERVER_PREFERENCE
        )
        _ = CQKV_SSL_CTX_set_mode(context, CQKV_SSL_MODE_RELEASE_BUFFERS)
        // No resumption: every connection proves its certificate again.
        _ = CQKV_SSL_CTX_set_session_cache_mode(context, CQKV_SSL_SESS_CACHE_OFF)
        _ = SSL_CTX_set_num_tickets(context, 0)
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, quorumKVVerifyCallback)
        SSL_CTX_set_verify_depth(context, 4)
    }

    /// Trusts exactly the certificates in `caPEM` (the cluster CA), not the system store.
    private static func loadTrust(_ context: OpaquePointer, caPEM: String) throws(TLSError) {
        guard let bio = OpenSSL.makeReadBIO(caPEM) else {
            throw .invalidConfiguration("cannot read CA PEM: \(OpenSSL.drainErrors())")
        }
        defer { BIO_free(bio) }
        guard let store = SSL_CTX_get_cert_store(context) else {
            throw .invalidConfiguration("SSL_CTX has no certificate store")
        }
        var count = 0
        while let cert = PEM_read_bio_X509(bio, nil, nil, nil) {
            defer { X509_free(cert) }
            guard X509_STORE_add_cert(store, cert) == 1 else {
                throw .invalidConfiguration("cannot add CA certificate: \(OpenSSL.drainErrors())")
            }
            count += 1
        }
        ERR_clear_error()  // the loop ends on "no start line"
        guard count > 0 else {
            throw .invalidConfiguration("CA PEM holds no certificate")
        }
    }

    private static func loadIdentity(
        _ context: OpaquePointer,
        certificatePEM: String,
        keyPEM: String,
        allowsNoRole: Bool
    ) throws(TLSError) -> PeerIdentity? {
        guard let certBIO = OpenSSL.makeReadBIO(certificatePEM) else {
            throw .invalidConfiguration("cannot read certificate PEM: \(OpenSSL.drainErrors())")
        }
        defer { BIO_free(certBIO) }
        ERR_clear_error()
        guard let cert = PEM_read_bio_X509(certBIO, nil, nil, nil) else {
            throw .invalidConfiguration("bad certificate PEM: \(OpenSSL.drainErrors())")
        }
        defer { X509_free(cert) }
        let identity = PeerIdentity(certificate: cert)
        if identity == nil && !allowsNoRole {
            throw .invalidConfiguration("certificate has no QuorumKV role (URI SAN \(Role.uriPrefix)<role>)")
        }
        guard SSL_CTX_use_certificate(context, cert) == 1 else {
            throw .invalidConfiguration("cannot use certificate: \(OpenSSL.drainErrors())")
        }
        // Intermediate certificates, if the file carries a chain.
        while let extra = PEM_read_bio_X509(certBIO, nil, nil, nil) {
            guard CQKV_SSL_CTX_add0_chain_cert(context, extra) == 1 else {
                X509_free(extra)
                throw .invalidConfiguration("cannot add chain certificate: \(OpenSSL.drainErrors())")
            }
        }
        ERR_clear_error()

        guard let keyBIO = OpenSSL.makeReadBIO(keyPEM) else {
            throw .invalidConfiguration("cannot read key PEM: \(OpenSSL.drainErrors())")
        }
        defer { BIO_free(keyBIO) }
        guard let key = PEM_read_bio_PrivateKey(keyBIO, nil, nil, nil) else {
            throw .invalidConfiguration("bad private key PEM: \(OpenSSL.drainErrors())")
        }
        defer { EVP_PKEY_free(key) }
        guard X509_check_private_key(cert, key) == 1 else {
            ERR_clear_error()
            throw .invalidConfiguration("private key does not match certificate")
        }
        guard SSL_CTX_use_PrivateKey(context, key) == 1 else {
            throw .invalidConfiguration("cannot use private key: \(OpenSSL.drainErrors())")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw .invalidConfiguration("private key does not match certificate: \(OpenSSL.drainErrors())")
        }
        return identity
    }
}

// MARK: - Verification

/// Ex-data slot on each `SSL` where the verify callback leaves why it refused a peer.
let verifyFailureIndex: Int32 = CQKV_SSL_get_ex_new_index()

/// Why `quorumKVVerifyCallback` refused a leaf certificate that OpenSSL had accepted.
enum VerifyFailure: Int {
    case noRole = 1
    case serverNotNode = 2

    /// Stored in the `SSL`'s ex-data as a small integer, never dereferenced.
    var pointer: UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: self.rawValue) }

    init?(ssl: OpaquePointer) {
        guard let raw = SSL_get_ex_data(ssl, verifyFailureIndex) else { return nil }
        self.init(rawValue: Int(bitPattern: raw))
    }
}

/// Runs after OpenSSL judged each certificate of the peer's chain: at depth 0 (the peer's own
/// certificate) it also requires a QuorumKV role, and on the client side the `node` role. Refusing
/// here makes the handshake fail with an alert, so a peer without a role never gets a connection.
private func quorumKVVerifyCallback(preverifyOK: Int32, store: OpaquePointer?) -> Int32 {
    guard preverifyOK == 1, let store else { return preverifyOK }
    guard X509_STORE_CTX_get_error_depth(store) == 0, let cert = X509_STORE_CTX_get_current_cert(store) else {
        return 1
    }
    let ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()).map { OpaquePointer($0) }
    let role = OpenSSL.role(fromURIs: OpenSSL.subjectAlternativeNames(of: cert).uris)
    let failure: VerifyFailure?
    switch role {
    case .none: failure = .noRole
    case .some(.node): failure = nil
    case .some: failure = (ssl.map { SSL_is_server($0) } ?? 1) == 0 ? .serverNotNode : nil
    }
    guard let failure else { return 1 }
    if let ssl { _ = SSL_set_ex_data(ssl, verifyFailureIndex, failure.pointer) }
    X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION)
    return 0
}
