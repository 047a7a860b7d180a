import KVCore
import Metrics
import Synchronization

/// What a client reports through swift-metrics about the operations it coordinates: the latency and
/// outcome an application sees (the whole quorum, retries included), which no replica can measure.
///
/// | metric | kind | moves when |
/// |---|---|---|
/// | `quorumkv_client_operations_total{operation,consistency,keyspace,outcome}` | counter | a `put`, `get` or `delete` ended, or a batch (`batch_get`, `batch_put`: one per call, whatever its keys): `outcome` `ok`, `unavailable`, `conflict`, `refused`, `invalid_argument`, `protocol_violation` or `error` |
/// | `quorumkv_client_operation_duration_seconds{operation,consistency,keyspace}` | timer | an operation succeeded, from the call to its answer |
/// | `quorumkv_client_read_repairs_total` | counter | a repair write was sent to a stale replica |
/// | `quorumkv_client_hints_total` | counter | a fallback node stored a hint for a replica that did not acknowledge |
/// | `quorumkv_client_batch_keys_waiting` | gauge | batch requests start or stop waiting for room under a node's bound of keys in flight (`KVClientConfiguration.batchKeysInFlightPerNode`): their keys, over all nodes |
///
/// `consistency` is the level the operation asked for (its own or the configuration's): `one`,
/// `quorum`, `all`, or a count `1`…`Limits.replicationFactorMax` (`invalid` beyond, so that a caller's
/// number cannot grow the label set without bound). `keyspace` is the keyspace's name (`default` for
/// the client's own) when the cluster map in use has it once the operation ended, else `unknown`: a
/// caller's misspelt names do not grow the label set either.
///
/// Metrics go to `KVClientConfiguration.metricsFactory`, else to the process's bootstrapped backend
/// (`MetricsSystem.bootstrap`; none: they go nowhere).
final class ClientMetrics: Sendable {
    enum Operation: String, CaseIterable {
        case put, get, delete
        case batchGet = "batch_get"
        case batchPut = "batch_put"
    }

    private let factory: any MetricsFactory
    /// A metric's labels, as the key of the metrics made so far: short strings stay inline, so looking
    /// one up allocates nothing (a key joined into one string did, per operation).
    private struct Labels: Hashable {
        var operation: Operation
        var consistency: String
        var keyspace: String
        var outcome = ""
    }

    private let durations = Mutex<[Labels: Metrics.Timer]>([:])
    private let outcomes = Mutex<[Labels: Counter]>([:])
    let readRepairs: Counter
    let hints: Counter
    /// Keys of batch requests waiting for room in a node's window (`BatchWindows`), over all nodes.
    let batchKeysWaiting: Gauge

    init(factory: any MetricsFactory) {
        self.factory = factory
        readRepairs = Counter(label: "quorumkv_client_read_repairs_total", factory: factory)
        hints = Counter(label: "quorumkv_client_hints_total", factory: factory)
        batchKeysWaiting = Gauge(label: "quorumkv_client_batch_keys_waiting", factory: factory)
    }

    /// Runs `body`, an operation at `consistency`, counting its outcome and timing it when it succeeds.
    /// `keyspace` gives the operation's `keyspace` label once it ended.
    func measure<Result: Sendable>(
        _ operation: Operation, consistency: ConsistencyLevel, keyspace: () -> String,
        _ body: () async throws -> Result
    ) async throws -> Result {
        let started = ContinuousClock.now
        let level = Self.label(consistency)
        do {
            let result = try await body()
            let space = keyspace()
            made(in: durations, Labels(operation: operation, consistency: level, keyspace: space)) {
                Metrics.Timer(
                    label: "quorumkv_client_operation_duration_seconds",
                    dimensions: [("operation", operation.rawValue), ("consistency", level), ("keyspace", space)],
                    factory: $0)
            }.recordNanoseconds((ContinuousClock.now - started).wholeNanoseconds)
            count(operation, level, space, outcome: "ok")
            return result
        } catch {
            count(operation, level, keyspace(), outcome: (error as? KVClientError)?.outcomeLabel ?? "error")
            throw error
        }
    }

    /// The `consistency` label of a level.
    static func label(_ level: ConsistencyLevel) -> String {
        switch level {
        case .one: "one"
        case .quorum: "quorum"
        case .all: "all"
        case .count(let count): (1...Limits.replicationFactorMax).contains(count) ? "\(count)" : "invalid"
        case .localQuorum: "local_quorum"
        case .eachQuorum: "each_quorum"
        }
    }

    private func count(_ operation: Operation, _ level: String, _ keyspace: String, outcome: String) {
        made(in: outcomes, Labels(operation: operation, consistency: level, keyspace: keyspace, outcome: outcome)) {
            Counter(
                label: "quorumkv_client_operations_total",
                dimensions: [
                    ("operation", operation.rawValue), ("consistency", level), ("keyspace", keyspace),
                    ("outcome", outcome),
                ],
                factory: $0)
        }.increment()
    }

    /// The metric of `key` in `cache`, made with `make` the first time.
    private func made<Metric: Sendable>(
        in cache: borrowing Mutex<[Labels: Metric]>, _ key: Labels, _ make: (any MetricsFactory) -> Metric
    ) -> Metric {
        let factory = self.factory
        return cache.withLock { made in
            if let known = made[key] { return known }
            let new = make(factory)
            made[key] = new
            return new
        }
    }
}
