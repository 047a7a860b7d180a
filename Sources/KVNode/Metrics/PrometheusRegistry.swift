public import CoreMetrics
import Synchronization

/// A swift-metrics backend that keeps the current value of every metric and writes them all in the
/// Prometheus text exposition format (version 0.0.4), for `kvd --metrics`.
///
/// Counters and floating-point counters are `counter`s; gauges (recorders that do not aggregate) and
/// meters are `gauge`s; timers are `histogram`s in seconds, with the buckets of `timerBuckets`, so
/// that `histogram_quantile` gives p50/p95/p99 over any set of nodes; aggregating recorders are
/// `summary`s with only `_count` and `_sum` (their unit is unknown, so no buckets fit them).
///
/// Metrics made twice with the same label and dimensions share one series. A label already used for
/// another kind of metric gets a series that is counted but never written, as Prometheus requires
/// one type per metric name.
public final class PrometheusRegistry: MetricsFactory, Sendable {
    private struct State {
        var series: [SeriesKey: Series] = [:]
        var kinds: [String: Series.Kind] = [:]
    }

    private let state = Mutex(State())
    private let help: [String: String]

    /// - Parameter help: the `# HELP` text of each metric name that has one.
    public init(help: [String: String] = [:]) {
        self.help = help
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        series(label, dimensions, .counter)
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)])
        -> any FloatingPointCounterHandler
    {
        series(label, dimensions, .counter)
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        series(label, dimensions, .gauge)
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        series(label, dimensions, aggregate ? .summary : .gauge)
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        series(label, dimensions, .histogram)
    }

    /// The upper bounds (seconds) of the timers' histogram buckets, from 100 µs to 10 s; `+Inf` follows.
    public static let timerBuckets: [Double] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]

    public func destroyCounter(_ handler: any CounterHandler) { remove(handler) }
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { remove(handler) }
    public func destroyMeter(_ handler: any MeterHandler) { remove(handler) }
    public func destroyRecorder(_ handler: any RecorderHandler) { remove(handler) }
    public func destroyTimer(_ handler: any TimerHandler) { remove(handler) }

    /// Every metric, one family (`# TYPE` line, then its series) per name, names and series in order.
    public func render() -> String {
        let all = state.withLock { Array($0.series.values) }
        var families: [String: [Series]] = [:]
        for series in all { families[series.name, default: []].append(series) }
        var text = ""
        for name in families.keys.sorted() {
            let members = families[name, default: []].sorted { $0.labels < $1.labels }
            guard let kind = members.first?.kind else { continue }
            if let help = help[name] {
                text += "# HELP \(name) \(help.replacing("\\", with: "\\\\").replacing("\n", with: "\\n"))\n"
            }
            text += "# TYPE \(name) \(kind.rawValue)\n"
            for series in members {
                let reading = series.reading
                let labels = Self.braced(series.labels)
                switch kind {
                case .counter, .gauge:
                    text += "\(name)\(labels) \(Self.format(reading.value))\n"
                case .histogram:
                    var cumulative: UInt64 = 0
                    let buckets =
                        reading.buckets.isEmpty
                        ? Array(repeating: 0, count: Self.timerBuckets.count) : reading.buckets
                    for (bound, count) in zip(Self.timerBuckets, buckets) {
                        cumulative += count
                        let le = Self.braced(series.labels, adding: "le=\"\(Self.format(bound))\"")
                        text += "\(name)_bucket\(le) \(cumulative)\n"
                    }
                    text += "\(name)_bucket\(Self.braced(series.labels, adding: "le=\"+Inf\"")) \(reading.count)\n"
                    text += "\(name)_sum\(labels) \(Self.format(reading.sum))\n"
                    text += "\(name)_count\(labels) \(reading.count)\n"
                case .summary:
                    text += "\(name)_count\(labels) \(reading.count)\n"
                    text += "\(name)_sum\(labels) \(Self.format(reading.sum))\n"
                }
            }
        }
        return text
    }

    private func series(_ label: String, _ dimensions: [(String, String)], _ kind: Series.Kind) -> Series {
        let name = Self.metricName(label)
        let labels = Self.labelText(dimensions)
        return state.withLock { state in
            if let known = state.kinds[name], known != kind {
                return Series(name: name, labels: labels, kind: kind)
            }
            let key = SeriesKey(name: name, labels: labels)
            if let existing = state.series[key] { return existing }
            let made = Series(name: name, labels: labels, kind: kind)
            state.series[key] = made
            state.kinds[name] = kind
            return made
        }
    }

    private func remove(_ handler: AnyObject) {
        guard let series = handler as? Series else { return }
        state.withLock { state in
            let key = SeriesKey(name: series.name, labels: series.labels)
            guard state.series[key] === series else { return }
            state.series[key] = nil
            if !state.series.keys.contains(where: { $0.name == series.name }) { state.kinds[series.name] = nil }
        }
    }

    /// `label` with every character Prometheus does not allow in a metric name replaced by `_`.
    static func metricName(_ label: String) -> String {
        var name = ""
        for (index, character) in label.enumerated() {
            let allowed =
                character.isASCII
                && (character.isLetter || character == "_" || character == ":" || (index > 0 && character.isNumber))
            name.append(allowed ? character : "_")
        }
        return name.isEmpty ? "_" : name
    }

    /// `{labels,adding}`, or nothing when both are empty.
    static func braced(_ labels: String, adding extra: String = "") -> String {
        let all = [labels, extra].filter { !$0.isEmpty }
        return all.isEmpty ? "" : "{" + all.joined(separator: ",") + "}"
    }

    /// `a="x",b="y"` in the order given, names made valid, values escaped.
    static func labelText(_ dimensions: [(String, String)]) -> String {
        let pairs = dimensions.map { name, value in
            var cleanName = metricName(name).replacing(":", with: "_")
            if cleanName.hasPrefix("__") { cleanName = "x" + cleanName }
            var escaped = ""
            for character in value {
                switch character {
                case "\\": escaped += "\\\\"
                case "\"": escaped += "\\\""
                case "\n": escaped += "\\n"
                default: escaped.append(character)
                }
            }
            return "\(cleanName)=\"\(escaped)\""
        }
        return pairs.joined(separator: ",")
    }

    /// A sample value as Prometheus reads it: whole numbers without a fraction, `NaN`, `+Inf`, `-Inf`.
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 9_007_199_254_740_992 { return String(Int64(value)) }
        return "\(value)"
    }
}

private struct SeriesKey: Hashable {
    var name: String
    var labels: String
}

/// One series: its handler for every kind of metric, and what it holds.
private final class Series: CounterHandler, FloatingPointCounterHandler, MeterHandler, RecorderHandler,
    TimerHandler, Sendable
{
    enum Kind: String {
        case counter, gauge, histogram, summary
    }

    struct Reading {
        var value: Double = 0
        var count: UInt64 = 0
        var sum: Double = 0
        /// Per bucket of `PrometheusRegistry.timerBuckets`, the durations that fell in it (not
        /// cumulative); those above the last bound are only in `count`.
        var buckets: [UInt64] = []
    }

    let name: String
    let labels: String
    let kind: Kind
    private let state = Mutex(Reading())

    init(name: String, labels: String, kind: Kind) {
        self.name = name
        self.labels = labels
        self.kind = kind
    }

    var reading: Reading { state.withLock { $0 } }

    func increment(by amount: Int64) { increment(by: Double(amount)) }
    func increment(by amount: Double) { state.withLock { $0.value += amount } }
    func decrement(by amount: Double) { state.withLock { $0.value -= amount } }
    func reset() { state.withLock { $0 = Reading() } }
    func set(_ value: Int64) { set(Double(value)) }
    func set(_ value: Double) { state.withLock { $0.value = value } }
    func record(_ value: Int64) { record(Double(value)) }

    func record(_ value: Double) {
        state.withLock { reading in
            if kind == .summary {
                reading.count += 1
                reading.sum += value
            } else {
                reading.value = value
            }
        }
    }

    func recordNanoseconds(_ duration: Int64) {
        let seconds = Double(duration) / 1e9
        let bucket = PrometheusRegistry.timerBuckets.firstIndex { seconds <= $0 }
        state.withLock { reading in
            reading.count += 1
            reading.sum += seconds
            if let bucket {
                if reading.buckets.isEmpty {
                    reading.buckets = Array(repeating: 0, count: PrometheusRegistry.timerBuckets.count)
                }
                reading.buckets[bucket] += 1
            }
        }
    }
}
