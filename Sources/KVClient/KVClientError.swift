public import KVWire

/// Why a client request failed.
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
    public static func invalidArgument(_ message: String) -> KVClientError { KVClientError(.invalidArgument, message) }
    /// No replica could be reached, or none answered in time.
    public static func unavailable(_ message: String) -> KVClientError { KVClientError(.unavailable, message) }
    /// A replica refused the request with an `Error` frame.
    public static func refused(_ code: ErrorCode, _ message: String) -> KVClientError {
        KVClientError(.refused(code), message)
    }
    /// A write kept losing to newer writes of the same key and gave up.
    public static func conflict(_ message: String) -> KVClientError { KVClientError(.conflict, message) }
    /// A replica answered something the protocol does not allow.
    public static func protocolViolation(_ message: String) -> KVClientError {
        KVClientError(.protocolViolation, message)
    }

    public var isInvalidArgument: Bool { code == .invalidArgument }
    public var isUnavailable: Bool { code == .unavailable }

    /// The error code of a refusal, if this is one.
    public var refusalCode: ErrorCode? {
        if case .refused(let code) = code { return code }
        return nil
    }

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
