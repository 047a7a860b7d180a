/// XXH64, Yann Collet's 64-bit hash, as specified in `xxhash_spec.md`.
///
/// It places keys on the ring: fast, well distributed, and implemented in every language a client
/// might be written in. It is not a cryptographic hash: keys are not secrets and the ring does not
/// need collision resistance against an attacker.
public enum XXH64 {
    private static let prime1: UInt64 = 0x9E37_79B1_85EB_CA87
    private static let prime2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    private static let prime3: UInt64 = 0x1656_67B1_9E37_79F9
    private static let prime4: UInt64 = 0x85EB_CA77_C2B2_AE63
    private static let prime5: UInt64 = 0x27D4_EB2F_1656_67C5

    public static func hash(_ input: some Collection<UInt8>, seed: UInt64) -> UInt64 {
        if let result = input.withContiguousStorageIfAvailable({ hash(buffer: $0, seed: seed) }) {
            return result
        }
        return Array(input).withUnsafeBufferPointer { hash(buffer: $0, seed: seed) }
    }

    private static func round(_ accumulator: UInt64, _ lane: UInt64) -> UInt64 {
        var acc = accumulator &+ lane &* prime2
        acc = rotateLeft(acc, 31)
        return acc &* prime1
    }

    private static func mergeRound(_ accumulator: UInt64, _ value: UInt64) -> UInt64 {
        let acc = accumulator ^ round(0, value)
        return acc &* prime1 &+ prime4
    }

    private static func rotateLeft(_ value: UInt64, _ count: UInt64) -> UInt64 {
        (value << count) | (value >> (64 - count))
    }

    private static func read64(_ bytes: UnsafeBufferPointer<UInt8>, _ offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<8 {
            value |= UInt64(bytes[offset + index]) << (8 * UInt64(index))
        }
        return value
    }

    private static func read32(_ bytes: UnsafeBufferPointer<UInt8>, _ offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<4 {
            value |= UInt64(bytes[offset + index]) << (8 * UInt64(index))
        }
        return value
    }

    private static func hash(buffer bytes: UnsafeBufferPointer<UInt8>, seed: UInt64) -> UInt64 {
        let length = bytes.count
        var offset = 0
        var acc: UInt64
        if length >= 32 {
            var v1 = seed &+ prime1 &+ prime2
            var v2 = seed &+ prime2
            var v3 = seed
            var v4 = seed &- prime1
            while offset + 32 <= length {
                v1 = round(v1, read64(bytes, offset))
                v2 = round(v2, read64(bytes, offset + 8))
                v3 = round(v3, read64(bytes, offset + 16))
                v4 = round(v4, read64(bytes, offset + 24))
                offset += 32
            }
            acc = rotateLeft(v1, 1) &+ rotateLeft(v2, 7) &+ rotateLeft(v3, 12) &+ rotateLeft(v4, 18)
            acc = mergeRound(acc, v1)
            acc = mergeRound(acc, v2)
            acc = mergeRound(acc, v3)
            acc = mergeRound(acc, v4)
        } else {
            acc = seed &+ prime5
        }
        acc = acc &+ UInt64(length)
        while offset + 8 <= length {
            acc ^= round(0, read64(bytes, offset))
            acc = rotateLeft(acc, 27) &* prime1 &+ prime4
            offset += 8
        }
        if offset + 4 <= length {
            acc ^= read32(bytes, offset) &* prime1
            acc = rotateLeft(acc, 23) &* prime2 &+ prime3
            offset += 4
        }
        while offset < length {
            acc ^= UInt64(bytes[offset]) &* prime5
            acc = rotateLeft(acc, 11) &* prime1
            offset += 1
        }
        acc ^= acc >> 33
        acc = acc &* prime2
        acc ^= acc >> 29
        acc = acc &* prime3
        acc ^= acc >> 32
        return acc
    }
}
