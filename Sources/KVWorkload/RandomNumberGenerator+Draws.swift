extension RandomNumberGenerator {
    /// A uniform number in [0, 1) from the top 53 bits of one draw: the same bits give the same
    /// number on every platform and toolchain, so runs replay from their seed.
    package mutating func nextUnitInterval() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// A uniform integer in `0..<count` from one draw (the high half of a 64 × 64-bit product,
    /// Lemire's method without the rejection step: a bias below count / 2^64, far under any count
    /// kvbench takes).
    package mutating func nextIndex(below count: Int) -> Int {
        precondition(count > 0, "an index below \(count)")
        return Int(next().multipliedFullWidth(by: UInt64(count)).high)
    }
}
