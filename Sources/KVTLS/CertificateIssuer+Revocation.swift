import COpenSSL

extension CertificateIssuer {
    /// The days a CRL made by `revocationList` names as its next update unless told otherwise.
    public static let revocationListValidityDaysDefault = 365

    /// A certificate revocation list signed by `authority`: every certificate `existingPEM` (a CRL this
    /// CA signed before) revokes, plus `revoking` (PEM certificates this CA issued), with a CRL number
    /// one past the existing one's.
    ///
    /// The list is X.509 v2 with SHA-256, an authority key identifier (so that OpenSSL matches it to the
    /// right CA when an old and a new CA share a name) and a next update `validityDays` from now.
    /// Nodes keep applying a list past its next update; the date is there for other tools.
    ///
    /// - Throws: `TLSError.certificateIssuanceFailed` when a certificate to revoke was not issued by
    ///   `authority`, or the existing list was not signed by it.
    public static func revocationList(
        authority: IssuedCertificate,
        revoking certificatePEMs: [String] = [],
        existingPEM: String? = nil,
        validityDays: Int = CertificateIssuer.revocationListValidityDaysDefault
    ) throws -> String {
        OpenSSL.start()
        guard validityDays > 0 else { throw TLSError.certificateIssuanceFailed("validity must be at least one day") }
        let (caCert, caKey) = try load(authority)
        defer {
            X509_free(caCert)
            EVP_PKEY_free(caKey)
        }
        ERR_clear_error()
        guard let crl = X509_CRL_new() else { throw failure("X509_CRL_new") }
        defer { X509_CRL_free(crl) }
        guard X509_CRL_set_version(crl, 1) == 1,  // v2
            X509_CRL_set_issuer_name(crl, X509_get_subject_name(caCert)) == 1
        else { throw failure("CRL issuer") }

        var number: UInt64 = 1
        var serials: [String] = []
        if let existingPEM {
            let previous = try readRevocationList(existingPEM)
            defer { X509_CRL_free(previous) }
            guard X509_NAME_cmp(X509_CRL_get_issuer(previous), X509_get_subject_name(caCert)) == 0,
                X509_CRL_verify(previous, caKey) == 1
            else {
                ERR_clear_error()
                throw TLSError.certificateIssuanceFailed("the existing CRL was not signed by this CA")
            }
            number = (OpenSSL.crlNumber(previous) ?? 0) &+ 1
            if let revoked = X509_CRL_get_REVOKED(previous) {
                for index in 0..<CQKV_sk_X509_REVOKED_num(revoked) {
                    guard let entry = CQKV_sk_X509_REVOKED_value(revoked, index) else { continue }
                    guard let copy = X509_REVOKED_dup(entry) else { throw failure("copying a revoked entry") }
                    serials.append(OpenSSL.hex(X509_REVOKED_get0_serialNumber(entry)))
                    guard X509_CRL_add0_revoked(crl, copy) == 1 else {
                        X509_REVOKED_free(copy)
                        throw failure("adding a revoked entry")
                    }
                }
            }
        }
        for pem in certificatePEMs {
            try revoke(pem, in: crl, authority: caCert, alreadyRevoked: &serials)
        }

        guard let now = ASN1_TIME_new() else { throw failure("ASN1_TIME_new") }
        defer { ASN1_TIME_free(now) }
        guard let next = ASN1_TIME_new() else { throw failure("ASN1_TIME_new") }
        defer { ASN1_TIME_free(next) }
        guard X509_gmtime_adj(now, 0) != nil, X509_gmtime_adj(next, validityDays * 86_400) != nil,
            X509_CRL_set1_lastUpdate(crl, now) == 1, X509_CRL_set1_nextUpdate(crl, next) == 1
        else { throw failure("CRL dates") }

        guard let numberValue = ASN1_INTEGER_new() else { throw failure("ASN1_INTEGER_new") }
        defer { ASN1_INTEGER_free(numberValue) }
        guard ASN1_INTEGER_set_uint64(numberValue, number) == 1,
            X509_CRL_add1_ext_i2d(crl, NID_crl_number, numberValue, 0, 0) == 1
        else { throw failure("CRL number") }
        guard CQKV_X509_CRL_add_ext_conf(crl, caCert, NID_authority_key_identifier, "keyid:always") == 1 else {
            throw failure("CRL authority key identifier")
        }
        guard X509_CRL_sort(crl) == 1 else { throw failure("X509_CRL_sort") }
        guard X509_CRL_sign(crl, caKey, EVP_sha256()) > 0 else { throw failure("X509_CRL_sign") }
        return try withMemoryBIO { PEM_write_bio_X509_CRL($0, crl) }
    }

    /// Adds `pem`'s certificate to `crl`, once, after checking `authority` issued it.
    private static func revoke(
        _ pem: String, in crl: OpaquePointer, authority: OpaquePointer, alreadyRevoked serials: inout [String]
    ) throws {
        ERR_clear_error()
        guard let bio = OpenSSL.makeReadBIO(pem) else { throw failure("BIO") }
        defer { BIO_free(bio) }
        guard let cert = PEM_read_bio_X509(bio, nil, nil, nil) else { throw failure("bad certificate PEM") }
        defer { X509_free(cert) }
        let summary = CertificateSummary(certificate: cert)
        guard X509_check_issued(authority, cert) == X509_V_OK, let key = X509_get0_pubkey(authority),
            X509_verify(cert, key) == 1
        else {
            ERR_clear_error()
            throw TLSError.certificateIssuanceFailed(
                "certificate '\(summary.name)' (serial \(summary.serial)) was not issued by this CA")
        }
        guard !serials.contains(summary.serial) else { return }
        guard let entry = X509_REVOKED_new() else { throw failure("X509_REVOKED_new") }
        guard let date = ASN1_TIME_new() else {
            X509_REVOKED_free(entry)
            throw failure("ASN1_TIME_new")
        }
        defer { ASN1_TIME_free(date) }
        guard X509_REVOKED_set_serialNumber(entry, X509_get_serialNumber(cert)) == 1,
            X509_gmtime_adj(date, 0) != nil, X509_REVOKED_set_revocationDate(entry, date) == 1,
            X509_CRL_add0_revoked(crl, entry) == 1
        else {
            X509_REVOKED_free(entry)
            throw failure("revoked entry")
        }
        serials.append(summary.serial)
    }

    private static func readRevocationList(_ pem: String) throws -> OpaquePointer {
        ERR_clear_error()
        guard let bio = OpenSSL.makeReadBIO(pem) else { throw failure("BIO") }
        defer { BIO_free(bio) }
        guard let crl = PEM_read_bio_X509_CRL(bio, nil, nil, nil) else { throw failure("bad CRL PEM") }
        return crl
    }
}
