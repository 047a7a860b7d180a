import Foundation
import Histogram
import Synchronization

/// The latencies and outcomes of a run, shared by its request loops: HdrHistograms (microseconds, 3
/// significant digits, up to a minute) for the whole run, each side of `--split`, and each second.
final class Recorder: Sendable {
    /// One second of the run.
    struct Second: Encodable {
        var second: Int
        var operations: Int
        var errors: Int
        var p50Millis: Double
        var p99Millis: Double
    }

    private struct State {
        var whole = Recorder.histogram()
        var beforeSplit = Recorder.histogram()
        var afterSplit = Recorder.histogram()
        var seconds: [Histogram<UInt64>] = []
        var errors: [Int] = []
        var lastError: String?

        func second(_ index: Int) -> Second {
            let histogram = seconds[index]
            return Second(
                second: index, operations: Int(histogram.totalCount), errors: errors[index],
                p50Millis: Phase.millis(histogram, 50), p99Millis: Phase.millis(histogram, 99))
        }

        mutating func grow(to second: Int) {
            while seconds.count <= second {
                seconds.append(Recorder.histogram())
                errors.append(0)
            }
        }
    }

    private let state = Mutex(State())
    private let split: Duration?

    init(split: Duration?) {
        self.split = split
    }

    static func histogram() -> Histogram<UInt64> {
        Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    }

    /// A request that started `offset` into the run and took `latency`.
    func record(offset: Duration, latency: Duration) {
        let (seconds, attoseconds) = latency.components
        let micros = UInt64(clamping: max(1, seconds &* 1_000_000 &+ attoseconds / 1_000_000_000_000))
        let second = Int(clamping: max(0, offset.components.seconds))
        state.withLock { state in
            _ = state.whole.record(micros)
            if let split {
                if offset < split { _ = state.beforeSplit.record(micros) } else { _ = state.afterSplit.record(micros) }
            }
            state.grow(to: second)
            _ = state.seconds[second].record(micros)
        }
    }

    /// A request that started `offset` into the run and failed with `error`.
    func recordError(offset: Duration, _ error: any Error) {
        let second = Int(clamping: max(0, offset.components.seconds))
        state.withLock { state in
            state.grow(to: second)
            state.errors[second] += 1
            state.lastError = "\(error)"
        }
    }

    var errors: Int { state.withLock { $0.errors.reduce(0, +) } }
    var lastError: String? { state.withLock { $0.lastError } }

    /// The whole run, and each side of the split when there is one.
    func phases(elapsed: Double) -> (whole: Phase, before: Phase?, after: Phase?) {
        state.withLock { state in
            let whole = Phase(state.whole, seconds: elapsed)
            guard let split else { return (whole, nil, nil) }
            let cut = Double(split.components.seconds) + Double(split.components.attoseconds) / 1e18
            return (whole, Phase(state.beforeSplit, seconds: cut), Phase(state.afterSplit, seconds: elapsed - cut))
        }
    }

    /// Each second's operations, errors and latency percentiles.
    func timeline() -> [Second] {
        state.withLock { state in state.seconds.indices.map { state.second($0) } }
    }

    /// One second of the timeline, and the operations of the whole run so far; nil before it began.
    func second(_ index: Int) -> (second: Second, operationsSoFar: Int)? {
        state.withLock { state in
            guard state.seconds.indices.contains(index) else { return nil }
            return (state.second(index), Int(state.whole.totalCount))
        }
    }
}

/// Throughput and latency of a set of requests.
struct Phase: Encodable {
    var operations: Int
    var seconds: Double
    var opsPerSecond: Double
    var p50Millis: Double
    var p95Millis: Double
    var p99Millis: Double
    var maxMillis: Double

    init(_ histogram: Histogram<UInt64>, seconds: Double) {
        operations = Int(histogram.totalCount)
        self.seconds = seconds
        opsPerSecond = seconds > 0 ? Double(operations) / seconds : 0
        p50Millis = Self.millis(histogram, 50)
        p95Millis = Self.millis(histogram, 95)
        p99Millis = Self.millis(histogram, 99)
        maxMillis = operations == 0 ? 0 : Double(histogram.max) / 1000
    }

    static func millis(_ histogram: Histogram<UInt64>, _ percentile: Double) -> Double {
        histogram.totalCount == 0 ? 0 : Double(histogram.valueAtPercentile(percentile)) / 1000
    }

    func line(_ label: String) -> String {
        String(
            format: "%@: %d ops in %.1f s = %.0f ops/s, p50 %.2f ms, p95 %.2f ms, p99 %.2f ms", label, operations,
            seconds, opsPerSecond, p50Millis, p95Millis, p99Millis)
    }
}
