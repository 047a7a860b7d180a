import NIOCore

/// The property the fuzz target (`kvfuzz`, `scripts/fuzz.sh`) and the regression test check on any
/// bytes: every frame in them decodes or is refused with a `WireError` (typed throws: never a trap),
/// and every message that decodes re-encodes to bytes that decode to the same message.
package enum WireRoundTrip {
    /// Why `bytes` break the property; nil when they keep it.
    package static func violation(in bytes: UnsafeRawBufferPointer) -> String? {
        var buffer = ByteBuffer(bytes: bytes)
        do {
            while let frame = try buffer.readFrame() {
                let message = try Message(frame: frame)
                let again = try Message(frame: message.frame(requestID: frame.requestID, allocator: .init()))
                guard again == message else {
                    return "\(message.type) re-encoded to bytes that decode to another message"
                }
            }
        } catch {
            _ = error.errorCode  // every refusal maps to a wire error code
        }
        return nil
    }
}
