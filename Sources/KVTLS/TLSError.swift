/// A TLS failure: bad configuration, a refused or broken handshake, or a connection that ended badly.
///
/// A struct with a private code, so that new kinds of failure do not break code that switches over
/// them. Two errors are equal when they are of the same kind, whatever their detail, so tests and
/// callers can write `error == .handshakeFailed`. `description` is one line naming the cause.
public struct TLSError: Error, Hashable, CustomStringConvertible, Sendable {
    private enum Code: Hashable, Sendable {
        case invalidConfiguration
        case certificateIssuanceFailed
        case handshakeFailed
        case peerHasNoRole
        case peerRoleNotAllowed
        case serverNameMismatch
        case closedDuringHandshake
        case connectionFailed
        case uncleanShutdown
        case closeTimedOut
    }

    private var code: Code

    /// What went wrong, in words: OpenSSL's reasons, the file, the name. Empty for the static members.
    public var detail: String

    private init(_ code: Code, _ detail: String = "") {
        self.code = code
        self.detail = detail
    }

    /// Files, PEM, keys or certificates that cannot make a TLS context.
    public static let invalidConfiguration = TLSError(.invalidConfiguration)
    /// A key or certificate could not be made.
    public static let certificateIssuanceFailed = TLSError(.certificateIssuanceFailed)
    /// The TLS handshake failed (protocol, certificate verification, alert from the peer).
    public static let handshakeFailed = TLSError(.handshakeFailed)
    /// The peer's certificate verified but carries no `urn:quorumkv:role:` URI SAN.
    public static let peerHasNoRole = TLSError(.peerHasNoRole)
    /// The peer's role may not take this side of the connection (a client must talk to a node).
    public static let peerRoleNotAllowed = TLSError(.peerRoleNotAllowed)
    /// The server's certificate does not name the address or host that was dialed.
    public static let serverNameMismatch = TLSError(.serverNameMismatch)
    /// The channel closed before the handshake completed.
    public static let closedDuringHandshake = TLSError(.closedDuringHandshake)
    /// A TLS error after the handshake (including a refusal the peer sends after a TLS 1.3 handshake).
    public static let connectionFailed = TLSError(.connectionFailed)
    /// The TCP connection ended without a TLS close_notify.
    public static let uncleanShutdown = TLSError(.uncleanShutdown)
    /// The close_notify could not be sent in time; the channel was closed anyway.
    public static let closeTimedOut = TLSError(.closeTimedOut)

    static func invalidConfiguration(_ detail: String) -> TLSError { TLSError(.invalidConfiguration, detail) }
    static func certificateIssuanceFailed(_ detail: String) -> TLSError { TLSError(.certificateIssuanceFailed, detail) }
    static func handshakeFailed(_ detail: String) -> TLSError { TLSError(.handshakeFailed, detail) }
    static func peerHasNoRole(_ detail: String = "") -> TLSError { TLSError(.peerHasNoRole, detail) }
    static func peerRoleNotAllowed(_ detail: String) -> TLSError { TLSError(.peerRoleNotAllowed, detail) }
    static func serverNameMismatch(_ detail: String) -> TLSError { TLSError(.serverNameMismatch, detail) }
    static func connectionFailed(_ detail: String) -> TLSError { TLSError(.connectionFailed, detail) }

    public static func == (lhs: TLSError, rhs: TLSError) -> Bool { lhs.code == rhs.code }

    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }

    public var description: String {
        let summary: String
        switch self.code {
        case .invalidConfiguration: summary = "invalid TLS configuration"
        case .certificateIssuanceFailed: summary = "cannot issue certificate"
        case .handshakeFailed: summary = "TLS handshake failed"
        case .peerHasNoRole: summary = "peer certificate has no QuorumKV role"
        case .peerRoleNotAllowed: summary = "peer certificate role not allowed"
        case .serverNameMismatch: summary = "server certificate does not match the name dialed"
        case .closedDuringHandshake: summary = "connection closed during the TLS handshake"
        case .connectionFailed: summary = "TLS connection failed"
        case .uncleanShutdown: summary = "connection closed without TLS close_notify"
        case .closeTimedOut: summary = "TLS close timed out"
        }
        return self.detail.isEmpty ? summary : "\(summary): \(self.detail)"
    }
}
