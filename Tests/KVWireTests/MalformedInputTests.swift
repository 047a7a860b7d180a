import KVCore
import KVWire
import NIOCore
import Testing

@Suite("Malformed input")
struct MalformedInputTests {
    /// The body of a valid `Hello` sample, to be damaged by the tests.
    static func helloBody(clusterId: [UInt8] = Array("qkv".utf8), role: UInt8 = 2) -> ByteBuffer {
        var body = ByteBuffer()
        body.writeInteger(UInt16(1))
        body.writeInteger(UInt32(clusterId.count))
        body.writeBytes(clusterId)
        body.writeInteger(UInt32(2))
        body.writeString("c1")
        body.writeInteger(role)
        body.writeInteger(UInt64(7))
        return body
    }

    static func decode(type: UInt8, body: ByteBuffer) throws(WireError) -> Message {
        try Message(frame: Frame(type: type, requestID: 9, flags: 0, body: body))
    }

    @Test("the helper body is a valid Hello")
    func helperIsValid() throws {
        let message = try Self.decode(type: 1, body: Self.helloBody())
        #expect(message == .hello(Hello(protocolVersion: 1, clusterId: "qkv", senderId: "c1", role: .client, epoch: 7)))
    }

    @Test("a body cut inside a fixed-size field is truncated")
    func truncatedBody() {
        var body = Self.helloBody()
        body.moveWriterIndex(to: body.writerIndex - 1)
        #expect(throws: WireError.truncated) { try Self.decode(type: 1, body: body) }
        #expect(throws: WireError.truncated) { try Self.decode(type: 18, body: ByteBuffer()) }
        #expect(WireError.truncated.errorCode == .malformedFrame)
    }

    @Test("a length that runs past the body is lengthPastEnd")
    func lengthPastEnd() {
        var body = ByteBuffer()
        body.writeInteger(UInt32(100))
        body.writeString("abc")
        #expect(throws: WireError.lengthPastEnd) { try Self.decode(type: MessageType.getRequest.rawValue, body: body) }
        #expect(WireError.lengthPastEnd.errorCode == .malformedFrame)
    }

    @Test("a list count whose items cannot fit is refused before allocating")
    func listCountPastEnd() {
        var body = ByteBuffer()
        body.writeInteger(UInt32(Limits.listCountMax))  // hashes: 65536 × 8 bytes claimed, none sent
        #expect(throws: WireError.lengthPastEnd) {
            try Self.decode(type: MessageType.merkleExchangeResponse.rawValue, body: body)
        }
    }

    @Test("an unknown message type", arguments: [UInt8(0), 4, 15, 26, 99, 255])
    func unknownMessageType(_ type: UInt8) {
        #expect(throws: WireError.unknownMessageType(type)) { try Self.decode(type: type, body: ByteBuffer()) }
        #expect(WireError.unknownMessageType(type).errorCode == .unknownMessageType)
    }

    @Test("a bytes length over its limit is refused before reading")
    func bytesOverLimit() {
        var body = ByteBuffer()
        body.writeInteger(UInt32(Limits.keyBytesMax + 1))
        let error = WireError.fieldTooLarge(field: "GetRequest.key", limit: Limits.keyBytesMax)
        #expect(throws: error) { try Self.decode(type: MessageType.getRequest.rawValue, body: body) }
        #expect(error.errorCode == .malformedFrame)
        // The same through the streaming reader: an error, not "need more bytes", and nothing consumed.
        var stream = body
        #expect(throws: error) { try stream.readGetRequest() }
        #expect(stream == body)
    }

    @Test("a 4 GiB bytes length inside a body is refused without allocating")
    func hugeBytesLength() {
        var body = ByteBuffer()
        body.writeInteger(UInt32(1))
        body.writeString("k")
        body.writeInteger(UInt32.max)  // value: 4 GiB
        #expect(throws: WireError.fieldTooLarge(field: "PutRequest.value", limit: Limits.valueBytesMax)) {
            try Self.decode(type: MessageType.putRequest.rawValue, body: body)
        }
    }

    @Test("a string and a list over their limits")
    func stringAndListOverLimit() {
        let name = [UInt8](repeating: 0x61, count: Limits.nameBytesMax + 1)
        #expect(throws: WireError.fieldTooLarge(field: "Hello.clusterId", limit: Limits.nameBytesMax)) {
            try Self.decode(type: 1, body: Self.helloBody(clusterId: name))
        }
        var body = ByteBuffer()
        body.writeInteger(UInt32(Limits.listCountMax + 1))
        #expect(throws: WireError.fieldTooLarge(field: "MerkleExchangeResponse.hashes", limit: Limits.listCountMax)) {
            try Self.decode(type: MessageType.merkleExchangeResponse.rawValue, body: body)
        }
    }

    @Test("a string of exactly its limit is accepted")
    func stringAtLimit() throws {
        let name = [UInt8](repeating: 0x61, count: Limits.nameBytesMax)
        guard case .hello(let hello) = try Self.decode(type: 1, body: Self.helloBody(clusterId: name)) else {
            Issue.record("not a Hello")
            return
        }
        #expect(hello.clusterId.utf8.count == Limits.nameBytesMax)
    }

    @Test("a bool byte of 2")
    func invalidBool() {
        var body = ByteBuffer()
        body.writeInteger(UInt32(1))
        body.writeString("k")
        body.writeInteger(UInt32(0))
        body.writeInteger(UInt64(1))
        body.writeInteger(UInt64(2))
        body.writeInteger(UInt8(2))  // tombstone
        body.writeInteger(PutOrigin.client.rawValue)
        body.writeInteger(UInt64(7))  // epoch
        body.writeInteger(UInt8(0))  // expiresAtMillis absent
        body.writeInteger(UInt32(0))  // keyspace
        #expect(throws: WireError.invalidBool) { try Self.decode(type: MessageType.putRequest.rawValue, body: body) }
        body.setInteger(UInt8(1), at: body.writerIndex - 15)
        #expect(throws: Never.self) { try Self.decode(type: MessageType.putRequest.rawValue, body: body) }
    }

    /// A PutRequest body up to and including `tombstone`: what protocol version 1 sent.
    private static func putBodyWithoutOrigin() -> ByteBuffer {
        var body = ByteBuffer()
        body.writeInteger(UInt32(1))
        body.writeString("k")
        body.writeInteger(UInt32(0))
        body.writeInteger(UInt64(1))
        body.writeInteger(UInt64(2))
        body.writeInteger(UInt8(0))
        return body
    }

    @Test("a PutRequest without its origin (protocol version 1) is truncated")
    func putRequestWithoutOrigin() {
        #expect(throws: WireError.truncated) {
            try Self.decode(type: MessageType.putRequest.rawValue, body: Self.putBodyWithoutOrigin())
        }
    }

    @Test("unknown PutOrigin values", arguments: [UInt8(0), 5, 255])
    func invalidPutOrigin(_ origin: UInt8) {
        var body = Self.putBodyWithoutOrigin()
        body.writeInteger(origin)
        #expect(throws: WireError.invalidEnumValue(type: "PutOrigin", value: UInt64(origin))) {
            try Self.decode(type: MessageType.putRequest.rawValue, body: body)
        }
    }

    @Test("an optional presence byte of 2")
    func invalidOptional() {
        var body = ByteBuffer()
        body.writeInteger(UInt8(2))
        body.writeInteger(UInt64(0))
        #expect(throws: WireError.invalidOptionalFlag) {
            try Self.decode(type: MessageType.getResponse.rawValue, body: body)
        }
    }

    @Test("unknown enum values", arguments: [UInt8(0), 4, 255])
    func invalidRole(_ role: UInt8) {
        #expect(throws: WireError.invalidEnumValue(type: "Role", value: UInt64(role))) {
            try Self.decode(type: 1, body: Self.helloBody(role: role))
        }
    }

    @Test("an unknown u16 enum value")
    func invalidErrorCode() {
        var body = ByteBuffer()
        body.writeInteger(UInt16(0x0100))
        body.writeInteger(UInt32(0))
        #expect(throws: WireError.invalidEnumValue(type: "ErrorCode", value: 0x0100)) {
            try Self.decode(type: MessageType.error.rawValue, body: body)
        }
    }

    @Test(
        "invalid UTF-8", arguments: [[UInt8(0xFF)], [0xC3], [0x61, 0xED, 0xA0, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80]])
    func invalidUTF8(_ bytes: [UInt8]) {
        #expect(throws: WireError.invalidUTF8) { try Self.decode(type: 1, body: Self.helloBody(clusterId: bytes)) }
        #expect(WireError.invalidUTF8.errorCode == .malformedFrame)
    }

    @Test("a frame over the maximum is refused from its length prefix alone")
    func frameOverMaximum() {
        var bytes = ByteBuffer()
        bytes.writeInteger(UInt32(Limits.frameBytesMax - 3))  // 4 + that = max + 1
        let error = WireError.frameTooLarge(length: Limits.frameBytesMax + 1, limit: Limits.frameBytesMax)
        #expect(throws: error) { try bytes.readFrame() }
        #expect(error.errorCode == .frameTooLarge)
        #expect(bytes.readerIndex == 0)
    }

    @Test("a frame of exactly the maximum waits for its bytes")
    func frameAtMaximum() throws {
        var bytes = ByteBuffer()
        bytes.writeInteger(UInt32(Limits.frameBytesMax - 4))
        bytes.writeInteger(UInt8(1))
        #expect(try bytes.readFrame() == nil)
        #expect(bytes.readerIndex == 0)
    }

    @Test("a header claiming 4 GiB is refused without buffering or allocating")
    func fourGiBHeader() {
        var bytes = ByteBuffer()
        bytes.writeInteger(UInt32.max)
        bytes.writeInteger(UInt8(16))
        #expect(throws: WireError.frameTooLarge(length: 4 + Int(UInt32.max), limit: Limits.frameBytesMax)) {
            try bytes.readFrame()
        }
        #expect(bytes.readableBytes == 5)
    }

    @Test("a length shorter than the frame header", arguments: [UInt32(0), 1, 9])
    func frameTooShort(_ length: UInt32) {
        var bytes = ByteBuffer()
        bytes.writeInteger(length)
        bytes.writeBytes([UInt8](repeating: 0, count: 16))
        #expect(throws: WireError.frameTooShort(length: Int(length))) { try bytes.readFrame() }
    }

    @Test("FrameBatch refuses a frame over the maximum and stays as it was")
    func batchRefusesLargeFrame() throws {
        var batch = FrameBatch(frameBytesMax: 64, allocator: ByteBufferAllocator())
        let small = Message.error(ErrorMessage(code: .internal, message: "ok"))
        try batch.append(.message(small, requestID: 1))
        let built = Frame(type: 16, requestID: 2, flags: 0, body: ByteBuffer(repeating: 0, count: 100))
        #expect(throws: WireError.frameTooLarge(length: 114, limit: 64)) { try batch.append(.frame(built)) }
        let large = Message.error(ErrorMessage(code: .internal, message: String(repeating: "x", count: 100)))
        let largeBytes = encodeFrame(large, requestID: 3).readableBytes
        #expect(throws: WireError.frameTooLarge(length: largeBytes, limit: 64)) {
            try batch.append(.message(large, requestID: 3))
        }
        var sent: [ByteBuffer] = []
        batch.flush(allocator: ByteBufferAllocator()) { sent.append($0) }
        #expect(sent == [encodeFrame(small, requestID: 1)])
    }

    @Test("errors describe themselves")
    func descriptions() {
        #expect(
            WireError.fieldTooLarge(field: "GetRequest.key", limit: 65536).description
                == "GetRequest.key is over its limit of 65536"
        )
        #expect(WireError.unknownMessageType(200).description == "unknown message type 200")
    }

    /// A record decodes whatever its flags say; turning it into a store's record refuses what no write
    /// could have made, where `StoredRecord.init` would trap (a peer's `Hint`, `GetResponse`, stream
    /// page or Merkle batch: one copy of the rule for the node and the SDK).
    @Test("a tombstone with a value or an expiry is no stored record")
    func tombstonesCarryNothing() throws {
        let version = Version(hlc: 5 << 16, writer: 1)
        let withValue = Record(
            key: ByteBuffer(string: "k"), version: version, tombstone: true, value: ByteBuffer(string: "v"),
            expiresAtMillis: nil)
        #expect(throws: MalformedRecord.self) { try withValue.stored() }
        let expiring = Record(
            key: ByteBuffer(string: "k"), version: version, tombstone: true, value: ByteBuffer(), expiresAtMillis: 9)
        #expect(throws: MalformedRecord.self) { try expiring.stored() }
        let tombstone = Record(
            key: ByteBuffer(string: "k"), version: version, tombstone: true, value: ByteBuffer(), expiresAtMillis: nil)
        #expect(try tombstone.stored() == StoredRecord(version: version, tombstone: true, value: []))
        let value = Record(
            key: ByteBuffer(string: "k"), version: version, tombstone: false, value: ByteBuffer(string: "v"),
            expiresAtMillis: 9)
        #expect(
            try value.stored() == StoredRecord(version: version, tombstone: false, value: [118], expiresAtMillis: 9))
    }
}
