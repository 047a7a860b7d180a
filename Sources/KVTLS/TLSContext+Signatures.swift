import COpenSSL
public import KVCore

/// Signatures with a context's own key, checked against its trusted CAs: a node signs its map votes
/// (`MapVoteSignature`) with the key of its TLS certificate, and every node checks the signatures of
/// a map's proof against the cluster CA it already trusts for connections.
extension TLSContext {
    /// Our certificate in DER; nil without one.
    public var certificateDER: [UInt8]? {
        let material = self.material
        guard let cert = SSL_CTX_get0_certificate(material.sslContext) else { return nil }
        return Self.der(of: cert)
    }

    /// `bytes` signed with our private key (ECDSA or RSA over SHA-256); nil without a key or when
    /// OpenSSL fails.
    public func sign(_ bytes: [UInt8]) -> [UInt8]? {
        let material = self.material
        guard let key = SSL_CTX_get0_privatekey(material.sslContext), let digest = EVP_MD_CTX_new() else { return nil }
        defer { EVP_MD_CTX_free(digest) }
        ERR_clear_error()
        guard EVP_DigestSignInit(digest, nil, EVP_sha256(), nil, key) == 1 else {
            ERR_clear_error()
            return nil
        }
        var length = 0
        guard EVP_DigestSign(digest, nil, &length, bytes, bytes.count) == 1, length > 0 else {
            ERR_clear_error()
            return nil
        }
        var signature = [UInt8](repeating: 0, count: length)
        guard EVP_DigestSign(digest, &signature, &length, bytes, bytes.count) == 1 else {
            ERR_clear_error()
            return nil
        }
        return Array(signature.prefix(length))
    }

    /// Whether `certificateDER` is a certificate our trusted CAs issued (valid now, and not revoked
    /// when a revocation list is loaded), naming `name` with the role `role`, whose key made
    /// `signature` of `bytes`. Every failure, however malformed the input, is `false`.
    public func verify(
        _ signature: [UInt8], of bytes: [UInt8], certificateDER: [UInt8], name: String, role: Role
    ) -> Bool {
        guard !certificateDER.isEmpty, certificateDER.count <= Limits.certificateBytesMax, !signature.isEmpty,
            signature.count <= Limits.signatureBytesMax
        else { return false }
        let material = self.material
        ERR_clear_error()
        defer { ERR_clear_error() }
        let parsed: OpaquePointer? = certificateDER.withUnsafeBufferPointer { buffer in
            var cursor = buffer.baseAddress
            return d2i_X509(nil, &cursor, buffer.count)
        }
        guard let cert = parsed else { return false }
        defer { X509_free(cert) }
        guard OpenSSL.commonName(of: cert) == name,
            OpenSSL.role(fromURIs: OpenSSL.subjectAlternativeNames(of: cert).uris) == role,
            Self.chains(cert, toCAsOf: material),
            let key = X509_get0_pubkey(cert), let digest = EVP_MD_CTX_new()
        else { return false }
        defer { EVP_MD_CTX_free(digest) }
        guard EVP_DigestVerifyInit(digest, nil, EVP_sha256(), nil, key) == 1 else { return false }
        return EVP_DigestVerify(digest, signature, signature.count, bytes, bytes.count) == 1
    }

    /// Whether `cert` verifies against the CAs and CRLs of `material` as a handshake would judge it.
    private static func chains(_ cert: OpaquePointer, toCAsOf material: TLSMaterial) -> Bool {
        material.verificationFailure(of: cert, chain: nil) == nil
    }

    private static func der(of cert: OpaquePointer) -> [UInt8]? {
        let length = i2d_X509(cert, nil)
        guard length > 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(length))
        let written = bytes.withUnsafeMutableBufferPointer { buffer in
            var cursor = buffer.baseAddress
            return i2d_X509(cert, &cursor)
        }
        return written == length ? bytes : nil
    }
}
