import Foundation
import Histogram
import KVWorkload
import Synchronization

/// The latencies and outcomes of a run, shared by its request loops: HdrHistograms (microseconds, 3
/// significant digits, up to a minute) for the whole run, each side of `--split`, each second and
/// each operation type.
///
/// A request's latency is from its intended start with `--target-rate` (the coordinated-omission
/// correction, `RequestTiming.latency`) and from its send otherwise; the service time (send to
/// answer) is kept beside it for the whole run and per operation. A request counts in the second and
/// the side of the split in which it was meant to start. A warm-up records into a recorder of its
/// own, which is dropped.
final class Recorder: Sendable {
    /// One second of the run.
    struct Second: Encodable {
        var second: Int
        var operations: Int
        var errors: Int
        var p50Millis: Double
        var p99Millis: Double
    }

    /// One operation type's latencies, service times and errors.
    private struct OperationState {
        var latency = Recorder.histogram()
        var serviceTime = Recorder.histogram()
        var beforeSplit = Recorder.histogram()
        var afterSplit = Recorder.histogram()
        var errors = 0
    }

    private struct State {
        var whole = Recorder.histogram()
        var serviceTime = Recorder.histogram()
        var beforeSplit = Recorder.histogram()
        var afterSplit = Recorder.histogram()
        var seconds: [Histogram<UInt64>] = []
        var errors: [Int] = []
        var operations: [OperationType: OperationState] = [:]
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

    /// A request of `operation` that succeeded with `timing` (offsets from the run's start).
    func record(_ operation: OperationType, _ timing: RequestTiming) {
        let latency = Self.micros(timing.latency)
        let serviceTime = Self.micros(timing.serviceTime)
        let start = timing.intendedStart ?? timing.sent
        let second = Int(clamping: max(0, start.components.seconds))
        state.withLock { state in
            _ = state.whole.record(latency)
            _ = state.serviceTime.record(serviceTime)
            if let split {
                if start < split {
                    _ = state.beforeSplit.record(latency)
                    _ = state.operations[operation, default: OperationState()].beforeSplit.record(latency)
                } else {
                    _ = state.afterSplit.record(latency)
                    _ = state.operations[operation, default: OperationState()].afterSplit.record(latency)
                }
            }
            state.grow(to: second)
            _ = state.seconds[second].record(latency)
            _ = state.operations[operation, default: OperationState()].latency.record(latency)
            _ = state.operations[operation, default: OperationState()].serviceTime.record(serviceTime)
        }
    }

    /// A request of `operation`, meant to start (or sent) `start` into the run, that failed with `error`.
    func recordError(_ operation: OperationType, start: Duration, _ error: any Error) {
        let second = Int(clamping: max(0, start.components.seconds))
        state.withLock { state in
            state.grow(to: second)
            state.errors[second] += 1
            state.operations[operation, default: OperationState()].errors += 1
            state.lastError = "\(error)"
        }
    }

    /// Whole microseconds, at least 1 (the histogram's lowest value), at most its highest.
    private static func micros(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return min(60_000_000, UInt64(clamping: max(1, seconds &* 1_000_000 &+ attoseconds / 1_000_000_000_000)))
    }

    var errors: Int { state.withLock { $0.errors.reduce(0, +) } }
    var lastError: String? { state.withLock { $0.lastError } }

    /// The whole run, and each side of the split when there is one.
    func phases(elapsed: Double) -> (whole: Phase, before: Phase?, after: Phase?) {
        state.withLock { state in
            let whole = Phase(state.whole, seconds: elapsed)
            guard let (before, after) = splitPhases(state.beforeSplit, state.afterSplit, elapsed: elapsed) else {
                return (whole, nil, nil)
            }
            return (whole, before, after)
        }
    }

    /// The phases of `before` and `after`, each over its side's seconds; nil without a split.
    private func splitPhases(_ before: Histogram<UInt64>, _ after: Histogram<UInt64>, elapsed: Double) -> (
        Phase, Phase
    )? {
        guard let split else { return nil }
        let cut = Double(split.components.seconds) + Double(split.components.attoseconds) / 1e18
        return (Phase(before, seconds: cut), Phase(after, seconds: elapsed - cut))
    }

    /// The whole run's service times (send to answer).
    func serviceTime(elapsed: Double) -> Phase {
        state.withLock { Phase($0.serviceTime, seconds: elapsed) }
    }

    /// Each operation type that ran, in `OperationType.allCases` order; with their service times
    /// when `withServiceTimes` (a target rate: they differ from the latencies).
    func operations(elapsed: Double, withServiceTimes: Bool) -> [OperationFigures] {
        state.withLock { state in
            OperationType.allCases.compactMap { operation in
                guard let figures = state.operations[operation] else { return nil }
                let sides = splitPhases(figures.beforeSplit, figures.afterSplit, elapsed: elapsed)
                return OperationFigures(
                    operation: operation.name, latency: Phase(figures.latency, seconds: elapsed),
                    errors: figures.errors,
                    serviceTime: withServiceTimes ? Phase(figures.serviceTime, seconds: elapsed) : nil,
                    beforeSplit: sides?.0, afterSplit: sides?.1)
            }
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
    var p999Millis: Double
    var maxMillis: Double

    init(_ histogram: Histogram<UInt64>, seconds: Double) {
        operations = Int(histogram.totalCount)
        self.seconds = seconds
        opsPerSecond = seconds > 0 ? Double(operations) / seconds : 0
        p50Millis = Self.millis(histogram, 50)
        p95Millis = Self.millis(histogram, 95)
        p99Millis = Self.millis(histogram, 99)
        p999Millis = Self.millis(histogram, 99.9)
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

    /// The percentiles alone: `p50 … ms, p95 …, p99 …, p99.9 …, max …`.
    var percentiles: String {
        String(
            format: "p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms", p50Millis, p95Millis,
            p99Millis,
            p999Millis, maxMillis)
    }
}

/// One operation type's figures in a report: count, rate and latency (from the intended start with
/// a target rate), errors, and with a target rate the service time (send to answer). Encoded flat:
/// `operation`, `errors`, `serviceTime` beside the latency's `Phase` fields.
struct OperationFigures: Encodable {
    var operation: String
    var latency: Phase
    var errors: Int
    var serviceTime: Phase?
    /// This operation's requests each side of `--split`, when there is one.
    var beforeSplit: Phase?
    var afterSplit: Phase?

    private enum CodingKeys: String, CodingKey {
        case operation, errors, serviceTime, beforeSplit, afterSplit
    }

    func encode(to encoder: any Encoder) throws {
        try latency.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(operation, forKey: .operation)
        try container.encode(errors, forKey: .errors)
        try container.encodeIfPresent(serviceTime, forKey: .serviceTime)
        try container.encodeIfPresent(beforeSplit, forKey: .beforeSplit)
        try container.encodeIfPresent(afterSplit, forKey: .afterSplit)
    }

    /// `  read: N ops = R ops/s, p50 …, E errors` (no "ops in … s": scripts/kvbench_rates.py counts
    /// only the run's own line).
    func line() -> String {
        var text = String(
            format: "  %@: %d ops = %.0f ops/s, ", operation, latency.operations, latency.opsPerSecond)
        text += latency.percentiles
        text += ", \(errors) errors"
        if let serviceTime { text += "\n    service time: " + serviceTime.percentiles }
        if let beforeSplit, let afterSplit {
            text += "\n    before the split: \(beforeSplit.percentiles)\n    after the split: \(afterSplit.percentiles)"
        }
        return text
    }
}
