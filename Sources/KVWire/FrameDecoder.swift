public import KVCore
public import NIOCore

/// Splits the inbound byte stream into `Frame`s (proto-spec/FRAMES.md).
///
/// A length prefix over `frameBytesMax` is rejected as soon as its 4 bytes arrive, before the frame is
/// buffered, by throwing `WireError.frameTooLarge`; the pipeline should then send an `Error` frame with
/// `WireError.errorCode` and request id 0, and close. Use it as
/// `ByteToMessageHandler(FrameDecoder(), maximumBufferSize: Limits.frameBytesMax)`.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame

    /// The largest frame accepted, length prefix included.
    public let frameBytesMax: Int

    public init(frameBytesMax: Int = Limits.frameBytesMax) {
        precondition(
            frameBytesMax >= WireProtocol.lengthPrefixBytes + WireProtocol.frameHeaderBytes,
            "frameBytesMax must hold at least a frame header"
        )
        self.frameBytesMax = frameBytesMax
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try buffer.readFrame(frameBytesMax: self.frameBytesMax) else {
            return .needMoreData
        }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        try self.decode(context: context, buffer: &buffer)
    }
}
