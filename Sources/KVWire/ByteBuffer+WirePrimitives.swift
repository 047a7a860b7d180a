import NIOCore

// The encodings of the schema's primitive types (proto-spec/SCHEMA.md), used by the generated codec.
//
// Decoders throw `truncated` when a fixed-size field runs past the readable bytes and `lengthPastEnd`
// when a length or count does; `readWireValue` turns both into "not yet" for streaming readers,
// while `Message(frame:)` reports them, since a frame body is complete. Limits are checked on the
// length or count itself, before anything is read or allocated.
extension ByteBuffer {
    /// Runs `decode`; on any error puts the reader index back, and turns a short read into `nil`.
    mutating func readWireValue<Value>(
        _ decode: (inout ByteBuffer) throws(WireError) -> Value
    ) throws(WireError) -> Value? {
        let start = self.readerIndex
        do {
            return try decode(&self)
        } catch {
            self.moveReaderIndex(to: start)
            if error.isShortRead { return nil }
            throw error
        }
    }

    mutating func decodeWireInteger<Integer: FixedWidthInteger>(_: Integer.Type) throws(WireError) -> Integer {
        guard let value = self.readInteger(endianness: .big, as: Integer.self) else {
            throw WireError.truncated
        }
        return value
    }

    mutating func decodeWireBool() throws(WireError) -> Bool {
        switch try self.decodeWireInteger(UInt8.self) {
        case 0: return false
        case 1: return true
        default: throw WireError.invalidBool
        }
    }

    /// Reads a `u32` length or count and checks it against `limit` before anything is allocated.
    mutating func decodeWireLength(limit: Int, field: String) throws(WireError) -> Int {
        let length = Int(try self.decodeWireInteger(UInt32.self))
        guard length <= limit else {
            throw WireError.fieldTooLarge(field: field, limit: limit)
        }
        return length
    }

    /// `bytes(limit)`: a slice of this buffer, not a copy.
    mutating func decodeWireBytes(limit: Int, field: String) throws(WireError) -> ByteBuffer {
        let length = try self.decodeWireLength(limit: limit, field: field)
        guard let bytes = self.readSlice(length: length) else {
            throw WireError.lengthPastEnd
        }
        return bytes
    }

    /// `string(limit)`: UTF-8, validated.
    mutating func decodeWireString(limit: Int, field: String) throws(WireError) -> String {
        let length = try self.decodeWireLength(limit: limit, field: field)
        guard self.readableBytes >= length else {
            throw WireError.lengthPastEnd
        }
        let string = self.withUnsafeReadableBytes { bytes in
            String(validating: UnsafeRawBufferPointer(rebasing: bytes[..<length]), as: UTF8.self)
        }
        guard let string else {
            throw WireError.invalidUTF8
        }
        self.moveReaderIndex(forwardBy: length)
        return string
    }

    /// `list<T>(limit)`. A count whose items cannot fit in the remaining bytes (each takes at least
    /// `elementBytesMin`) is refused before the array reserves room for them.
    mutating func decodeWireList<Element>(
        limit: Int,
        elementBytesMin: Int,
        field: String,
        _ element: (inout ByteBuffer) throws(WireError) -> Element
    ) throws(WireError) -> [Element] {
        let count = try self.decodeWireLength(limit: limit, field: field)
        let (bytesMin, overflow) = count.multipliedReportingOverflow(by: elementBytesMin)
        guard !overflow, bytesMin <= self.readableBytes else {
            throw WireError.lengthPastEnd
        }
        var elements: [Element] = []
        elements.reserveCapacity(count)
        for _ in 0..<count {
            elements.append(try element(&self))
        }
        return elements
    }

    /// `optional<T>`: a presence byte, 0 or 1, then the value when present.
    mutating func decodeWireOptional<Wrapped>(
        _ wrapped: (inout ByteBuffer) throws(WireError) -> Wrapped
    ) throws(WireError) -> Wrapped? {
        switch try self.decodeWireInteger(UInt8.self) {
        case 0: return nil
        case 1: return try wrapped(&self)
        default: throw WireError.invalidOptionalFlag
        }
    }

    mutating func writeWireBool(_ value: Bool) -> Int {
        self.writeInteger(value ? 1 : 0, as: UInt8.self)
    }

    /// Writes `bytes` with its `u32` length. Limits are the reader's to enforce: a writer that sends more
    /// gets its frame refused.
    mutating func writeWireBytes(_ bytes: ByteBuffer) -> Int {
        self.writeInteger(UInt32(bytes.readableBytes)) + self.writeImmutableBuffer(bytes)
    }

    mutating func writeWireString(_ string: String) -> Int {
        self.writeInteger(UInt32(string.utf8.count)) + self.writeString(string)
    }

    mutating func writeWireList<Element>(
        _ elements: [Element],
        _ element: (inout ByteBuffer, Element) -> Int
    ) -> Int {
        var written = self.writeInteger(UInt32(elements.count))
        for item in elements {
            written += element(&self, item)
        }
        return written
    }

    mutating func writeWireOptional<Wrapped>(
        _ value: Wrapped?,
        _ wrapped: (inout ByteBuffer, Wrapped) -> Int
    ) -> Int {
        guard let value else {
            return self.writeInteger(0, as: UInt8.self)
        }
        return self.writeInteger(1, as: UInt8.self) + wrapped(&self, value)
    }
}
