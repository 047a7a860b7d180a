import COpenSSL
public import KVCore

/// A certificate and its private key, both PEM (the key unencrypted, in PKCS#8 form).
public struct IssuedCertificate: Sendable {
    public var certificatePEM: String
    public var privateKeyPEM: String

    public init(certificatePEM: String, privateKeyPEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }
}

/// Makes the cluster CA and the node, client and admin certificates it signs, through OpenSSL, so a
/// fresh machine needs no other tool (`kvctl certs`).
///
/// Keys are ECDSA P-256; certificates are X.509 v3 signed with SHA-256, with a random 128-bit serial,
/// the name as CN, and the role as the URI SAN `urn:quorumkv:role:<role>`.
public enum CertificateIssuer {
    private static let secondsPerDay = 86_400

    /// The days a leaf certificate is valid unless told otherwise.
    public static let leafValidityDaysDefault = 90

    /// A self-signed CA: basicConstraints CA:TRUE, keyUsage keyCertSign and cRLSign.
    public static func makeAuthority(commonName: String, validityDays: Int = 3650) throws -> IssuedCertificate {
        OpenSSL.start()
        let key = try makeKey()
        defer { EVP_PKEY_free(key) }
        let cert = try makeCertificate(
            commonName: commonName, publicKey: key, issuer: nil,
            notBeforeOffsetDays: 0, validityDays: validityDays
        )
        defer { X509_free(cert) }
        try addExtension(cert, issuer: cert, NID_basic_constraints, "critical,CA:TRUE")
        try addExtension(cert, issuer: cert, NID_key_usage, "critical,keyCertSign,cRLSign")
        try addExtension(cert, issuer: cert, NID_subject_key_identifier, "hash")
        try addExtension(cert, issuer: cert, NID_authority_key_identifier, "keyid:always")
        try sign(cert, with: key)
        return IssuedCertificate(certificatePEM: try pem(of: cert), privateKeyPEM: try pem(ofKey: key))
    }

    /// A leaf certificate for `role` signed by `authority`: CA:FALSE, keyUsage digitalSignature,
    /// extendedKeyUsage serverAuth and clientAuth, SANs the role URI plus the given IPs and DNS names.
    ///
    /// `notBeforeOffsetDays` moves the start of validity (negative = in the past), so tests can issue
    /// certificates that have already expired. Leaves live 90 days by default (`leafValidityDaysDefault`):
    /// a stolen certificate stops working soon, and rotation is routine.
    public static func issue(
        role: Role,
        name: String,
        ipAddresses: [String] = [],
        dnsNames: [String] = [],
        authority: IssuedCertificate,
        validityDays: Int = CertificateIssuer.leafValidityDaysDefault,
        notBeforeOffsetDays: Int = 0
    ) throws -> IssuedCertificate {
        try issue(
            roleURI: role.uri, name: name, ipAddresses: ipAddresses, dnsNames: dnsNames,
            authority: authority, validityDays: validityDays, notBeforeOffsetDays: notBeforeOffsetDays
        )
    }

    /// Test knob: a leaf certificate like `issue(role:...)` but with no role URI SAN at all, or with
    /// any URI given (e.g. an unknown role).
    package static func issue(
        roleURI: String?,
        name: String,
        ipAddresses: [String] = [],
        dnsNames: [String] = [],
        authority: IssuedCertificate,
        validityDays: Int = CertificateIssuer.leafValidityDaysDefault,
        notBeforeOffsetDays: Int = 0
    ) throws -> IssuedCertificate {
        OpenSSL.start()
        guard validityDays > 0 else { throw TLSError.certificateIssuanceFailed("validity must be at least one day") }
        for value in ipAddresses + dnsNames + [roleURI ?? ""] where value.contains(",") || value.contains("\n") {
            throw TLSError.certificateIssuanceFailed("invalid subject alternative name \"\(value)\"")
        }
        let (caCert, caKey) = try load(authority)
        defer {
            X509_free(caCert)
            EVP_PKEY_free(caKey)
        }
        let key = try makeKey()
        defer { EVP_PKEY_free(key) }
        let cert = try makeCertificate(
            commonName: name, publicKey: key, issuer: caCert,
            notBeforeOffsetDays: notBeforeOffsetDays, validityDays: validityDays
        )
        defer { X509_free(cert) }
        try addExtension(cert, issuer: caCert, NID_basic_constraints, "critical,CA:FALSE")
        try addExtension(cert, issuer: caCert, NID_key_usage, "critical,digitalSignature")
        try addExtension(cert, issuer: caCert, NID_ext_key_usage, "serverAuth,clientAuth")
        try addExtension(cert, issuer: caCert, NID_subject_key_identifier, "hash")
        try addExtension(cert, issuer: caCert, NID_authority_key_identifier, "keyid:always")
        let sans = (roleURI.map { ["URI:" + $0] } ?? []) + ipAddresses.map { "IP:" + $0 } + dnsNames.map { "DNS:" + $0 }
        if !sans.isEmpty {
            try addExtension(cert, issuer: caCert, NID_subject_alt_name, sans.joined(separator: ","))
        }
        try sign(cert, with: caKey)
        return IssuedCertificate(certificatePEM: try pem(of: cert), privateKeyPEM: try pem(ofKey: key))
    }

    // MARK: - OpenSSL steps (each frees what it allocates on failure; callers free what is returned)

    static func failure(_ step: String) -> TLSError {
        .certificateIssuanceFailed("\(step): \(OpenSSL.drainErrors())")
    }

    /// A fresh P-256 key. (`EVP_PKEY_Q_keygen` is variadic, so not callable from Swift.)
    private static func makeKey() throws -> OpaquePointer {
        ERR_clear_error()
        guard let context = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nil) else { throw failure("EVP_PKEY_CTX_new_id") }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_keygen_init(context) == 1,
            EVP_PKEY_CTX_set_ec_paramgen_curve_nid(context, NID_X9_62_prime256v1) == 1
        else { throw failure("EC key setup") }
        var key: OpaquePointer? = nil
        guard EVP_PKEY_keygen(context, &key) == 1, let key else { throw failure("EC key generation") }
        return key
    }

    private static func makeCertificate(
        commonName: String,
        publicKey: OpaquePointer,
        issuer: OpaquePointer?,
        notBeforeOffsetDays: Int,
        validityDays: Int
    ) throws -> OpaquePointer {
        ERR_clear_error()
        guard let cert = X509_new() else { throw failure("X509_new") }
        do {
            guard X509_set_version(cert, 2) == 1 else { throw failure("X509_set_version") }
            try setRandomSerial(cert)
            let notBefore = notBeforeOffsetDays * secondsPerDay
            guard X509_gmtime_adj(X509_getm_notBefore(cert), notBefore) != nil,
                X509_gmtime_adj(X509_getm_notAfter(cert), notBefore + validityDays * secondsPerDay) != nil
            else { throw failure("validity") }
            guard let subject = X509_get_subject_name(cert),
                X509_NAME_add_entry_by_txt(subject, "CN", CQKV_MBSTRING_UTF8, commonName, -1, -1, 0) == 1
            else { throw failure("subject CN \"\(commonName)\"") }
            let issuerName = issuer.map { X509_get_subject_name($0) } ?? subject
            guard X509_set_issuer_name(cert, issuerName) == 1 else { throw failure("issuer name") }
            guard X509_set_pubkey(cert, publicKey) == 1 else { throw failure("public key") }
            return cert
        } catch {
            X509_free(cert)
            throw error
        }
    }

    /// A positive random 128-bit serial number.
    private static func setRandomSerial(_ cert: OpaquePointer) throws {
        var bytes = [UInt8](repeating: 0, count: 16)
        guard RAND_bytes(&bytes, Int32(bytes.count)) == 1 else { throw failure("RAND_bytes") }
        bytes[0] &= 0x7f
        bytes[0] |= 0x01  // never zero, and always 16 octets long
        guard let number = BN_bin2bn(bytes, Int32(bytes.count), nil) else { throw failure("BN_bin2bn") }
        defer { BN_free(number) }
        guard BN_to_ASN1_INTEGER(number, X509_get_serialNumber(cert)) != nil else { throw failure("serial") }
    }

    private static func addExtension(_ cert: OpaquePointer, issuer: OpaquePointer, _ nid: Int32, _ value: String) throws
    {
        ERR_clear_error()
        guard CQKV_X509_add_ext_conf(cert, issuer, nid, value) == 1 else {
            throw failure("extension \(String(cString: OBJ_nid2sn(nid))) \(value)")
        }
    }

    private static func sign(_ cert: OpaquePointer, with key: OpaquePointer) throws {
        ERR_clear_error()
        guard X509_sign(cert, key, EVP_sha256()) > 0 else { throw failure("X509_sign") }
    }

    static func load(_ authority: IssuedCertificate) throws -> (cert: OpaquePointer, key: OpaquePointer) {
        ERR_clear_error()
        guard let certBIO = OpenSSL.makeReadBIO(authority.certificatePEM) else { throw failure("BIO") }
        defer { BIO_free(certBIO) }
        guard let cert = PEM_read_bio_X509(certBIO, nil, nil, nil) else { throw failure("bad CA certificate PEM") }
        guard let keyBIO = OpenSSL.makeReadBIO(authority.privateKeyPEM) else {
            X509_free(cert)
            throw failure("BIO")
        }
        defer { BIO_free(keyBIO) }
        guard let key = PEM_read_bio_PrivateKey(keyBIO, nil, nil, nil) else {
            X509_free(cert)
            throw failure("bad CA private key PEM")
        }
        guard X509_check_private_key(cert, key) == 1 else {
            X509_free(cert)
            EVP_PKEY_free(key)
            throw failure("CA private key does not match CA certificate")
        }
        return (cert, key)
    }

    private static func pem(of cert: OpaquePointer) throws -> String {
        try withMemoryBIO { PEM_write_bio_X509($0, cert) }
    }

    private static func pem(ofKey key: OpaquePointer) throws -> String {
        try withMemoryBIO { PEM_write_bio_PrivateKey($0, key, nil, nil, 0, nil, nil) }
    }

    static func withMemoryBIO(_ write: (OpaquePointer) -> Int32) throws -> String {
        ERR_clear_error()
        guard let bio = BIO_new(BIO_s_mem()) else { throw failure("BIO_new") }
        defer { BIO_free(bio) }
        guard write(bio) == 1 else { throw failure("PEM output") }
        return OpenSSL.contents(ofMemoryBIO: bio)
    }
}
