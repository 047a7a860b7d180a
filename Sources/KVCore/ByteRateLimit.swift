/// A token bucket in bytes per second, sans I/O (time is passed in): anti-entropy's throttle
/// (`ByteRateLimiter` in KVNode) and `kvctl backup --rate`'s (`BackupRunner`).
///
/// The size of an exchange is known only once its answer arrived, so the bucket is charged after the
/// fact and may go into debt; a caller waits for `delay(now:)` before its next exchange, until the debt
/// is paid back at `bytesPerSecond`. Credit accumulates while idle up to `burstBytes`, so a pass that
/// starts after a quiet spell may move one burst at once, never more.
package struct ByteRateLimit: Sendable {
    package let bytesPerSecond: Int
    package let burstBytes: Int
    private var balance: Double
    private var refilled: ContinuousClock.Instant

    /// - Parameters:
    ///   - bytesPerSecond: the long-run rate; at least 1.
    ///   - burstBytes: the most credit kept; by default one second's worth.
    package init(bytesPerSecond: Int, burstBytes: Int? = nil, now: ContinuousClock.Instant) {
        precondition(bytesPerSecond > 0, "a rate limit needs a positive rate")
        self.bytesPerSecond = bytesPerSecond
        self.burstBytes = max(1, burstBytes ?? bytesPerSecond)
        self.balance = Double(self.burstBytes)
        self.refilled = now
    }

    private mutating func refill(now: ContinuousClock.Instant) {
        guard now > refilled else { return }
        balance = min(Double(burstBytes), balance + Double(bytesPerSecond) * ((now - refilled) / .seconds(1)))
        refilled = now
    }

    /// Charges `bytes` that were just moved.
    package mutating func spend(_ bytes: Int, now: ContinuousClock.Instant) {
        refill(now: now)
        balance -= Double(max(0, bytes))
    }

    /// How long to wait before moving more: zero when the bucket is not in debt.
    package mutating func delay(now: ContinuousClock.Instant) -> Duration {
        refill(now: now)
        guard balance < 0 else { return .zero }
        return .nanoseconds(Int64((-balance / Double(bytesPerSecond) * 1e9).rounded(.up)))
    }
}
