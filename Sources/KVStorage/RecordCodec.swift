package import KVCore

/// The bytes of the `data` column family.
///
/// Key: `token (u64 big-endian) · key bytes`, so that the keys of a token range are contiguous and
/// one ordered scan reads them (streaming, anti-entropy).
///
/// Value (format 1), all integers big-endian:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | format, `1` |
/// | 1 | 8 | version hlc |
/// | 9 | 8 | version writer |
/// | 17 | 1 | flags: bit 0 tombstone, other bits zero |
/// | 18 | rest | value bytes (none for a tombstone) |
///
/// A value that does not decode is corruption: it is reported, never served. `docs/storage.md`
/// repeats this layout for operators and other implementations.
package enum RecordCodec {
    /// The only record format written so far.
    package static let formatV1: UInt8 = 1
    /// Bytes before the value: format, hlc, writer, flags.
    package static let headerBytes = 18
    private static let tombstoneFlag: UInt8 = 0x01

    /// The `data` column family key of `key`.
    package static func dataKey(_ key: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8 + key.count)
        StorageBytes.appendBigEndian(Token(key: key).value, to: &bytes)
        bytes.append(contentsOf: key)
        return bytes
    }

    /// The first `data` key of `token`'s records (every key of the token starts with these 8 bytes):
    /// where a scan of a token interval starts, and the bound after the interval's last token.
    package static func tokenPrefix(_ token: UInt64) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8)
        StorageBytes.appendBigEndian(token, to: &bytes)
        return bytes
    }

    package static func encode(_ record: StoredRecord) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headerBytes + record.value.count)
        bytes.append(formatV1)
        StorageBytes.appendBigEndian(record.version.hlc, to: &bytes)
        StorageBytes.appendBigEndian(record.version.writer, to: &bytes)
        bytes.append(record.tombstone ? tombstoneFlag : 0)
        bytes.append(contentsOf: record.value)
        return bytes
    }

    /// Checks the header shared by stored records and hints (format byte 1 first, then a flags byte
    /// whose only bit is "tombstone", and no value bytes after a tombstone's header).
    ///
    /// - Returns: whether the value is a tombstone.
    package static func checkHeader(
        _ bytes: UnsafeRawBufferPointer,
        headerBytes: Int,
        flagsOffset: Int,
        what: String
    ) throws(StorageError) -> Bool {
        guard bytes.count >= headerBytes else {
            throw .corruption("\(what) of \(bytes.count) bytes is shorter than its \(headerBytes)-byte header")
        }
        guard bytes[0] == formatV1 else {
            throw .corruption("\(what) has unknown format \(bytes[0])")
        }
        let flags = bytes[flagsOffset]
        guard flags & ~tombstoneFlag == 0 else {
            throw .corruption("\(what) has unknown flags \(flags)")
        }
        let tombstone = flags & tombstoneFlag != 0
        if tombstone && bytes.count != headerBytes {
            throw .corruption("tombstone \(what) carries \(bytes.count - headerBytes) value bytes")
        }
        return tombstone
    }

    /// Decodes a stored value; anything malformed throws `StorageError.corruption`.
    package static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> StoredRecord {
        let tombstone = try checkHeader(bytes, headerBytes: headerBytes, flagsOffset: 17, what: "record")
        let version = Version(hlc: StorageBytes.bigEndian(bytes, at: 1), writer: StorageBytes.bigEndian(bytes, at: 9))
        return StoredRecord(version: version, tombstone: tombstone, value: Array(bytes[headerBytes...]))
    }

    /// The version and tombstone flag of a stored value, without copying its value bytes; anything
    /// malformed throws `StorageError.corruption`.
    package static func decodeHeader(
        _ bytes: UnsafeRawBufferPointer
    ) throws(StorageError) -> (version: Version, tombstone: Bool) {
        let tombstone = try checkHeader(bytes, headerBytes: headerBytes, flagsOffset: 17, what: "record")
        return (
            Version(hlc: StorageBytes.bigEndian(bytes, at: 1), writer: StorageBytes.bigEndian(bytes, at: 9)), tombstone
        )
    }

    package static func decode(_ bytes: [UInt8]) throws(StorageError) -> StoredRecord {
        // `withUnsafeBytes` is not typed-throws: carry the result out instead of the error.
        let result: Result<StoredRecord, StorageError> = bytes.withUnsafeBytes { buffer in
            do throws(StorageError) {
                return .success(try decode(buffer))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

}
