/// YCSB's scrambled Zipfian: Zipfian popularity, with the popular items scattered over the key space.
///
/// As YCSB's `ScrambledZipfianGenerator`: a Zipfian (θ = 0.99) over a space of 10^10 items is drawn
/// and its item hashed (64-bit FNV-1a of its eight bytes) modulo the key count. The hottest key is
/// thus not key 0 but wherever item 0 hashes to, and the next hottest are far from it, so a hot set
/// spreads over the ring's nodes instead of sitting in one range. Because 10^10 items fold onto the
/// keys, the hottest key gets about 1/ζ(10^10, 0.99) = 1/26.47 ≈ 3.8 % of the draws whatever the key
/// count (a plain Zipfian over 10,000 keys would give it about 1/ζ(10^4, 0.99) ≈ 10 %): this is
/// YCSB's behaviour, kept so that figures compare with YCSB's.
package struct ScrambledZipfianGenerator: Sendable {
    /// The items of the underlying Zipfian, as YCSB's `ITEM_COUNT`.
    package static let itemSpace = 10_000_000_000

    /// The keys drawn from: `0..<keyCount`.
    package var keyCount: Int
    private let zipfian: ZipfianGenerator

    /// A generator over `keyCount` keys.
    package init(keyCount: Int, theta: Double = ZipfianGenerator.constantDefault) {
        precondition(keyCount > 0, "a Zipfian over no keys")
        self.keyCount = keyCount
        zipfian = ZipfianGenerator(itemCount: Self.itemSpace, theta: theta)
    }

    /// The next key in `0..<keyCount`.
    package func next(using generator: inout some RandomNumberGenerator) -> Int {
        Self.scramble(zipfian.next(using: &generator), keyCount: keyCount)
    }

    /// Where item `item` of the Zipfian lands among `keyCount` keys: YCSB's `Utils.fnvhash64`
    /// (FNV-1a over the item's eight bytes, low byte first, its absolute value) modulo the count.
    package static func scramble(_ item: Int, keyCount: Int) -> Int {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        var rest = UInt64(item)
        for _ in 0..<8 {
            hash ^= rest & 0xFF
            hash = hash &* 0x0000_0100_0000_01B3
            rest >>= 8
        }
        return Int(Int64(bitPattern: hash).magnitude % UInt64(keyCount))
    }
}
