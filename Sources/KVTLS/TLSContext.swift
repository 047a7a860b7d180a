import COpenSSL
import Glibc
import KVCore
import Synchronization

/// An OpenSSL `SSL_CTX` set up for QuorumKV: TLS 1.3 only, mutual authentication against the
/// cluster CA (or CAs, during a rotation), optional CRLs, and a role in every certificate.
///
/// One context serves every connection of a node or client from any event loop. It holds its
/// material (`SSL_CTX`, certificate, key, CAs, CRLs) behind a lock and swaps it on `reload()`: each
/// connection, inbound or outbound, takes the material current when it starts and keeps it to its
/// end, so established connections go on untouched while new ones use the new files.
public final class TLSContext: Sendable {
    /// Which end of connections this context serves. A client additionally requires the server's
    /// certificate to carry the `node` role.
    public enum Side: Sendable {
        case server
        case client
    }

    public let side: Side
    private let configuration: TLSConfiguration
    private let current: Mutex<TLSMaterial>

    /// The material new connections use now.
    var material: TLSMaterial { self.current.withLock { $0 } }

    /// When our own certificate expires, in seconds since the Unix epoch; nil without a certificate.
    public var certificateNotAfterSeconds: UInt64? { self.material.summary.certificate?.notAfterSeconds }

    /// The name, role and SANs of our own certificate.
    ///
    /// A context made with the package-only `omitsCertificate` or `allowsCertificateWithoutRole` knobs
    /// may have no role; it then reports an empty name with the client role.
    public var localIdentity: PeerIdentity { self.material.identity ?? PeerIdentity(name: "", role: .client) }

    /// What the current material holds: certificate, CA certificates, CRLs.
    public var summary: TLSMaterialSummary { self.material.summary }

    /// Builds the context. Throws `TLSError.invalidConfiguration` naming the cause: a missing file, bad
    /// PEM, a key that does not match the certificate, a certificate without a QuorumKV role, a CRL
    /// that no CA of the CA file signed.
    public init(configuration: TLSConfiguration, side: Side) throws {
        self.side = side
        self.configuration = configuration
        self.current = Mutex(try TLSMaterial(configuration: configuration, side: side))
    }

    /// Reads the configured files again (certificate, key, CA file, CRL file) and, when they make a
    /// complete and acceptable context, uses them for every connection made from now on. Connections
    /// already up keep the material they started with.
    ///
    /// Nothing changes when the new material is refused: a file that cannot be read or parsed, a key
    /// that does not match the certificate, a key file others may read, a CRL no CA signed, a
    /// certificate for another name or role, one that is expired or not yet valid, or one that does
    /// not verify against the new CA file and CRLs (a CA rotation step done out of order, a revoked
    /// certificate).
    ///
    /// - Returns: what the new material holds.
    /// - Throws: `TLSError.invalidConfiguration` saying why the new files were refused.
    @discardableResult
    public func reload() throws(TLSError) -> TLSMaterialSummary {
        try Self.reload([self])[0]
    }

    /// Reloads several contexts made from the same files (a node's server and client sides) all or
    /// nothing: every new material is built and checked before any is swapped in.
    @discardableResult
    public static func reload(_ contexts: [TLSContext]) throws(TLSError) -> [TLSMaterialSummary] {
        try reloading.withLock { _ throws(TLSError) -> [TLSMaterialSummary] in
            let nowSeconds = UInt64(max(0, time(nil)))
            var replacements: [TLSMaterial] = []
            for context in contexts {
                let material = try TLSMaterial(configuration: context.configuration, side: context.side)
                try material.checkReplaces(context.material, nowSeconds: nowSeconds)
                replacements.append(material)
            }
            for (context, material) in zip(contexts, replacements) {
                context.current.withLock { $0 = material }
            }
            return replacements.map(\.summary)
        }
    }

    /// Held while a reload reads files and builds, so that two reloads (a SIGHUP and an `Admin`
    /// request) never interleave; one lock for the process, as reloads are rare. New connections never
    /// wait for it.
    private static let reloading = Mutex<Void>(())
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
///
/// With a CRL file, a certificate whose CA has no CRL there, or whose CRL is past its next update, is
/// still accepted (`isToleratedCRLError`); a revoked one is not.
func quorumKVVerifyCallback(preverifyOK: Int32, store: OpaquePointer?) -> Int32 {
    guard let store else { return preverifyOK }
    if preverifyOK == 0 {
        return isToleratedCRLError(X509_STORE_CTX_get_error(store)) ? 1 : 0
    }
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
