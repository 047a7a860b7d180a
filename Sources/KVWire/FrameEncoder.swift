public import KVCore
public import NIOCore

/// Writes outbound `Frame`s with their length prefix (proto-spec/FRAMES.md).
///
/// A frame over `frameBytesMax` is refused with `WireError.frameTooLarge` rather than sent, since the
/// peer would close the connection over it.
public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Frame

    /// The largest frame sent, length prefix included.
    public let frameBytesMax: Int

    public init(frameBytesMax: Int = Limits.frameBytesMax) {
        self.frameBytesMax = frameBytesMax
    }

    public func encode(data: Frame, out: inout ByteBuffer) throws {
        guard data.encodedBytes <= self.frameBytesMax else {
            throw WireError.frameTooLarge(length: data.encodedBytes, limit: self.frameBytesMax)
        }
        out.writeFrame(data)
    }
}
