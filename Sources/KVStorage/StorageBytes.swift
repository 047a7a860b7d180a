/// Byte helpers shared by the storage codecs (records, hints, repair marks) and the node's metadata
/// records: big-endian integers, and typed-throwing decoders over two arrays' bytes.
package enum StorageBytes {
    /// Appends `value` as 8 big-endian bytes.
    package static func appendBigEndian(_ value: UInt32, to bytes: inout [UInt8]) {
        for shift in stride(from: 24, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift)))
        }
    }

    package static func appendBigEndian(_ value: UInt64, to bytes: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }

    /// The big-endian integer of `count` bytes (at most 8) at `offset`. The caller checked the bounds.
    package static func bigEndian(_ bytes: UnsafeRawBufferPointer, at offset: Int, count: Int = 8) -> UInt64 {
        var value: UInt64 = 0
        for index in offset..<(offset + count) {
            value = value << 8 | UInt64(bytes[index])
        }
        return value
    }

    /// Unsigned 64-bit numbers, 8 big-endian bytes each (a metadata record's form).
    package static func encode(_ numbers: [UInt64]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(numbers.count * 8)
        for number in numbers { appendBigEndian(number, to: &bytes) }
        return bytes
    }

    /// The numbers `encode` wrote; a trailing partial number is ignored.
    package static func decodeNumbers(_ bytes: [UInt8]) -> [UInt64] {
        bytes.withUnsafeBytes { raw in
            stride(from: 0, to: raw.count - raw.count % 8, by: 8).map { bigEndian(raw, at: $0) }
        }
    }

    /// Runs `body` over the bytes of `key` and `value`. (`withUnsafeBytes` is not typed-throws: the
    /// result is carried out instead of the error.)
    static func withBuffers<T>(
        _ key: [UInt8],
        _ value: [UInt8],
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws(StorageError) -> T
    ) throws(StorageError) -> T {
        let result: Result<T, StorageError> = key.withUnsafeBytes { key in
            value.withUnsafeBytes { value in
                do throws(StorageError) {
                    return .success(try body(key, value))
                } catch {
                    return .failure(error)
                }
            }
        }
        return try result.get()
    }
}
