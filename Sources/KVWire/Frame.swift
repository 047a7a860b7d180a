public import KVCore
public import NIOCore

/// One frame off the wire, its body not yet decoded: what `FrameDecoder` produces and `FrameWriter` writes.
///
/// The body is a slice of the bytes received, not a copy. `Message(frame:)` decodes it.
public struct Frame: Sendable, Hashable {
    /// The message type byte; `MessageType(rawValue:)` names it.
    public var type: UInt8
    /// Chosen by the requester; a response carries its request's id. 0 is the connection itself.
    public var requestID: UInt64
    /// Reserved: sent as 0, unknown bits ignored.
    public var flags: UInt8
    /// The message body.
    public var body: ByteBuffer

    public init(type: UInt8, requestID: UInt64, flags: UInt8 = 0, body: ByteBuffer) {
        self.type = type
        self.requestID = requestID
        self.flags = flags
        self.body = body
    }

    /// Bytes of the whole frame on the wire, length prefix included.
    public var encodedBytes: Int {
        WireProtocol.lengthPrefixBytes + WireProtocol.frameHeaderBytes + self.body.readableBytes
    }
}

extension ByteBuffer {
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
        let type = self.readInteger(as: UInt8.self)!
        let requestID = self.readInteger(endianness: .big, as: UInt64.self)!
        let flags = self.readInteger(as: UInt8.self)!
        let body = self.readSlice(length: Int(length) - WireProtocol.frameHeaderBytes)!
        return Frame(type: type, requestID: requestID, flags: flags, body: body)
    }

    /// Writes `frame` with its length prefix; returns the number of bytes written.
    ///
    /// Does not check the frame limit: `FrameWriter` does, and refuses to send what the peer would refuse.
    @discardableResult
    public mutating func writeFrame(_ frame: Frame) -> Int {
        var written = self.writeInteger(UInt32(WireProtocol.frameHeaderBytes + frame.body.readableBytes))
        written += self.writeInteger(frame.type)
        written += self.writeInteger(frame.requestID)
        written += self.writeInteger(frame.flags)
        written += self.writeImmutableBuffer(frame.body)
        return written
    }

    /// Writes `message` as a whole frame (length prefix, header with flags 0, body); returns the
    /// number of bytes written. The body is encoded in place, without an intermediate buffer.
    @discardableResult
    public mutating func writeFrame(_ message: Message, requestID: UInt64) -> Int {
        let lengthIndex = self.writerIndex
        var written = self.writeInteger(UInt32(0))
        written += self.writeInteger(message.type.rawValue)
        written += self.writeInteger(requestID)
        written += self.writeInteger(UInt8(0))
        written += message.writeBody(to: &self)
        self.setInteger(UInt32(written - WireProtocol.lengthPrefixBytes), at: lengthIndex)
        return written
    }
}
