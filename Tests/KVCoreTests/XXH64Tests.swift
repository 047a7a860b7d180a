import KVCore
import Testing

/// Reference values from the xxHash reference implementation (python-xxhash 3.x, seed 0).
struct XXH64Vector: Sendable, CustomTestStringConvertible {
    var input: [UInt8]
    var hash: UInt64
    var testDescription: String { "\(input.count) bytes" }
}

let xxh64Vectors: [XXH64Vector] = [
    XXH64Vector(input: [], hash: 0xEF46_DB37_51D8_E999),
    XXH64Vector(input: Array("a".utf8), hash: 0xD24E_C4F1_A98C_6E5B),
    XXH64Vector(input: Array("abc".utf8), hash: 0x44BC_2CF5_AD77_0999),
    XXH64Vector(input: Array("user:123".utf8), hash: 0xB22B_18AF_3E88_65F3),
    XXH64Vector(input: Array("Nobody inspects the spammish repetition".utf8), hash: 0xFBCE_A83C_8A37_8BF1),
    XXH64Vector(input: (0..<100).map { UInt8($0) }, hash: 0x6AC1_E580_3216_6597),
]

@Test(arguments: xxh64Vectors)
func xxh64MatchesReference(_ vector: XXH64Vector) {
    #expect(XXH64.hash(vector.input, seed: 0) == vector.hash)
    #expect(Token(key: vector.input).value == vector.hash)
}

@Test func xxh64OfNonContiguousCollectionMatchesArray() {
    let bytes = (0..<77).map { UInt8($0 * 3 & 0xFF) }
    #expect(XXH64.hash(bytes.lazy.map { $0 }, seed: 0) == XXH64.hash(bytes, seed: 0))
}
