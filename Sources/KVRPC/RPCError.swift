public import KVWire

/// Why a remote call failed.
///
/// A struct with a private code, so that new causes can be added without breaking SDK users who
/// switch over the public static members.
public struct RPCError: Error, Hashable, CustomStringConvertible {
    private enum Code: Hashable {
        case connectFailed(address: String, reason: String)
        case connectionClosed(reason: String)
        case deadlineExceeded(Duration)
        case remote(ErrorCode, String)
        case protocolViolation(String)
        case overloaded
        case shutDown
        case requestTooLarge(String)
    }

    private let code: Code

    private init(_ code: Code) {
        self.code = code
    }

    /// No connection could be made: refused, unreachable, or the TLS/Hello handshake failed.
    public static func connectFailed(address: String, reason: String) -> RPCError {
        RPCError(.connectFailed(address: address, reason: reason))
    }

    /// The connection closed while the request was in flight.
    public static func connectionClosed(reason: String) -> RPCError {
        RPCError(.connectionClosed(reason: reason))
    }

    /// No answer arrived before the request's deadline.
    public static func deadlineExceeded(_ timeout: Duration) -> RPCError {
        RPCError(.deadlineExceeded(timeout))
    }

    /// The peer answered with an `Error` frame.
    public static func remote(_ code: ErrorCode, message: String) -> RPCError {
        RPCError(.remote(code, message))
    }

    /// The peer sent something the protocol does not allow (an unexpected message type, a bad frame).
    public static func protocolViolation(_ reason: String) -> RPCError {
        RPCError(.protocolViolation(reason))
    }

    /// The request's frame would be over the frame limit, which the peer refuses: it was not sent.
    public static func requestTooLarge(_ reason: String) -> RPCError {
        RPCError(.requestTooLarge(reason))
    }

    /// Too many requests are in flight on this connection.
    public static let overloaded = RPCError(.overloaded)

    /// The client was shut down.
    public static let shutDown = RPCError(.shutDown)

    /// The error code a remote `Error` frame carried, if this error is one.
    public var remoteCode: ErrorCode? {
        if case .remote(let code, _) = code { return code }
        return nil
    }

    /// The message a remote `Error` frame carried, if this error is one.
    public var remoteMessage: String? {
        if case .remote(_, let message) = code { return message }
        return nil
    }

    /// True when the request may have reached the peer but its outcome is unknown, or the peer could
    /// not be reached at all: a caller may try another replica.
    public var isUnavailable: Bool {
        switch code {
        case .connectFailed, .connectionClosed, .deadlineExceeded, .overloaded: true
        case .remote(let code, _): code == .overloaded || code == .shuttingDown
        case .protocolViolation, .shutDown, .requestTooLarge: false
        }
    }

    public static func == (lhs: RPCError, rhs: RPCError) -> Bool {
        switch (lhs.code, rhs.code) {
        case (.connectFailed, .connectFailed), (.connectionClosed, .connectionClosed),
            (.deadlineExceeded, .deadlineExceeded), (.protocolViolation, .protocolViolation),
            (.overloaded, .overloaded), (.shutDown, .shutDown), (.requestTooLarge, .requestTooLarge):
            true
        case (.remote(let a, _), .remote(let b, _)): a == b
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch code {
        case .connectFailed: hasher.combine(0)
        case .connectionClosed: hasher.combine(1)
        case .deadlineExceeded: hasher.combine(2)
        case .remote(let code, _): hasher.combine(3); hasher.combine(code)
        case .protocolViolation: hasher.combine(4)
        case .overloaded: hasher.combine(5)
        case .shutDown: hasher.combine(6)
        case .requestTooLarge: hasher.combine(7)
        }
    }

    public var description: String {
        switch code {
        case .connectFailed(let address, let reason): "cannot connect to \(address): \(reason)"
        case .connectionClosed(let reason): "connection closed: \(reason)"
        case .deadlineExceeded(let timeout): "no answer within \(timeout)"
        case .remote(let code, let message): "refused by peer (\(code)): \(message)"
        case .protocolViolation(let reason): "protocol violation: \(reason)"
        case .overloaded: "too many requests in flight on this connection"
        case .shutDown: "the client is shut down"
        case .requestTooLarge(let reason): "request not sent: \(reason)"
        }
    }
}
