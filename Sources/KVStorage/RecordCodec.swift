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
/// | 17 | 1 | flags: bit 0 tombstone, bit 1 expiring, other bits zero |
/// | 18 | rest | value bytes (none for a tombstone) |
/// | end − 8 | 8 | with the expiring bit only: the expiry, milliseconds since 1970 (after the value) |
///
/// A value that does not decode is corruption: it is reported, never served. `docs/storage.md`
/// repeats this layout for operators and other implementations.
package enum RecordCodec {
    /// The only record format written so far.
    package static let formatV1: UInt8 = 1
    /// Bytes before the value: format, hlc, writer, flags.
    package static let headerBytes = 18
    private static let tombstoneFlag: UInt8 = 0x01
    /// The value is followed by 8 bytes of expiry (a write with a time to live; never a tombstone).
    private static let expiringFlag: UInt8 = 0x02
    /// Bytes of the expiry that follows an expiring record's value.
    package static let expiryBytes = 8

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
        withEncoded(record) { Array($0) }
    }

    /// `encode(record)`'s bytes, handed to `body` from a temporary buffer: what a write stores, without
    /// an array of its own.
    package static func withEncoded<Result>(_ record: StoredRecord, _ body: (UnsafeRawBufferPointer) -> Result)
        -> Result
    {
        let expiry = expiryCount(record)
        let count = headerBytes + record.value.count + expiry
        return withUnsafeTemporaryAllocation(byteCount: count, alignment: 1) { buffer in
            buffer[0] = formatV1
            buffer.storeBytes(of: record.version.hlc.bigEndian, toByteOffset: 1, as: UInt64.self)
            buffer.storeBytes(of: record.version.writer.bigEndian, toByteOffset: 9, as: UInt64.self)
            buffer[17] = flags(record)
            UnsafeMutableRawBufferPointer(rebasing: buffer[headerBytes..<headerBytes + record.value.count])
                .copyBytes(from: record.value)
            if expiry != 0 {
                buffer.storeBytes(
                    of: record.expiresAtMillis.bigEndian, toByteOffset: headerBytes + record.value.count,
                    as: UInt64.self)
            }
            return body(UnsafeRawBufferPointer(buffer))
        }
    }

    /// The flags byte of `record` (stored records and hints share it).
    package static func flags(_ record: StoredRecord) -> UInt8 {
        (record.tombstone ? tombstoneFlag : 0) | (record.expiresAtMillis != 0 ? expiringFlag : 0)
    }

    /// The expiry after the value, for an expiring record.
    package static func appendExpiry(_ record: StoredRecord, to bytes: inout [UInt8]) {
        if expiryCount(record) != 0 { StorageBytes.appendBigEndian(record.expiresAtMillis, to: &bytes) }
    }

    /// The bytes of `record`'s expiry after its value: `expiryBytes` for an expiring record, else none.
    static func expiryCount(_ record: StoredRecord) -> Int {
        record.expiresAtMillis != 0 ? expiryBytes : 0
    }

    /// The value bytes (from `headerBytes` on) and the expiry (0: none) of a value whose header was
    /// checked (`checkHeader`).
    package static func valueAndExpiry(
        _ bytes: UnsafeRawBufferPointer, headerBytes: Int, expiring: Bool
    ) -> (value: [UInt8], expiresAtMillis: UInt64) {
        guard expiring else { return (Array(bytes[headerBytes...]), 0) }
        return (
            Array(bytes[headerBytes..<(bytes.count - expiryBytes)]),
            StorageBytes.bigEndian(bytes, at: bytes.count - expiryBytes)
        )
    }

    /// Checks the header shared by stored records and hints (format byte 1 first, then a flags byte
    /// whose only bits are "tombstone" and "expiring", no value bytes after a tombstone's header, and
    /// room for the expiry of an expiring one).
    ///
    /// - Returns: whether the value is a tombstone, and whether an expiry follows its value.
    package static func checkHeader(
        _ bytes: UnsafeRawBufferPointer,
        headerBytes: Int,
        flagsOffset: Int,
        what: String
    ) throws(StorageError) -> (tombstone: Bool, expiring: Bool) {
        guard bytes.count >= headerBytes else {
            throw .corruption("\(what) of \(bytes.count) bytes is shorter than its \(headerBytes)-byte header")
        }
        guard bytes[0] == formatV1 else {
            throw .corruption("\(what) has unknown format \(bytes[0])")
        }
        let flags = bytes[flagsOffset]
        guard flags & ~(tombstoneFlag | expiringFlag) == 0 else {
            throw .corruption("\(what) has unknown flags \(flags)")
        }
        let tombstone = flags & tombstoneFlag != 0
        let expiring = flags & expiringFlag != 0
        if tombstone && (expiring || bytes.count != headerBytes) {
            throw .corruption("tombstone \(what) carries \(bytes.count - headerBytes) value bytes or an expiry")
        }
        if expiring && bytes.count < headerBytes + expiryBytes {
            throw .corruption("expiring \(what) of \(bytes.count) bytes has no room for its expiry")
        }
        return (tombstone, expiring)
    }

    /// Decodes a stored value; anything malformed throws `StorageError.corruption`.
    package static func decode(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> StoredRecord {
        let (tombstone, expiring) = try checkHeader(bytes, headerBytes: headerBytes, flagsOffset: 17, what: "record")
        let version = Version(hlc: StorageBytes.bigEndian(bytes, at: 1), writer: StorageBytes.bigEndian(bytes, at: 9))
        let (value, expiresAtMillis) = valueAndExpiry(bytes, headerBytes: headerBytes, expiring: expiring)
        return StoredRecord(version: version, tombstone: tombstone, value: value, expiresAtMillis: expiresAtMillis)
    }

    /// What `decodeHeader` reads: a stored value's version, tombstone flag and expiry (0: none).
    package typealias Header = (version: Version, tombstone: Bool, expiresAtMillis: UInt64)

    /// `record`'s header, as `decodeHeader` reads it back once `record` is stored.
    package static func header(of record: StoredRecord) -> Header {
        (record.version, record.tombstone, record.expiresAtMillis)
    }

    /// The version, tombstone flag and expiry (0: none) of a stored value, without copying its value
    /// bytes; anything malformed throws `StorageError.corruption`.
    package static func decodeHeader(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> Header {
        let (tombstone, expiring) = try checkHeader(bytes, headerBytes: headerBytes, flagsOffset: 17, what: "record")
        return (
            Version(hlc: StorageBytes.bigEndian(bytes, at: 1), writer: StorageBytes.bigEndian(bytes, at: 9)), tombstone,
            expiring ? StorageBytes.bigEndian(bytes, at: bytes.count - expiryBytes) : 0
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
