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
        // An expiring value: flag bit 1, and the expiry's 8 bytes after the value.
        var expiring = record(0x0102_0304_0506_0708, "\u{AA}")
        expiring.value = [0xAA]
        expiring.expiresAtMillis = 0x2122_2324_2526_2728
        let expiringBytes = RecordCodec.encode(expiring)
        #expect(expiringBytes[17] == 0x02)
        #expect(Array(expiringBytes[18...]) == [0xAA, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28])
    }

    @Test func dataKeyIsBigEndianTokenThenKey() {
        let token = Token(key: key("abc")).value
        let expected = (0..<8).map { UInt8(truncatingIfNeeded: token >> (56 - 8 * UInt64($0))) } + key("abc")
        #expect(RecordCodec.dataKey(key("abc")) == expected)
    }

    @Test(arguments: [
        record(1, "v"), tombstone(2), record(.max, writer: .max, ""), expiring(3, "v", at: 9_000),
        expiring(4, "", at: .max),
    ])
    func roundTrips(_ stored: StoredRecord) throws {
        let bytes = RecordCodec.encode(stored)
        #expect(try RecordCodec.decode(bytes) == stored)
        let header = try bytes.withUnsafeBytes { buffer in try RecordCodec.decodeHeader(buffer) }
        #expect(header.version == stored.version && header.tombstone == stored.tombstone)
        #expect(header.expiresAtMillis == stored.expiresAtMillis)
    }

    static func expiring(_ hlc: UInt64, _ value: String, at millis: UInt64) -> StoredRecord {
        var stored = record(hlc, value)
        stored.expiresAtMillis = millis
        return stored
    }

    static let malformed: [[UInt8]] = [
        [],
        [1, 0, 0],
        Array(repeating: 0, count: 17),
        [2] + Array(repeating: 0, count: 17),  // unknown format
        [1] + Array(repeating: 0, count: 16) + [0x04],  // unknown flag
        [1] + Array(repeating: 0, count: 16) + [0x01, 0x55],  // tombstone with a value
        [1] + Array(repeating: 0, count: 16) + [0x02, 1, 2, 3, 4, 5, 6, 7],  // no room for the expiry
        [1] + Array(repeating: 0, count: 16) + [0x03] + Array(repeating: 0, count: 8),  // expiring tombstone
    ]

    @Test(arguments: malformed)
    func malformedRecordIsCorruption(_ bytes: [UInt8]) {
        let error = #expect(throws: StorageError.self) { try RecordCodec.decode(bytes) }
        #expect(error?.code == .corruption)
    }
}
