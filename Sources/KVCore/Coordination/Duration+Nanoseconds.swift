extension Duration {
    /// The duration in whole nanoseconds, saturating at `Int64.min`/`Int64.max` (what swift-metrics
    /// timers take).
    public var wholeNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow else { return seconds < 0 ? .min : .max }
        let (total, past) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        return past ? (scaled < 0 ? .min : .max) : total
    }
}

extension Duration {
    /// The duration in whole milliseconds, 0 when negative, saturating at `UInt64.max`.
    public var wholeMillisecondsClamped: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        let (scaled, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1000)
        guard !overflow else { return .max }
        let (total, past) = scaled.addingReportingOverflow(UInt64(attoseconds / 1_000_000_000_000_000))
        return past ? .max : total
    }
}
