import KVCore
import KVWire
import NIOCore
import Testing

@Suite("Round trips")
struct RoundTripTests {
    @Test("every message type has a sample")
    func everyMessageTypeHasASample() {
        let covered = Set(Samples.all.map(\.message.type))
        #expect(covered == Set(MessageType.allCases))
    }

    @Test("frame → bytes → frame → message", arguments: Samples.all)
    func roundTripsThroughBytes(_ sample: Sample) throws {
        var bytes = encodeFrame(sample.message, requestID: sample.requestID)
        let written = bytes.readableBytes
        let frame = try #require(try bytes.readFrame())
        #expect(bytes.readableBytes == 0)
        #expect(frame.encodedBytes == written)
        #expect(frame.type == sample.message.type.rawValue)
        #expect(frame.requestID == sample.requestID)
        #expect(frame.flags == 0)
        #expect(try Message(frame: frame) == sample.message)
    }

    @Test("Message.frame and both ways into a FrameBatch agree with writeFrame", arguments: Samples.all)
    func frameAPIsAgree(_ sample: Sample) throws {
        let frame = sample.message.frame(requestID: sample.requestID, allocator: ByteBufferAllocator())
        #expect(try Message(frame: frame) == sample.message)
        var batch = FrameBatch(allocator: ByteBufferAllocator())
        try batch.append(.frame(frame))
        try batch.append(.message(sample.message, requestID: sample.requestID))
        var sent: [ByteBuffer] = []
        batch.flush(allocator: ByteBufferAllocator()) { sent.append($0) }
        var expected = encodeFrame(sample.message, requestID: sample.requestID)
        expected.writeImmutableBuffer(encodeFrame(sample.message, requestID: sample.requestID))
        #expect(sent == [expected])
    }

    @Test("read…() returns nil on every short prefix and leaves the reader index", arguments: Samples.all)
    func streamingReadsWaitForMoreBytes(_ sample: Sample) throws {
        var body = ByteBuffer()
        sample.message.frame(requestID: 0, allocator: ByteBufferAllocator()).body.withUnsafeReadableBytes {
            _ = body.writeBytes($0)
        }
        for length in 0..<body.readableBytes {
            var prefix = body.getSlice(at: body.readerIndex, length: length)!
            if let decoded = try readBody(sample.message.type, from: &prefix) {
                // A prefix that ends where a later version's fields begin is that message from an
                // older peer, those fields absent.
                #expect(
                    sample.message.olderForms.contains(decoded) && prefix.readableBytes == 0,
                    "prefix of \(length) bytes")
            } else {
                #expect(prefix.readableBytes == length)
            }
        }
        var whole = body
        #expect(try readBody(sample.message.type, from: &whole) == sample.message)
        #expect(whole.readableBytes == 0)
    }

    @Test("a decoder ignores trailing bytes of fields it does not know", arguments: Samples.all)
    func ignoresTrailingFields(_ sample: Sample) throws {
        var frame = sample.message.frame(requestID: sample.requestID, allocator: ByteBufferAllocator())
        // A message of an older version, whose later fields (`@since`) are absent, reads the first
        // trailing bytes as those fields (no older peer sends trailing bytes after them): zeros are a
        // valid encoding of any of them (a 0, an empty list or string; 16 cover the longest run of
        // them, `NodeStats`'s list count, u64 and string length), the bytes after them are not.
        var body = frame.body
        body.writeBytes([UInt8](repeating: 0, count: 16) + [0x01, 0xFF, 0x00, 0x7F])
        frame = Frame(type: frame.type, requestID: frame.requestID, body: body)
        let decoded = try Message(frame: frame)
        let versions = UInt16(1)...WireProtocol.version
        #expect(decoded == sample.message || versions.contains { decoded.restricted(toProtocol: $0) == sample.message })
    }

    @Test("a frame fits in an existential's inline buffer, so a pipeline passes it without a heap box")
    func frameIsSmall() {
        // `NIOAny` holds any type but `ByteBuffer` as `Any`, which boxes a value over three words.
        #expect(MemoryLayout<Frame>.size <= 3 * MemoryLayout<Int>.size)
        let frame = Frame(type: 16, requestID: 0x0102_0304_0506_0708, flags: 3, body: ByteBuffer(bytes: [9, 8, 7]))
        #expect(frame.type == 16)
        #expect(frame.requestID == 0x0102_0304_0506_0708)
        #expect(frame.flags == 3)
        #expect(frame.body == ByteBuffer(bytes: [9, 8, 7]))
        #expect(frame.encodedBytes == WireProtocol.lengthPrefixBytes + WireProtocol.frameHeaderBytes + 3)
    }

    @Test("unknown flag bits are carried and ignored")
    func ignoresFlags() throws {
        var frame = Samples.all[0].message.frame(requestID: 1, allocator: ByteBufferAllocator())
        frame.flags = 0xFF
        var bytes = ByteBuffer()
        bytes.writeFrame(frame)
        let decoded = try #require(try bytes.readFrame())
        #expect(decoded.flags == 0xFF)
        #expect(try Message(frame: decoded) == Samples.all[0].message)
    }

    @Test("bytes fields decode as slices of the frame, not copies")
    func bytesAreZeroCopy() throws {
        var bytes = encodeFrame(
            .putRequest(
                PutRequest(
                    key: ByteBuffer(string: "k"), value: ByteBuffer(repeating: 7, count: 4096), version: .zero,
                    tombstone: false, origin: .client, epoch: 0, expiresAtMillis: 0, keyspace: 0
                )
            ),
            requestID: 1
        )
        let frame = try #require(try bytes.readFrame())
        guard case .putRequest(let put) = try Message(frame: frame) else {
            Issue.record("not a PutRequest")
            return
        }
        let frameStorage = frame.body.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        let valueStorage = put.value.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        #expect(valueStorage > frameStorage && valueStorage < frameStorage + UInt(frame.body.readableBytes))
    }

    @Test("a value of the largest size fits in a frame")
    func largestPutFits() throws {
        let put = PutRequest(
            key: ByteBuffer(repeating: 1, count: Limits.keyBytesMax),
            value: ByteBuffer(repeating: 2, count: Limits.valueBytesMax), version: .zero, tombstone: false,
            origin: .client, epoch: 0, expiresAtMillis: 0, keyspace: 0
        )
        var bytes = encodeFrame(.putRequest(put), requestID: 1)
        #expect(bytes.readableBytes <= Limits.frameBytesMax)
        let frame = try #require(try bytes.readFrame())
        #expect(try Message(frame: frame) == .putRequest(put))
    }
}

@Suite("Golden encodings of KVCore types")
struct CoreTypeGoldenTests {
    @Test("Version is hlc then writer, each u64 big-endian")
    func versionEncoding() throws {
        var buffer = ByteBuffer()
        let version = Version(hlc: 0x0102_0304_0506_0708, writer: 0x1112_1314_1516_1718)
        #expect(buffer.writeVersion(version) == 16)
        #expect(buffer.hex == "0102030405060708" + "1112131415161718")
        #expect(try buffer.readVersion() == version)
        #expect(buffer.readableBytes == 0)
    }

    @Test("Role is its raw u8", arguments: [(Role.node, "01"), (.client, "02"), (.admin, "03")])
    func roleEncoding(_ role: Role, _ hex: String) throws {
        var buffer = ByteBuffer()
        #expect(buffer.writeRole(role) == 1)
        #expect(buffer.hex == hex)
        #expect(try buffer.readRole() == role)
    }

    @Test("protocol version is 4 and speaks 3 too (negotiation)")
    func protocolVersion() {
        #expect(WireProtocol.version == 4)
        #expect(WireProtocol.versions == ProtocolRange(lowest: 3, highest: 4))
    }

    @Test("PutOrigin is its raw u8", arguments: [(PutOrigin.client, "01"), (.readRepair, "02"), (.hintReplay, "03")])
    func putOriginEncoding(_ origin: PutOrigin, _ hex: String) throws {
        var buffer = ByteBuffer()
        #expect(buffer.writePutOrigin(origin) == 1)
        #expect(buffer.hex == hex)
        #expect(try buffer.readPutOrigin() == origin)
    }
}

extension Message {
    /// This message as each older protocol version sends it, where that differs (`@since` fields absent).
    var olderForms: [Message] {
        (UInt16(1)..<WireProtocol.version).map { restricted(toProtocol: $0) }.filter { $0 != self }
    }
}
