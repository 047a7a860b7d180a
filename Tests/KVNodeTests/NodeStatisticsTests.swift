import KVNode
import KVRPC
import Metrics
import MetricsTestKit
import Synchronization
import Testing

@Suite struct NodeStatisticsTests {
    @Test func countersMoveTheirAtomicAndTheirMetric() throws {
        let metrics = TestMetrics()
        let statistics = withMetricsFactory(metrics) { NodeStatistics(nodeID: "n1") }
        statistics.hintsStored.add(3, ordering: .relaxed)
        statistics.hintsRefused.add(1, ordering: .relaxed)
        statistics.hintsReplayed.add(2, ordering: .relaxed)
        statistics.hintsReplayed.add(0, ordering: .relaxed)
        statistics.hintsExpired.add(1, ordering: .relaxed)
        statistics.readRepairsReceived.add(4, ordering: .relaxed)
        statistics.readRepairsApplied.add(2, ordering: .relaxed)
        statistics.rangesMarkedForRefusedHints.add(1, ordering: .relaxed)
        statistics.rangesMarkedForExpiredHints.add(2, ordering: .relaxed)
        statistics.markFailures.add(1, ordering: .relaxed)

        let node = [("node", "n1")]
        #expect(try metrics.expectCounter("quorumkv_hints_stored_total", node).totalValue == 3)
        #expect(try metrics.expectCounter("quorumkv_hints_refused_total", node).totalValue == 1)
        #expect(try metrics.expectCounter("quorumkv_hints_replayed_total", node).values == [2], "0 is not reported")
        #expect(try metrics.expectCounter("quorumkv_hints_expired_total", node).totalValue == 1)
        #expect(try metrics.expectCounter("quorumkv_read_repairs_received_total", node).totalValue == 4)
        #expect(try metrics.expectCounter("quorumkv_read_repairs_applied_total", node).totalValue == 2)
        #expect(
            metrics.counterTotal(
                label: "quorumkv_anti_entropy_ranges_marked_total", dimensions: [("reason", "hint_refused")]) == 1)
        #expect(
            metrics.counterTotal(
                label: "quorumkv_anti_entropy_ranges_marked_total", dimensions: [("reason", "hint_expired")]) == 2)
        #expect(try metrics.expectCounter("quorumkv_anti_entropy_mark_failures_total", node).totalValue == 1)

        let snapshot = Dictionary(uniqueKeysWithValues: statistics.snapshot.map { ($0.name, $0.value) })
        #expect(
            snapshot.filter { !$0.key.hasPrefix("rpc_refused_") } == [
                "hints_stored": 3, "hints_refused": 1, "hints_replayed": 2, "hints_expired": 1,
                "read_repairs_received": 4, "read_repairs_applied": 2,
                "anti_entropy_ranges_marked_hint_refused": 1, "anti_entropy_ranges_marked_hint_expired": 2,
                "anti_entropy_mark_failures": 1, "anti_entropy_writes_received": 0, "anti_entropy_ranges_compared": 0,
                "anti_entropy_keys_sent": 0, "anti_entropy_keys_received": 0, "anti_entropy_bytes": 0,
                "anti_entropy_session_failures": 0, "anti_entropy_last_full_pass_millis": 0, "tombstones_purged": 0,
                "stream_keys_received": 0, "stream_keys_resent": 0, "stream_bytes": 0, "stream_retries": 0,
                "handoff_keys_deleted": 0, "clock_ahead_refused": 0, "maps_refused": 0, "hints_rehomed": 0,
            ])
        #expect(RPCRefusal.allCases.allSatisfy { snapshot["rpc_refused_\($0.rawValue)"] == 0 })
    }

    @Test func refusalsAreCountedPerReasonInStatsAndAsOneMetric() throws {
        let metrics = TestMetrics()
        let statistics = NodeStatistics(nodeID: "n1", metricsFactory: metrics)
        // As a node wires its RPC server's statistics.
        let server = RPCServerStatistics(onRefusal: { statistics.recordRefusal($0) })
        server.recordRefusal(.perIdentity)
        server.recordRefusal(.perIdentity)
        server.recordRefusal(.idle)
        statistics.recordRefusal(.queueFull)

        #expect(server.refusedCount(.perIdentity) == 2)
        #expect(statistics.refusedCount(.perIdentity) == 2)
        #expect(statistics.refusedCount(.idle) == 1)
        #expect(statistics.refusedCount(.queueFull) == 1)
        #expect(statistics.refusedCount(.connections) == 0)
        let reason = { (value: String) in [("node", "n1"), ("reason", value)] }
        #expect(try metrics.expectCounter("quorumkv_rpc_refused_total", reason("per_identity")).totalValue == 2)
        #expect(try metrics.expectCounter("quorumkv_rpc_refused_total", reason("idle")).totalValue == 1)
        #expect(try metrics.expectCounter("quorumkv_rpc_refused_total", reason("queue_full")).totalValue == 1)
        let snapshot = Dictionary(uniqueKeysWithValues: statistics.snapshot.map { ($0.name, $0.value) })
        #expect(snapshot["rpc_refused_per_identity"] == 2)
        #expect(snapshot["rpc_refused_queue_full"] == 1)
        #expect(NodeStatistics.metricHelp["quorumkv_rpc_refused_total"] != nil)
    }

    @Test func gaugesFollowTheQueuesAndATargetThatEmptiesReportsZero() throws {
        let metrics = TestMetrics()
        // Passed explicitly: the gauges of targets are made later, outside any task-local scope.
        let statistics = NodeStatistics(nodeID: "n1", metricsFactory: metrics)
        statistics.recordQueues(hintQueueSizes: ["n2": 5, "n3": 1], rangesDue: 2)
        #expect(try metrics.expectGauge("quorumkv_hint_queue_size", [("node", "n1"), ("target", "n2")]).lastValue == 5)
        #expect(try metrics.expectGauge("quorumkv_hint_queue_size", [("node", "n1"), ("target", "n3")]).lastValue == 1)
        #expect(try metrics.expectGauge("quorumkv_anti_entropy_ranges_due", [("node", "n1")]).lastValue == 2)

        statistics.recordQueues(hintQueueSizes: ["n2": 4], rangesDue: 0)
        #expect(try metrics.expectGauge("quorumkv_hint_queue_size", [("node", "n1"), ("target", "n2")]).lastValue == 4)
        #expect(try metrics.expectGauge("quorumkv_hint_queue_size", [("node", "n1"), ("target", "n3")]).lastValue == 0)
        #expect(try metrics.expectGauge("quorumkv_anti_entropy_ranges_due", [("node", "n1")]).lastValue == 0)
    }

    @Test(.timeLimit(.minutes(1)))
    func queuesAreReportedPeriodicallyUntilCancelled() async throws {
        let metrics = TestMetrics()
        let statistics = NodeStatistics(nodeID: "n1", metricsFactory: metrics)
        let reporter = Task {
            await statistics.reportQueues(every: .milliseconds(10)) { (["n2": 7], 3) }
        }
        while (try? metrics.expectGauge("quorumkv_anti_entropy_ranges_due", [("node", "n1")]).values.count) ?? 0 < 2 {
            try await Task.sleep(for: .milliseconds(5))
        }
        reporter.cancel()
        await reporter.value
        #expect(try metrics.expectGauge("quorumkv_hint_queue_size", [("node", "n1"), ("target", "n2")]).lastValue == 7)
    }
}
