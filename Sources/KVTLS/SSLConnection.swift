import COpenSSL
import KVCore
import NIOCore

/// One `SSL*` over two memory BIOs: ciphertext from the network goes into `readBIO`, ciphertext for
/// the network comes out of `writeBIO`. No I/O of its own; `OpenSSLHandler` drives it.
///
/// Every operation clears the thread's error queue first (it is shared by all channels on an event
/// loop) and turns a failure into a `TLSError` right away, before anything else can touch the queue.
/// Owns the `SSL`, which owns both BIOs: `deinit` frees all three.
final class SSLConnection {
    enum Result<Value> {
        case complete(Value)
        case incomplete
        case failed(TLSError)
    }

    /// What one `SSL_read` produced.
    enum ReadResult {
        case data
        case wantRead
        case closeNotify
        case failed(TLSError)
    }

    private let ssl: OpaquePointer
    private let readBIO: OpaquePointer
    private let writeBIO: OpaquePointer
    let isServer: Bool
    private let expectedServerName: String?
    /// The certificate, key, CAs and CRLs this connection was made with: a reload of the context
    /// changes later connections, never this one.
    private let material: TLSMaterial

    /// Nil when OpenSSL cannot allocate, or when `expectedServerName` is not usable.
    init?(context: TLSContext, expectedServerName: String?) {
        ERR_clear_error()
        let material = context.material
        self.material = material
        guard let ssl = SSL_new(material.sslContext) else { return nil }
        guard let readBIO = BIO_new(BIO_s_mem()), let writeBIO = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            return nil
        }
        // An empty read BIO means "want more", not end of file.
        _ = CQKV_BIO_set_mem_eof_return(readBIO, -1)
        SSL_set_bio(ssl, readBIO, writeBIO)
        self.ssl = ssl
        self.readBIO = readBIO
        self.writeBIO = writeBIO
        self.isServer = context.side == .server
        self.expectedServerName = expectedServerName
        if self.isServer {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
            if let name = expectedServerName, !Self.requireServerName(ssl, name) {
                return nil
            }
        }
        ERR_clear_error()
    }

    deinit {
        SSL_free(self.ssl)
    }

    /// Makes verification require `name` as an IP SAN (if it parses as an address) or a DNS SAN.
    private static func requireServerName(_ ssl: OpaquePointer, _ name: String) -> Bool {
        guard let param = SSL_get0_param(ssl) else { return false }
        if X509_VERIFY_PARAM_set1_ip_asc(param, name) == 1 { return true }
        ERR_clear_error()
        X509_VERIFY_PARAM_set_hostflags(param, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
        guard SSL_set1_host(ssl, name) == 1 else { return false }
        _ = CQKV_SSL_set_tlsext_host_name(ssl, name)
        return true
    }

    /// Hands ciphertext from the network to OpenSSL.
    func receiveFromNetwork(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress, bytes.count > 0 else { return }
            var offset = 0
            while offset < bytes.count {
                let chunk = Int32(clamping: bytes.count - offset)
                let written = BIO_write(self.readBIO, base + offset, chunk)
                precondition(written > 0, "memory BIO refused a write")
                offset += Int(written)
            }
        }
    }

    /// After the TCP connection ends: an empty read BIO now means end of file.
    func markEndOfInput() {
        _ = CQKV_BIO_set_mem_eof_return(self.readBIO, 0)
    }

    /// Ciphertext OpenSSL wants sent, or nil.
    func takeDataForNetwork(allocator: ByteBufferAllocator) -> ByteBuffer? {
        let pending = CQKV_BIO_pending(self.writeBIO)
        guard pending > 0 else { return nil }
        var buffer = allocator.buffer(capacity: pending)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { bytes in
            let read = BIO_read(self.writeBIO, bytes.baseAddress, Int32(clamping: pending))
            return Int(max(read, 0))
        }
        return buffer
    }

    /// One step of the handshake; `.complete` carries the verified peer's identity.
    func doHandshake() -> Result<PeerIdentity> {
        ERR_clear_error()
        let rc = SSL_do_handshake(self.ssl)
        if rc == 1 {
            guard let cert = SSL_get0_peer_certificate(self.ssl) else {
                return .failed(.handshakeFailed("peer sent no certificate"))
            }
            guard let identity = PeerIdentity(certificate: cert) else { return .failed(.peerHasNoRole()) }
            if !self.isServer && identity.role != .node {
                return .failed(.peerRoleNotAllowed("server has role \(identity.role), expected node"))
            }
            return .complete(identity)
        }
        switch SSL_get_error(self.ssl, rc) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .incomplete
        case let code:
            return .failed(self.handshakeError(sslErrorCode: code))
        }
    }

    /// Decrypts as much as is available into `buffer`.
    func read(into buffer: inout ByteBuffer) -> ReadResult {
        ERR_clear_error()
        var rc: Int32 = 0
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 16_384) { bytes in
            rc = SSL_read(self.ssl, bytes.baseAddress, Int32(clamping: bytes.count))
            return Int(max(rc, 0))
        }
        if rc > 0 { return .data }
        switch SSL_get_error(self.ssl, rc) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wantRead
        case SSL_ERROR_ZERO_RETURN:
            return .closeNotify
        case let code:
            return .failed(.connectionFailed(self.describe(sslErrorCode: code)))
        }
    }

    /// Encrypts all of `buffer` into the write BIO (memory BIOs never push back).
    func write(_ buffer: ByteBuffer) -> TLSError? {
        guard buffer.readableBytes > 0 else { return nil }
        return buffer.withUnsafeReadableBytes { bytes -> TLSError? in
            ERR_clear_error()
            let rc = SSL_write(self.ssl, bytes.baseAddress, Int32(clamping: bytes.count))
            if rc == bytes.count { return nil }
            return .connectionFailed(self.describe(sslErrorCode: SSL_get_error(self.ssl, rc)))
        }
    }

    /// Queues our close_notify. Returns false if the connection cannot send one (handshake not done).
    func sendCloseNotify() -> Bool {
        guard SSL_is_init_finished(self.ssl) == 1 else { return false }
        ERR_clear_error()
        let rc = SSL_shutdown(self.ssl)
        if rc < 0 { ERR_clear_error() }
        return rc >= 0
    }

    // MARK: Errors

    private func describe(sslErrorCode code: Int32) -> String {
        switch code {
        case SSL_ERROR_SSL: return OpenSSL.drainErrors()
        case SSL_ERROR_SYSCALL:
            ERR_clear_error()
            return "unexpected end of stream"
        default:
            ERR_clear_error()
            return "SSL error \(code)"
        }
    }

    /// Names the cause of a failed handshake as precisely as OpenSSL lets us: our own role check,
    /// a name mismatch, a certificate verification error, or the reasons in the error queue.
    private func handshakeError(sslErrorCode code: Int32) -> TLSError {
        let reasons = self.describe(sslErrorCode: code)
        if let failure = VerifyFailure(ssl: self.ssl) {
            switch failure {
            case .noRole: return .peerHasNoRole()
            case .serverNotNode: return .peerRoleNotAllowed("server certificate role is not node")
            }
        }
        let verifyResult = Int32(truncatingIfNeeded: SSL_get_verify_result(self.ssl))
        switch verifyResult {
        case X509_V_OK:
            return .handshakeFailed(reasons)
        case X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH:
            return .serverNameMismatch("expected \(self.expectedServerName ?? "?")")
        default:
            let verifyText = String(cString: X509_verify_cert_error_string(Int(verifyResult)))
            return .handshakeFailed("\(reasons) (\(verifyText))")
        }
    }
}
