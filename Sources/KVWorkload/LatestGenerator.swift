/// Zipfian over recency, as YCSB's `SkewedLatestGenerator`: the newest key is the most popular, the
/// one before it next, and so on.
///
/// Keys are numbered in insert order, so the newest of `keyCount` keys is `keyCount - 1`. Each draw
/// takes a Zipfian rank over the current count and counts back from the newest; when inserts raise
/// the count, the popularity moves with them to the new keys.
package struct LatestGenerator: Sendable {
    private var zipfian: ZipfianGenerator

    /// A generator over `keyCount` keys; later draws may pass a larger count.
    package init(keyCount: Int, theta: Double = ZipfianGenerator.constantDefault) {
        zipfian = ZipfianGenerator(itemCount: keyCount, theta: theta)
    }

    /// The next key in `0..<keyCount`, `keyCount - 1` (the newest) the most likely.
    package mutating func next(keyCount: Int, using generator: inout some RandomNumberGenerator) -> Int {
        zipfian.resize(to: keyCount)
        return keyCount - 1 - zipfian.next(using: &generator)
    }
}
