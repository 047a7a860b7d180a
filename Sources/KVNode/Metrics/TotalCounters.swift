import Metrics
import Synchronization

/// Counters that follow running totals kept elsewhere (a connection table's bytes, RocksDB's
/// tickers): each reading adds the growth since the last one, so the series are Prometheus
/// `counter`s although the totals are read, not counted here.
///
/// One counter per value of a dimension besides `node` (or a single one, with the key `""`, when
/// `dimension` is nil), each made the first time its value is seen. A total that went down (its
/// source restarted) adds nothing and becomes the new base.
final class TotalCounters: Sendable {
    private let label: String
    private let dimension: String?
    private let nodeID: String
    private let factory: any MetricsFactory
    private let counters = Mutex<[String: (counter: Counter, last: UInt64)]>([:])

    init(_ label: String, by dimension: String? = nil, nodeID: String, factory: any MetricsFactory) {
        self.label = label
        self.dimension = dimension
        self.nodeID = nodeID
        self.factory = factory
    }

    /// Advances each key's counter to `totals[key]`.
    func record(_ totals: [String: UInt64]) {
        let growth: [(Counter, UInt64)] = counters.withLock { counters in
            totals.map { key, total in
                let entry =
                    counters[key]
                    ?? (Counter(label: label, dimensions: dimensions(key), factory: factory), 0)
                counters[key] = (entry.counter, total)
                return (entry.counter, total > entry.last ? total - entry.last : 0)
            }
        }
        for (counter, amount) in growth where amount > 0 {
            counter.increment(by: Int64(clamping: amount))
        }
    }

    /// Advances the single counter (no dimension) to `total`.
    func record(_ total: UInt64) {
        record(["": total])
    }

    private func dimensions(_ key: String) -> [(String, String)] {
        guard let dimension else { return [("node", nodeID)] }
        return [("node", nodeID), (dimension, key)]
    }
}
