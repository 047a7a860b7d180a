/// The key of the next read, update or read-modify-write, in a distribution over the keys that exist.
package enum KeyChooser: Sendable {
    /// Every key equally likely.
    case uniform
    /// YCSB's scrambled Zipfian.
    case zipfian(ScrambledZipfianGenerator)
    /// The newest keys the most likely.
    case latest(LatestGenerator)

    /// A chooser for `distribution` over `keyCount` keys at first. Zipfian choosers compute ζ here,
    /// once (see `ZipfianGenerator`): make one and copy it to each worker.
    package init(_ distribution: KeyDistribution, keyCount: Int) {
        switch distribution {
        case .uniform: self = .uniform
        case .zipfian: self = .zipfian(ScrambledZipfianGenerator(keyCount: keyCount))
        case .latest: self = .latest(LatestGenerator(keyCount: keyCount))
        }
    }

    /// A key in `0..<keyCount`, where `keyCount` is how many keys exist now (it grows with inserts).
    package mutating func nextKey(keyCount: Int, using generator: inout some RandomNumberGenerator) -> Int {
        precondition(keyCount > 0, "a key among none")
        switch self {
        case .uniform:
            return generator.nextIndex(below: keyCount)
        case .zipfian(var zipfian):
            zipfian.keyCount = keyCount
            let key = zipfian.next(using: &generator)
            self = .zipfian(zipfian)
            return key
        case .latest(var latest):
            let key = latest.next(keyCount: keyCount, using: &generator)
            self = .latest(latest)
            return key
        }
    }
}
