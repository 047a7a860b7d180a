import KVCore
import Testing

@testable import KVStorage

/// The `versions` family's key layout (`VersionIndexCodec`, docs/storage.md "Version index").
@Suite struct VersionIndexCodecTests {
    @Test func aKeyIsTheVersionBigEndianThenTheDataKey() throws {
        let dataKey = RecordCodec.dataKey(key("abc"))
        let bytes = VersionIndexCodec.key(
            Version(hlc: 0x0102_0304_0506_0708, writer: 0x1112_1314_1516_1718), dataKey: dataKey)
        #expect(
            bytes == [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]
                + dataKey)
        // Composed in place, the same bytes.
        #expect(
            VersionIndexCodec.withKey(
                Version(hlc: 0x0102_0304_0506_0708, writer: 0x1112_1314_1516_1718), dataKey: dataKey
            ) { Array($0) } == bytes)
        #expect(try bytes.withUnsafeBytes { try VersionIndexCodec.dataKey($0) } == dataKey)
        // The family's order is the versions' order.
        let older = VersionIndexCodec.key(Version(hlc: 0xFF, writer: 9), dataKey: RecordCodec.dataKey(key("z")))
        let newer = VersionIndexCodec.key(Version(hlc: 0x100, writer: 1), dataKey: RecordCodec.dataKey(key("a")))
        #expect(older.lexicographicallyPrecedes(newer))
    }
}
