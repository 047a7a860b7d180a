public import Foundation
public import NIOCore

/// A type whose values can be a key or a value of the store: `String`, `Substring`, `[UInt8]`,
/// `Data` and `ByteBuffer` conform.
///
/// Keys and values are bytes to the store: a `String` is stored as its UTF-8 bytes, and read back
/// with `String(decoding:as: UTF8.self)` (invalid UTF-8 becomes U+FFFD).
///
/// Copies: a key is copied once into an array (the SDK hashes it onto the ring and checks its length)
/// except a `[UInt8]` key, which is used as it is. A value goes into the request frames as a
/// `ByteBuffer`: a `ByteBuffer` value is not copied before that, any other is copied once. A value
/// read is handed over as a `[UInt8]` without another copy, and copied once into any other type.
public protocol KVBytes: Sendable {
    /// The bytes as an array: `[UInt8]` returns itself, the other types copy.
    var kvArray: [UInt8] { get }
    /// The bytes as a buffer: `ByteBuffer` returns itself, the other types copy.
    var kvBuffer: ByteBuffer { get }
    /// A value of this type holding `kvBytes`, the bytes of a value read from the store.
    init(kvBytes: [UInt8])
}

/// Bytes as they are: a key or value of `[UInt8]` is never copied before it is hashed or read back.
extension Array: KVBytes where Element == UInt8 {
    /// The array itself: no copy.
    public var kvArray: [UInt8] { self }
    /// The bytes copied into a new buffer.
    public var kvBuffer: ByteBuffer { ByteBuffer(bytes: self) }
    /// The bytes read, without a copy.
    public init(kvBytes: [UInt8]) { self = kvBytes }
}

/// Text, stored as its UTF-8 bytes.
extension String: KVBytes {
    /// The UTF-8 bytes, copied into an array.
    public var kvArray: [UInt8] { Array(utf8) }
    /// The UTF-8 bytes, copied into a new buffer.
    public var kvBuffer: ByteBuffer { ByteBuffer(string: self) }
    /// The bytes read, decoded as UTF-8 (invalid sequences become U+FFFD).
    public init(kvBytes: [UInt8]) { self = String(decoding: kvBytes, as: UTF8.self) }
}

/// Text, stored as its UTF-8 bytes.
extension Substring: KVBytes {
    /// The UTF-8 bytes, copied into an array.
    public var kvArray: [UInt8] { Array(utf8) }
    /// The UTF-8 bytes, copied into a new buffer.
    public var kvBuffer: ByteBuffer { ByteBuffer(substring: self) }
    /// The bytes read, decoded as UTF-8 (invalid sequences become U+FFFD).
    public init(kvBytes: [UInt8]) { self = Substring(String(decoding: kvBytes, as: UTF8.self)) }
}

/// Foundation's bytes, copied once into the store's buffers.
extension Data: KVBytes {
    /// The bytes, copied into an array.
    public var kvArray: [UInt8] { Array(self) }
    /// The bytes, copied into a new buffer.
    public var kvBuffer: ByteBuffer { ByteBuffer(bytes: self) }
    /// The bytes read, copied.
    public init(kvBytes: [UInt8]) { self = Data(kvBytes) }
}

/// SwiftNIO's bytes: a `ByteBuffer` value goes into the request frames without a copy.
extension ByteBuffer: KVBytes {
    /// The readable bytes, copied into an array.
    public var kvArray: [UInt8] { Array(readableBytesView) }
    /// The buffer itself: no copy.
    public var kvBuffer: ByteBuffer { self }
    /// The bytes read, copied into a new buffer.
    public init(kvBytes: [UInt8]) { self.init(bytes: kvBytes) }
}
