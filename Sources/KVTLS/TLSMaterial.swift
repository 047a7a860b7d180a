import COpenSSL
import Glibc
import KVCore

/// One complete, immutable set of TLS material: an OpenSSL `SSL_CTX` holding our certificate and key,
/// the trusted CA certificates and the CRLs, all loaded from one `TLSConfiguration`.
///
/// A `TLSContext` holds the current material and swaps it on reload. Each connection takes the
/// material current when it starts (`SSL_new` also takes a reference on the `SSL_CTX`), so a reload
/// never changes a connection that is already up. `SSL_CTX` is safe to share once configured.
final class TLSMaterial: @unchecked Sendable {
    let sslContext: OpaquePointer
    let identity: PeerIdentity?
    let summary: TLSMaterialSummary

    /// Builds the material. Throws `TLSError.invalidConfiguration` naming the cause: a missing file, bad
    /// PEM, a key that does not match the certificate, a certificate without a QuorumKV role, a CRL
    /// no CA of the CA file signed.
    init(configuration: TLSConfiguration, side: TLSContext.Side) throws(TLSError) {
        OpenSSL.start()
        let caPEM: String
        let certificatePEM: String
        let keyPEM: String
        let crlPEM: String?
        switch configuration.source {
        case .files(let ca, let certificate, let key, let crl):
            caPEM = try OpenSSL.readFile(ca, what: "CA")
            certificatePEM =
                configuration.omitsCertificate ? "" : try OpenSSL.readFile(certificate, what: "certificate")
            if !configuration.omitsCertificate { try Self.checkPrivate(keyFile: key) }
            keyPEM = configuration.omitsCertificate ? "" : try OpenSSL.readFile(key, what: "key")
            crlPEM = try crl.map { path throws(TLSError) in try OpenSSL.readFile(path, what: "CRL") }
        case .pem(let ca, let certificate, let key, let crl):
            (caPEM, certificatePEM, keyPEM, crlPEM) = (ca, certificate, key, crl)
        }

        ERR_clear_error()
        guard let context = SSL_CTX_new(side == .server ? TLS_server_method() : TLS_client_method()) else {
            throw .invalidConfiguration("cannot create SSL_CTX: \(OpenSSL.drainErrors())")
        }
        do {
            try Self.configure(context, side: side, configuration: configuration)
            let trust = try Self.loadTrust(context, caPEM: caPEM, crlPEM: crlPEM)
            let identity: PeerIdentity?
            if configuration.omitsCertificate {
                identity = nil
            } else {
                identity = try Self.loadIdentity(
                    context, certificatePEM: certificatePEM, keyPEM: keyPEM,
                    allowsNoRole: configuration.allowsCertificateWithoutRole
                )
            }
            self.identity = identity
            self.summary = TLSMaterialSummary(
                certificate: SSL_CTX_get0_certificate(context).map { CertificateSummary(certificate: $0) },
                authorities: trust.authorities, revocationLists: trust.revocationLists)
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        self.sslContext = context
    }

    deinit {
        SSL_CTX_free(self.sslContext)
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

    private static func configure(_ context: OpaquePointer, side: TLSContext.Side, configuration: TLSConfiguration)
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

    /// Trusts exactly the certificates in `caPEM` (the cluster CA, or the old and the new one during a
    /// rotation), not the system store; with `crlPEM`, also checks every peer certificate against the
    /// CRL of the CA that issued it.
    ///
    /// Each CRL must be signed by one of the CAs, or the whole material is refused: a CRL that no CA
    /// signed would make every handshake fail with "CRL signature failure". A CA with no CRL in the
    /// file revokes nothing (the verify callback accepts "unable to get certificate CRL"), so a new CA
    /// can join the bundle before it has revoked anything.
    private static func loadTrust(_ context: OpaquePointer, caPEM: String, crlPEM: String?) throws(TLSError) -> (
        authorities: [CertificateSummary], revocationLists: [RevocationListSummary]?
    ) {
        guard let bio = OpenSSL.makeReadBIO(caPEM) else {
            throw .invalidConfiguration("cannot read CA PEM: \(OpenSSL.drainErrors())")
        }
        defer { BIO_free(bio) }
        guard let store = SSL_CTX_get_cert_store(context) else {
            throw .invalidConfiguration("SSL_CTX has no certificate store")
        }
        var authorities: [OpaquePointer] = []
        defer { authorities.forEach { X509_free($0) } }
        while let cert = PEM_read_bio_X509(bio, nil, nil, nil) {
            authorities.append(cert)
            guard X509_STORE_add_cert(store, cert) == 1 else {
                throw .invalidConfiguration("cannot add CA certificate: \(OpenSSL.drainErrors())")
            }
        }
        ERR_clear_error()  // the loop ends on "no start line"
        guard !authorities.isEmpty else {
            throw .invalidConfiguration("CA PEM holds no certificate")
        }
        let authoritySummaries = authorities.map { CertificateSummary(certificate: $0) }
        guard let crlPEM else { return (authoritySummaries, nil) }

        guard let crlBIO = OpenSSL.makeReadBIO(crlPEM) else {
            throw .invalidConfiguration("cannot read CRL PEM: \(OpenSSL.drainErrors())")
        }
        defer { BIO_free(crlBIO) }
        var lists: [RevocationListSummary] = []
        while let crl = PEM_read_bio_X509_CRL(crlBIO, nil, nil, nil) {
            defer { X509_CRL_free(crl) }
            let summary = RevocationListSummary(crl: crl)
            let signer = authorities.first { authority in
                guard let issuer = X509_get_subject_name(authority), let key = X509_get0_pubkey(authority) else {
                    return false
                }
                return X509_NAME_cmp(issuer, X509_CRL_get_issuer(crl)) == 0 && X509_CRL_verify(crl, key) == 1
            }
            ERR_clear_error()
            guard signer != nil else {
                throw .invalidConfiguration(
                    "the CRL of '\(summary.issuer)' is not signed by any CA certificate of the CA file")
            }
            guard X509_STORE_add_crl(store, crl) == 1 else {
                throw .invalidConfiguration("cannot add CRL: \(OpenSSL.drainErrors())")
            }
            lists.append(summary)
        }
        ERR_clear_error()
        guard !lists.isEmpty else {
            throw .invalidConfiguration("CRL PEM holds no certificate revocation list")
        }
        // Check the peer's own certificate (not the CA's) against its issuer's CRL.
        guard X509_STORE_set_flags(store, UInt(X509_V_FLAG_CRL_CHECK)) == 1 else {
            throw .invalidConfiguration("cannot turn CRL checking on: \(OpenSSL.drainErrors())")
        }
        return (authoritySummaries, lists)
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

// MARK: - Reload checks

extension TLSMaterial {
    /// Checks that this material may replace `current`, which a process has been serving with: the
    /// certificate names the same name and role, is valid now, and verifies against this material's
    /// own CA certificates and CRLs.
    ///
    /// The last check catches the CA-rotation step done out of order (a certificate from a new CA
    /// before the CA file trusts it: peers would refuse it too) and a certificate the CRL revokes.
    /// Starting a process does not check this much: tests and operators may start one with a
    /// certificate its peers refuse, to watch the refusal. A reload keeps a working process working.
    func checkReplaces(_ current: TLSMaterial, nowSeconds: UInt64) throws(TLSError) {
        guard let certificate = SSL_CTX_get0_certificate(self.sslContext) else {
            // A context without a certificate (a test knob) has nothing more to check.
            return
        }
        if let old = current.identity, let new = self.identity, old.name != new.name || old.role != new.role {
            throw .invalidConfiguration(
                "the new certificate is issued to '\(new.name)' (\(new.role)), but this process is '\(old.name)' (\(old.role))"
            )
        }
        let summary = CertificateSummary(certificate: certificate)
        if let notBefore = summary.notBeforeSeconds, notBefore > nowSeconds {
            throw .invalidConfiguration(
                "the new certificate is not valid before \(CertificateSummary.format(seconds: notBefore))")
        }
        if let notAfter = summary.notAfterSeconds, notAfter <= nowSeconds {
            throw .invalidConfiguration(
                "the new certificate expired on \(CertificateSummary.format(seconds: notAfter))")
        }
        try verify(certificate)
    }

    /// Verifies our own certificate (and its chain) against this material's CA store and CRLs.
    private func verify(_ certificate: OpaquePointer) throws(TLSError) {
        var chain: OpaquePointer? = nil
        _ = CQKV_SSL_CTX_get0_chain_certs(self.sslContext, &chain)
        if let reason = self.verificationFailure(of: certificate, chain: chain) {
            throw .invalidConfiguration("the new certificate does not verify against the new CA file: \(reason)")
        }
    }

    /// Why `certificate` (with the untrusted intermediates `chain`) does not verify against this
    /// material's CA certificates and CRLs, as a handshake would judge it; nil when it verifies.
    func verificationFailure(of certificate: OpaquePointer, chain: OpaquePointer?) -> String? {
        ERR_clear_error()
        defer { ERR_clear_error() }
        guard let store = SSL_CTX_get_cert_store(self.sslContext), let storeContext = X509_STORE_CTX_new() else {
            return "cannot make a verification context: \(OpenSSL.drainErrors())"
        }
        defer { X509_STORE_CTX_free(storeContext) }
        guard X509_STORE_CTX_init(storeContext, store, certificate, chain) == 1 else {
            return "cannot make a verification context: \(OpenSSL.drainErrors())"
        }
        X509_STORE_CTX_set_verify_cb(storeContext, certificateVerifyCallback)
        guard X509_verify_cert(storeContext) != 1 else { return nil }
        let code = X509_STORE_CTX_get_error(storeContext)
        return String(cString: X509_verify_cert_error_string(Int(code)))
    }
}

/// The verify callback of `TLSMaterial.verificationFailure`: OpenSSL's judgement, less the CRL
/// conditions every handshake also tolerates (`isToleratedCRLError`).
private func certificateVerifyCallback(preverifyOK: Int32, store: OpaquePointer?) -> Int32 {
    guard preverifyOK == 0, let store else { return preverifyOK }
    return isToleratedCRLError(X509_STORE_CTX_get_error(store)) ? 1 : 0
}

/// CRL conditions that do not refuse a certificate: its CA has no CRL in the file (that CA revokes
/// nothing), or the CRL's update dates have passed or not yet come (the CRL still applies: a node keeps
/// the last list it was given rather than refusing every peer when its next-update date passes).
func isToleratedCRLError(_ code: Int32) -> Bool {
    switch code {
    case X509_V_ERR_UNABLE_TO_GET_CRL, X509_V_ERR_CRL_HAS_EXPIRED, X509_V_ERR_CRL_NOT_YET_VALID: true
    default: false
    }
}
