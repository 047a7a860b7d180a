public import NIOCore

extension Message {
    /// Decodes a frame's body as the message its type byte names.
    ///
    /// Throws `unknownMessageType` for a type the schema does not define, `truncated` or `lengthPastEnd`
    /// for a body shorter than its fields, and the field errors of the codec. Bytes after the fields
    /// this version knows are ignored (fields are only ever appended).
    public init(frame: Frame) throws(WireError) {
        guard let type = MessageType(rawValue: frame.type) else {
            throw WireError.unknownMessageType(frame.type)
        }
        var body = frame.body
        try self.init(type: type, body: &body)
    }

    /// The frame that carries this message, with flags 0.
    public func frame(requestID: UInt64, allocator: ByteBufferAllocator) -> Frame {
        var bytes = allocator.buffer(capacity: 64)
        bytes.writeFrameHeader(type: self.type.rawValue, requestID: requestID, flags: 0)
        self.writeBody(to: &bytes)
        return Frame(headerAndBody: bytes)
    }
}
