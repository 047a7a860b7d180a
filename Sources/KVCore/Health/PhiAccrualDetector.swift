#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The phi-accrual failure detector (Hayashibara et al., as in Cassandra and Akka), sans I/O: it keeps
/// the intervals between a node's recent heartbeats (any answer from it) and says how unlikely the
/// silence since the last one is, as phi = −log10(P(a heartbeat comes later than that)).
///
/// The intervals are taken as normally distributed (mean and standard deviation of the last
/// `windowSize`), with the deviation at least `minimumDeviation` so that a perfectly regular sender
/// is not judged dead after a little jitter, and `acceptablePause` added to the mean (a garbage
/// collection, a busy event loop). Phi 1 means a 10 % chance of a false suspicion, phi 8 (the default
/// threshold, Cassandra's) about 10⁻⁸.
///
/// Before the first heartbeat, and with fewer than two, there is nothing to judge on: phi is 0 then,
/// and `firstInterval` stands in for the missing history (so a node silent from the start is still
/// suspected after a few of those).
public struct PhiAccrualDetector: Sendable, Hashable {
    public struct Configuration: Sendable, Hashable {
        /// Phi above which the node is suspected.
        public var threshold: Double
        /// Intervals kept.
        public var windowSize: Int
        /// The smallest standard deviation assumed (the initializer makes it at least 1 ms): a perfectly
        /// regular sender would otherwise be suspected after the slightest jitter.
        public var minimumDeviation: Duration
        /// Added to the mean interval (the initializer makes it at least 0): a pause tolerated before
        /// phi climbs.
        public var acceptablePause: Duration
        /// The interval assumed before any was measured (the sender's heartbeat period; the initializer
        /// makes it at least 1 ms).
        public var firstInterval: Duration

        public init(
            threshold: Double = 8, windowSize: Int = 100, minimumDeviation: Duration = .milliseconds(100),
            acceptablePause: Duration = .zero, firstInterval: Duration = .milliseconds(1000)
        ) {
            self.threshold = threshold
            self.windowSize = max(2, windowSize)
            self.minimumDeviation = max(.milliseconds(1), minimumDeviation)
            self.acceptablePause = max(.zero, acceptablePause)
            self.firstInterval = max(.milliseconds(1), firstInterval)
        }
    }

    public let configuration: Configuration
    /// The configuration's durations in milliseconds, converted once: phi is computed in Double ms.
    private let minimumDeviationMillis: Double
    private let acceptablePauseMillis: Double
    private let firstIntervalMillis: Double
    private var intervals: [Double] = []
    private var next = 0
    private var sum = 0.0
    private var sumOfSquares = 0.0
    /// When the last heartbeat arrived (ms, the caller's clock); nil before the first.
    public private(set) var lastHeartbeatMillis: UInt64?

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.minimumDeviationMillis = configuration.minimumDeviation / .milliseconds(1)
        self.acceptablePauseMillis = configuration.acceptablePause / .milliseconds(1)
        self.firstIntervalMillis = configuration.firstInterval / .milliseconds(1)
    }

    /// A detector that starts watching at `millis`, as if the node had just answered: a node that
    /// never answers is then suspected too (without any heartbeat, phi stays 0).
    public init(configuration: Configuration = Configuration(), watchingFrom millis: UInt64) {
        self.init(configuration: configuration)
        heartbeat(atMillis: millis)
    }

    /// Records a heartbeat at `millis`. One earlier than the last (a clock stepping back) only moves the
    /// last heartbeat.
    public mutating func heartbeat(atMillis millis: UInt64) {
        defer { lastHeartbeatMillis = max(lastHeartbeatMillis ?? millis, millis) }
        guard let last = lastHeartbeatMillis else {
            record(firstIntervalMillis)
            return
        }
        guard millis > last else { return }
        record(Double(millis - last))
    }

    private mutating func record(_ interval: Double) {
        if intervals.count < configuration.windowSize {
            intervals.append(interval)
        } else {
            let old = intervals[next]
            sum -= old
            sumOfSquares -= old * old
            intervals[next] = interval
            next = (next + 1) % configuration.windowSize
        }
        sum += interval
        sumOfSquares += interval * interval
    }

    /// How unlikely the silence since the last heartbeat is, at `millis`; 0 before the first heartbeat.
    public func phi(atMillis millis: UInt64) -> Double {
        guard let last = lastHeartbeatMillis, !intervals.isEmpty else { return 0 }
        let elapsed = Double(millis > last ? millis - last : 0)
        let count = Double(intervals.count)
        let mean = sum / count + acceptablePauseMillis
        let variance = max(0, sumOfSquares / count - (sum / count) * (sum / count))
        let deviation = max(variance.squareRoot(), minimumDeviationMillis)
        // P(later than elapsed) for a normal distribution, through the logistic approximation of its
        // CDF (Akka's): P = 1 / (1 + e^a), so phi = log10(1 + e^a), computed as a softplus so that it
        // stays finite and monotonic far out in the tail.
        let y = (elapsed - mean) / deviation
        let a = y * (1.5976 + 0.070566 * y * y)
        let softplus = max(a, 0) + log1p(exp(-abs(a)))
        return softplus / log(10)
    }

    /// Whether the node is suspected at `millis`: phi above the threshold.
    public func isSuspected(atMillis millis: UInt64) -> Bool {
        phi(atMillis: millis) > configuration.threshold
    }
}
