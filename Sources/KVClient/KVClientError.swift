package import KVWire

/// Why a client request failed: one of a few kinds (``isInvalidArgument``, ``isUnavailable``,
/// ``isRefused``, ``isConflict``, ``isProtocolViolation``) and a ``message`` that says what went wrong
/// and where.
public struct KVClientError: Error, Hashable, CustomStringConvertible {
    private enum Code: Hashable {
        case invalidArgument
        case unavailable
        case refused(ErrorCode)
        case conflict
        case protocolViolation
    }

    private let code: Code
    /// One line saying what went wrong and where.
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The request itself is invalid (empty or oversized key, oversized value); nothing was sent.
    package static func invalidArgument(_ message: String) -> KVClientError { KVClientError(.invalidArgument, message) }
    /// No replica could be reached, or none answered in time.
    package static func unavailable(_ message: String) -> KVClientError { KVClientError(.unavailable, message) }
    /// A replica refused the request with an `Error` frame.
    package static func refused(_ code: ErrorCode, _ message: String) -> KVClientError {
        KVClientError(.refused(code), message)
    }
    /// A write kept losing to newer writes of the same key and gave up.
    package static func conflict(_ message: String) -> KVClientError { KVClientError(.conflict, message) }
    /// A replica answered something the protocol does not allow.
    package static func protocolViolation(_ message: String) -> KVClientError {
        KVClientError(.protocolViolation, message)
    }

    /// Whether the request itself is invalid (an empty or oversized key, an oversized value, a level
    /// above N, an unknown keyspace): nothing was sent, and retrying the same request cannot help.
    public var isInvalidArgument: Bool { code == .invalidArgument }
    /// Whether too few replicas could be reached or answered in time. The write may still have
    /// reached some replicas; retrying is safe (a write is stamped again).
    public var isUnavailable: Bool { code == .unavailable }
    /// Whether a replica refused the request (``refusal`` says why: `notAuthorized`,
    /// `storageFailure`, ...).
    public var isRefused: Bool { refusalCode != nil }
    /// Whether a write kept losing to newer writes of the same key and gave up.
    public var isConflict: Bool { code == .conflict }
    /// Whether a replica answered something the protocol does not allow.
    public var isProtocolViolation: Bool { code == .protocolViolation }

    /// Why a replica refused the request (the protocol's error code, such as `notAuthorized`), if
    /// this is a refusal.
    public var refusal: String? { refusalCode.map { "\($0)" } }

    /// The error code of a refusal, if this is one.
    package var refusalCode: ErrorCode? {
        if case .refused(let code) = code { return code }
        return nil
    }

    /// The ``message``.
    public var description: String { message }

    /// The `outcome` of the client's operation metrics: a bounded set of names.
    var outcomeLabel: String {
        switch code {
        case .invalidArgument: "invalid_argument"
        case .unavailable: "unavailable"
        case .refused: "refused"
        case .conflict: "conflict"
        case .protocolViolation: "protocol_violation"
        }
    }
}
