/// The recent response times of one replica: a fixed window of the last `capacity` samples, from
/// which the driver derives a read's speculation delay (p99).
///
/// The window is a ring buffer allocated once, so recording a sample never allocates. A percentile
/// needs `samplesMin` samples first: with fewer, one slow outlier would set the delay.
public struct LatencyTracker: Sendable {
    /// Default window length.
    public static let capacityDefault = 128
    /// Default number of samples before ``percentile(_:)`` answers.
    public static let samplesMinDefault = 16

    private var samples: [Duration]
    /// Where the next sample goes.
    private var next = 0
    /// Samples in the window, at most `samples.count`.
    public private(set) var count = 0
    public let samplesMin: Int

    /// - Precondition: `capacity >= 1` and `samplesMin` in `1...capacity`.
    public init(capacity: Int = LatencyTracker.capacityDefault, samplesMin: Int = LatencyTracker.samplesMinDefault) {
        precondition(capacity >= 1, "capacity \(capacity) is not positive")
        precondition((1...capacity).contains(samplesMin), "samplesMin \(samplesMin) is outside 1...\(capacity)")
        self.samples = Array(repeating: .zero, count: capacity)
        self.samplesMin = samplesMin
    }

    /// How many samples the window holds when full.
    public var capacity: Int { samples.count }

    /// Adds one response time, replacing the oldest once the window is full.
    public mutating func record(_ duration: Duration) {
        samples[next] = duration
        next = next + 1 == samples.count ? 0 : next + 1
        count = Swift.min(count + 1, samples.count)
    }

    /// The `p` quantile of the window (nearest rank: the smallest sample at least `p` of the samples
    /// do not exceed), e.g. `percentile(0.99)` for p99; nil until `samplesMin` samples were recorded.
    ///
    /// - Precondition: `p` is in `0...1`.
    public func percentile(_ p: Double) -> Duration? {
        precondition((0...1).contains(p), "percentile \(p) is outside 0...1")
        guard count >= samplesMin else { return nil }
        let rank = Swift.max(Int((p * Double(count)).rounded(.up)), 1)
        // A high quantile is one of the few largest samples: keep those in one pass (p99 of the
        // default window is the second largest) instead of sorting the window at every refresh.
        let largest = count - rank + 1
        guard largest <= Self.selectionMax else { return samples[..<count].sorted()[rank - 1] }
        return withUnsafeTemporaryAllocation(of: Duration.self, capacity: largest) { top in
            // `top[0..<kept]`, largest first.
            var kept = 0
            for sample in samples[..<count] {
                guard kept < largest || sample > top[largest - 1] else { continue }
                var slot = Swift.min(kept, largest - 1)
                while slot > 0 && top[slot - 1] < sample {
                    top[slot] = top[slot - 1]
                    slot -= 1
                }
                top[slot] = sample
                kept = Swift.min(kept + 1, largest)
            }
            return top[largest - 1]
        }
    }

    /// Quantiles this close to the top are selected in one pass rather than by sorting.
    private static let selectionMax = 8
}
