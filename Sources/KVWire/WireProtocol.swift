/// Constants of the wire protocol (proto-spec/FRAMES.md).
public enum WireProtocol {
    /// The protocol version sent in `Hello` and `HelloAck`. A peer refuses other versions with
    /// `ErrorCode.unsupportedVersion`.
    ///
    /// Version 2 appended `PutRequest.origin`; version 1 was never released, so no peer speaks it.
    public static let version: UInt16 = 3

    /// Bytes of a frame header after the length prefix: type (1), request id (8), flags (1).
    public static let frameHeaderBytes = 10

    /// Bytes of the length prefix.
    public static let lengthPrefixBytes = 4

    /// The request id of frames that belong to the connection rather than a request (an `Error` sent
    /// before closing).
    public static let connectionRequestID: UInt64 = 0

    /// The request id of the `Hello` that opens a connection.
    public static let helloRequestID: UInt64 = 1
}
