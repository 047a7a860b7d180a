/// Why bytes from the wire could not be decoded.
///
/// A struct with a private code rather than an enum, so that new kinds of error do not break SDK users
/// who switch over it. `errorCode` says which `ErrorCode` the peer should be told.
public struct WireError: Error, Hashable, CustomStringConvertible {
    private enum Code: Hashable {
        case truncated
        case lengthPastEnd
        case unknownMessageType(UInt8)
        case fieldTooLarge(field: String, limit: Int)
        case frameTooLarge(length: Int, limit: Int)
        case frameTooShort(length: Int)
        case invalidEnumValue(type: String, value: UInt64)
        case invalidBool
        case invalidOptionalFlag
        case invalidUTF8
    }

    private let code: Code

    private init(_ code: Code) {
        self.code = code
    }

    /// A frame body ended in the middle of a fixed-size field.
    public static let truncated = WireError(.truncated)
    /// A length or count prefix claims more bytes than the frame body has left.
    public static let lengthPastEnd = WireError(.lengthPastEnd)
    /// A `bool` byte other than 0 or 1.
    public static let invalidBool = WireError(.invalidBool)
    /// An `optional` presence byte other than 0 or 1.
    public static let invalidOptionalFlag = WireError(.invalidOptionalFlag)
    /// A `string` whose bytes are not valid UTF-8.
    public static let invalidUTF8 = WireError(.invalidUTF8)

    /// A frame whose message type byte names no message of the schema.
    public static func unknownMessageType(_ type: UInt8) -> WireError {
        WireError(.unknownMessageType(type))
    }

    /// A `bytes`/`string` length or a `list` count over the field's limit; nothing was read or allocated.
    public static func fieldTooLarge(field: String, limit: Int) -> WireError {
        WireError(.fieldTooLarge(field: field, limit: limit))
    }

    /// A frame of `length` bytes (length prefix included) over the `limit`; nothing was buffered.
    public static func frameTooLarge(length: Int, limit: Int) -> WireError {
        WireError(.frameTooLarge(length: length, limit: limit))
    }

    /// A length prefix too small for the frame header (`length` is the prefix's value).
    public static func frameTooShort(length: Int) -> WireError {
        WireError(.frameTooShort(length: length))
    }

    /// An enum field holding a value the schema does not define.
    public static func invalidEnumValue(type: String, value: UInt64) -> WireError {
        WireError(.invalidEnumValue(type: type, value: value))
    }

    /// The code an `Error` frame sends to the peer for this error.
    public var errorCode: ErrorCode {
        switch self.code {
        case .frameTooLarge: .frameTooLarge
        case .unknownMessageType: .unknownMessageType
        case .truncated, .lengthPastEnd, .fieldTooLarge, .frameTooShort, .invalidEnumValue, .invalidBool,
            .invalidOptionalFlag, .invalidUTF8:
            .malformedFrame
        }
    }

    /// Whether the bytes merely ended too early: a streaming reader returns `nil` and waits for more.
    var isShortRead: Bool {
        self.code == .truncated || self.code == .lengthPastEnd
    }

    public var description: String {
        switch self.code {
        case .truncated: "frame body ends inside a field"
        case .lengthPastEnd: "length or count prefix runs past the end of the frame body"
        case .unknownMessageType(let type): "unknown message type \(type)"
        case .fieldTooLarge(let field, let limit): "\(field) is over its limit of \(limit)"
        case .frameTooLarge(let length, let limit): "frame of \(length) bytes is over the limit of \(limit)"
        case .frameTooShort(let length): "frame length \(length) is shorter than the 10-byte header"
        case .invalidEnumValue(let type, let value): "\(value) is not a value of \(type)"
        case .invalidBool: "bool byte is neither 0 nor 1"
        case .invalidOptionalFlag: "optional presence byte is neither 0 nor 1"
        case .invalidUTF8: "string is not valid UTF-8"
        }
    }
}
