extension Duration {
    /// The duration in whole nanoseconds, saturating at `Int64.max` (what swift-metrics timers take).
    public var wholeNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : scaled.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
    }
}

extension Duration {
    /// The duration in whole milliseconds, 0 when negative, saturating at `UInt64.max`.
    public var wholeMillisecondsClamped: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        let (scaled, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1000)
        return overflow
            ? .max : scaled.addingReportingOverflow(UInt64(attoseconds / 1_000_000_000_000_000)).partialValue
    }
}
