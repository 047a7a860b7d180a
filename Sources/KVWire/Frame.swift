public import KVCore
public import NIOCore

/// One frame off the wire, its body not yet decoded: what `FrameDecoder` produces and `FrameWriter` writes.
///
/// The header and the body are one slice of the bytes received, not a copy: the frame is a single
/// `ByteBuffer` (23 bytes), which `NIOAny` holds in place, so passing a frame down a channel pipeline
/// allocates nothing (a frame of four fields was boxed on the heap at every hand-over).
/// `Message(frame:)` decodes the body.
public struct Frame: Sendable, Hashable {
    /// The header (type, request id, flags: `WireProtocol.frameHeaderBytes`) and the body, as on the
    /// wire after the length prefix.
    private var bytes: ByteBuffer

    /// Where the header's fields start (`ByteBuffer.writeFrameHeader` writes them in this order).
    private static let requestIDOffset = 1
    private static let flagsOffset = 9

    public init(type: UInt8, requestID: UInt64, flags: UInt8 = 0, body: ByteBuffer) {
        var bytes = ByteBuffer()
        bytes.reserveCapacity(WireProtocol.frameHeaderBytes + body.readableBytes)
        bytes.writeFrameHeader(type: type, requestID: requestID, flags: flags)
        bytes.writeImmutableBuffer(body)
        self.bytes = bytes
    }

    /// A frame of `headerAndBody`'s readable bytes, which hold at least the header.
    init(headerAndBody: ByteBuffer) {
        precondition(headerAndBody.readableBytes >= WireProtocol.frameHeaderBytes, "a frame holds its header")
        self.bytes = headerAndBody
    }

    /// The message type byte; `MessageType(rawValue:)` names it.
    public var type: UInt8 {
        get { bytes.getInteger(at: bytes.readerIndex)! }
        set { bytes.setInteger(newValue, at: bytes.readerIndex) }
    }

    /// Chosen by the requester; a response carries its request's id. 0 is the connection itself.
    public var requestID: UInt64 {
        get { bytes.getInteger(at: bytes.readerIndex + Self.requestIDOffset, endianness: .big)! }
        set { bytes.setInteger(newValue, at: bytes.readerIndex + Self.requestIDOffset, endianness: .big) }
    }

    /// Reserved: sent as 0, unknown bits ignored.
    public var flags: UInt8 {
        get { bytes.getInteger(at: bytes.readerIndex + Self.flagsOffset)! }
        set { bytes.setInteger(newValue, at: bytes.readerIndex + Self.flagsOffset) }
    }

    /// The message body: a slice, not a copy.
    public var body: ByteBuffer {
        bytes.getSlice(
            at: bytes.readerIndex + WireProtocol.frameHeaderBytes,
            length: bytes.readableBytes - WireProtocol.frameHeaderBytes)!
    }

    /// Bytes of the whole frame on the wire, length prefix included.
    public var encodedBytes: Int {
        WireProtocol.lengthPrefixBytes + bytes.readableBytes
    }

    /// The header and the body, as written after the length prefix.
    var headerAndBody: ByteBuffer { bytes }
}

extension ByteBuffer {
    /// Writes a frame header (proto-spec/FRAMES.md): the type byte, the request id, the flags byte, at
    /// `Frame`'s offsets; returns the number of bytes written (`WireProtocol.frameHeaderBytes`).
    @discardableResult
    mutating func writeFrameHeader(type: UInt8, requestID: UInt64, flags: UInt8) -> Int {
        self.writeInteger(type) + self.writeInteger(requestID) + self.writeInteger(flags)
    }

    /// Reads one whole frame, or returns `nil` (reader index unchanged) if it has not all arrived.
    ///
    /// The length prefix is judged as soon as its 4 bytes are here: a frame over `frameBytesMax`
    /// (prefix included) throws `frameTooLarge` before any of it is buffered, and a length under the
    /// 10-byte header throws `frameTooShort`. The body is a slice, not a copy.
    public mutating func readFrame(frameBytesMax: Int = Limits.frameBytesMax) throws(WireError) -> Frame? {
        guard let length = self.getInteger(at: self.readerIndex, endianness: .big, as: UInt32.self) else {
            return nil
        }
        let frameBytes = WireProtocol.lengthPrefixBytes + Int(length)
        guard frameBytes <= frameBytesMax else {
            throw WireError.frameTooLarge(length: frameBytes, limit: frameBytesMax)
        }
        guard Int(length) >= WireProtocol.frameHeaderBytes else {
            throw WireError.frameTooShort(length: Int(length))
        }
        guard self.readableBytes >= frameBytes else { return nil }
        self.moveReaderIndex(forwardBy: WireProtocol.lengthPrefixBytes)
        return Frame(headerAndBody: self.readSlice(length: Int(length))!)
    }

    /// Writes `frame` with its length prefix; returns the number of bytes written.
    ///
    /// Does not check the frame limit: `FrameWriter` does, and refuses to send what the peer would refuse.
    @discardableResult
    public mutating func writeFrame(_ frame: Frame) -> Int {
        let headerAndBody = frame.headerAndBody
        let written = self.writeInteger(UInt32(headerAndBody.readableBytes))
        return written + self.writeImmutableBuffer(headerAndBody)
    }

    /// Writes `message` as a whole frame (length prefix, header with flags 0, body); returns the
    /// number of bytes written. The body is encoded in place, without an intermediate buffer.
    @discardableResult
    public mutating func writeFrame(_ message: Message, requestID: UInt64) -> Int {
        let lengthIndex = self.writerIndex
        var written = self.writeInteger(UInt32(0))
        written += self.writeFrameHeader(type: message.type.rawValue, requestID: requestID, flags: 0)
        written += message.writeBody(to: &self)
        self.setInteger(UInt32(written - WireProtocol.lengthPrefixBytes), at: lengthIndex)
        return written
    }
}
