import KVCore

extension ClosedRange<Duration> {
    /// The range in whole milliseconds, the unit the simulator's event queue and clocks count in; each
    /// bound saturates as `Duration.wholeMillisecondsClamped` does (a negative bound is 0, a huge one
    /// `UInt64.max`), so the range stays ordered and the conversion never traps.
    var wholeMillisecondsClamped: ClosedRange<UInt64> {
        lowerBound.wholeMillisecondsClamped...upperBound.wholeMillisecondsClamped
    }
}
