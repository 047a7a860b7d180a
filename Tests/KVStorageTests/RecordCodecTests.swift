import KVCore
import KVStorage
import Testing

/// The on-disk layout documented in `RecordCodec` and `docs/storage.md`.
@Suite struct RecordCodecTests {
    @Test func encodesTheDocumentedLayout() {
        let bytes = RecordCodec.encode(
            StoredRecord(
                version: Version(hlc: 0x0102_0304_0506_0708, writer: 0x1112_1314_1516_1718),
                tombstone: false,
                value: [0xAA, 0xBB]
            )
        )
        #expect(
            bytes == [
                0x01,
                0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
                0x00,
                0xAA, 0xBB,
            ]
        )
        #expect(RecordCodec.encode(tombstone(1))[17] == 0x01)
    }

    @Test func dataKeyIsBigEndianTokenThenKey() {
        let token = Token(key: key("abc")).value
        let expected = (0..<8).map { UInt8(truncatingIfNeeded: token >> (56 - 8 * UInt64($0))) } + key("abc")
        #expect(RecordCodec.dataKey(key("abc")) == expected)
    }

    @Test(arguments: [record(1, "v"), tombstone(2), record(.max, writer: .max, "")])
    func roundTrips(_ stored: StoredRecord) throws {
        #expect(try RecordCodec.decode(RecordCodec.encode(stored)) == stored)
    }

    static let malformed: [[UInt8]] = [
        [],
        [1, 0, 0],
        Array(repeating: 0, count: 17),
        [2] + Array(repeating: 0, count: 17),  // unknown format
        [1] + Array(repeating: 0, count: 16) + [0x02],  // unknown flag
        [1] + Array(repeating: 0, count: 16) + [0x01, 0x55],  // tombstone with a value
    ]

    @Test(arguments: malformed)
    func malformedRecordIsCorruption(_ bytes: [UInt8]) {
        let error = #expect(throws: StorageError.self) { try RecordCodec.decode(bytes) }
        #expect(error?.code == .corruption)
    }
}
