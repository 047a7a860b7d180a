import KVCore
import Metrics
import Synchronization

/// What a client reports through swift-metrics about the operations it coordinates: the latency and
/// outcome an application sees (the whole quorum, retries included), which no replica can measure.
///
/// | metric | kind | moves when |
/// |---|---|---|
/// | `quorumkv_client_operations_total{operation,outcome}` | counter | a `put`, `get` or `delete` ended: `outcome` `ok`, `unavailable`, `conflict`, `refused`, `invalid_argument`, `protocol_violation` or `error` |
/// | `quorumkv_client_operation_duration_seconds{operation}` | timer | an operation succeeded, from the call to its answer |
/// | `quorumkv_client_read_repairs_total` | counter | a repair write was sent to a stale replica |
/// | `quorumkv_client_hints_total` | counter | a fallback node stored a hint for a replica that did not acknowledge |
///
/// Metrics go to `KVClientConfiguration.metricsFactory`, else to the process's bootstrapped backend
/// (`MetricsSystem.bootstrap`; none: they go nowhere).
final class ClientMetrics: Sendable {
    enum Operation: String, CaseIterable {
        case put, get, delete
    }

    private let factory: any MetricsFactory
    private let durations: [Operation: Metrics.Timer]
    private let outcomes = Mutex<[String: Counter]>([:])
    let readRepairs: Counter
    let hints: Counter

    init(factory: any MetricsFactory) {
        self.factory = factory
        var durations: [Operation: Metrics.Timer] = [:]
        for operation in Operation.allCases {
            durations[operation] = Metrics.Timer(
                label: "quorumkv_client_operation_duration_seconds", dimensions: [("operation", operation.rawValue)],
                factory: factory)
        }
        self.durations = durations
        readRepairs = Counter(label: "quorumkv_client_read_repairs_total", factory: factory)
        hints = Counter(label: "quorumkv_client_hints_total", factory: factory)
    }

    /// Runs `body`, counting its outcome and timing it when it succeeds.
    func measure<Result: Sendable>(_ operation: Operation, _ body: () async throws -> Result) async throws -> Result {
        let started = ContinuousClock.now
        do {
            let result = try await body()
            durations[operation]?.recordNanoseconds((ContinuousClock.now - started).wholeNanoseconds)
            count(operation, outcome: "ok")
            return result
        } catch {
            count(operation, outcome: (error as? KVClientError)?.outcomeLabel ?? "error")
            throw error
        }
    }

    private func count(_ operation: Operation, outcome: String) {
        let key = "\(operation.rawValue) \(outcome)"
        let factory = self.factory
        let counter = outcomes.withLock { made in
            if let known = made[key] { return known }
            let new = Counter(
                label: "quorumkv_client_operations_total",
                dimensions: [("operation", operation.rawValue), ("outcome", outcome)], factory: factory)
            made[key] = new
            return new
        }
        counter.increment()
    }
}
