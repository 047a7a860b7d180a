import KVNode
import KVRPC
import KVWire
import Metrics
import MetricsTestKit
import Synchronization
import Testing

@Suite struct NodeStatisticsTests {
    @Test func countersMoveTheirAtomicAndTheirMetric() throws {
        let metrics = TestMetrics()
        let statistics = withMetricsFactory(metrics) { NodeStatistics(nodeID: "n1") }
        statistics.hintsStored.add(3, keyspace: "default")
        statistics.hintsStored.add(4, keyspace: "users")
        statistics.hintsRefused.add(1, keyspace: "default")
        statistics.hintsReplayed.add(2, keyspace: "users")
        statistics.hintsReplayed.add(0, keyspace: "users")
        statistics.hintsExpired.add(1, keyspace: "default")
        statistics.readRepairsReceived.add(3, keyspace: "default")
        statistics.readRepairsReceived.add(1, keyspace: "users")
        statistics.readRepairsApplied.add(2, keyspace: "users")
        statistics.readRepairsApplied.add(0, keyspace: "default")
        statistics.rangesMarkedForRefusedHints.add(1, ordering: .relaxed)
        statistics.rangesMarkedForExpiredHints.add(2, ordering: .relaxed)
        statistics.markFailures.add(1, ordering: .relaxed)

        let node = [("node", "n1")]
        // By keyspace in the metrics, summed in `Admin` stats.
        func inKeyspace(_ keyspace: String) -> [(String, String)] { node + [("keyspace", keyspace)] }
        #expect(try metrics.expectCounter("quorumkv_hints_stored_total", inKeyspace("default")).totalValue == 3)
        #expect(try metrics.expectCounter("quorumkv_hints_stored_total", inKeyspace("users")).totalValue == 4)
        #expect(try metrics.expectCounter("quorumkv_hints_refused_total", inKeyspace("default")).totalValue == 1)
        #expect(
            try metrics.expectCounter("quorumkv_hints_replayed_total", inKeyspace("users")).values == [2],
            "0 is not reported")
        #expect(try metrics.expectCounter("quorumkv_hints_expired_total", inKeyspace("default")).totalValue == 1)
        #expect(
            try metrics.expectCounter("quorumkv_read_repairs_received_total", inKeyspace("default")).totalValue == 3)
        #expect(try metrics.expectCounter("quorumkv_read_repairs_received_total", inKeyspace("users")).totalValue == 1)
        #expect(try metrics.expectCounter("quorumkv_read_repairs_applied_total", inKeyspace("users")).totalValue == 2)
        #expect(
            try metrics.expectCounter("quorumkv_read_repairs_applied_total", inKeyspace("default")).totalValue == 0,
            "the default keyspace's series is there from the start")
        #expect(
            (try? metrics.expectCounter("quorumkv_tombstones_purged_total", inKeyspace("users"))) == nil,
            "another keyspace's comes with its first count")
        #expect(
            metrics.counterTotal(
                label: "quorumkv_anti_entropy_ranges_marked_total", dimensions: [("reason", "hint_refused")]) == 1)
        #expect(
            metrics.counterTotal(
                label: "quorumkv_anti_entropy_ranges_marked_total", dimensions: [("reason", "hint_expired")]) == 2)
        #expect(try metrics.expectCounter("quorumkv_anti_entropy_mark_failures_total", node).totalValue == 1)

        var stats = NodeStats(node: "n1")
        statistics.fill(&stats)
        var expected = NodeStats(node: "n1")
        expected.hintsStored = 7
        expected.hintsRefused = 1
        expected.hintsReplayed = 2
        expected.hintsExpired = 1
        expected.readRepairsReceived = 4
        expected.readRepairsApplied = 2
        expected.antiEntropyRangesMarkedHintRefused = 1
        expected.antiEntropyRangesMarkedHintExpired = 2
        expected.antiEntropyMarkFailures = 1
        expected.refusals = RPCRefusal.allCases.map { RefusalCount(reason: $0.rawValue, count: 0) }
        #expect(stats == expected)
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
        var stats = NodeStats(node: "n1")
        statistics.fill(&stats)
        #expect(stats.refused("per_identity") == 2)
        #expect(stats.refused("queue_full") == 1)
        #expect(NodeStatistics.metricHelp["quorumkv_rpc_refused_total"] != nil)
    }

    @Test func gaugesFollowTheQueuesAndATargetThatEmptiesReportsZero() throws {
        let metrics = TestMetrics()
        // Passed explicitly: the gauges of targets are made later, outside any task-local scope.
        let statistics = NodeStatistics(nodeID: "n1", metricsFactory: metrics)
        let keyspaces: [UInt32: String] = [0: "default", 3: "users"]
        statistics.recordQueues(
            NodeQueues(
                hintQueueSizes: ["n2": 5, "n3": 1], rangesDue: ["default": 2, "users": 4], keyspaces: keyspaces))
        func due(_ keyspace: String) throws -> Double? {
            try metrics.expectGauge("quorumkv_anti_entropy_ranges_due", [("node", "n1"), ("keyspace", keyspace)])
                .lastValue
        }
        #expect(try metrics.expectGauge("quorumkv_hint_queue_size", [("node", "n1"), ("target", "n2")]).lastValue == 5)
        #expect(try metrics.expectGauge("quorumkv_hint_queue_size", [("node", "n1"), ("target", "n3")]).lastValue == 1)
        #expect(try due("default") == 2)
        #expect(try due("users") == 4)

        statistics.recordQueues(NodeQueues(hintQueueSizes: ["n2": 4], rangesDue: ["default": 0], keyspaces: keyspaces))
        #expect(try metrics.expectGauge("quorumkv_hint_queue_size", [("node", "n1"), ("target", "n2")]).lastValue == 4)
        #expect(try metrics.expectGauge("quorumkv_hint_queue_size", [("node", "n1"), ("target", "n3")]).lastValue == 0)
        #expect(try due("default") == 0)
        #expect(try due("users") == 0, "a keyspace whose marks went reports 0")
    }

    @Test func eachKeyspaceHasItsLastFullPassAndTheNodesIsTheOldest() throws {
        let metrics = TestMetrics()
        let statistics = NodeStatistics(nodeID: "n1", metricsFactory: metrics)
        // `users` is split in two parts (ids 3 and 4), `events` is one keyspace (id 5).
        let keyspaces: [UInt32: String] = [0: "default", 3: "users", 4: "users", 5: "events"]
        let queues = NodeQueues(hintQueueSizes: [:], rangesDue: [:], keyspaces: keyspaces)
        func lastPass(_ keyspace: String) throws -> Double? {
            try metrics.expectGauge(
                "quorumkv_anti_entropy_last_full_pass_timestamp_seconds", [("node", "n1"), ("keyspace", keyspace)]
            ).lastValue
        }
        statistics.recordFullPass(keyspace: 0, atMillis: 9_000)
        statistics.recordFullPass(keyspace: 3, atMillis: 7_000)
        statistics.recordQueues(queues)
        #expect(try lastPass("default") == 9)
        #expect(try lastPass("users") == 0, "one part never passed whole")
        #expect(try lastPass("events") == 0)
        #expect(statistics.oldestFullPass(of: keyspaces.keys) == 0, "a keyspace never passed whole")

        statistics.recordFullPass(keyspace: 4, atMillis: 8_000)
        statistics.recordFullPass(keyspace: 5, atMillis: 10_000)
        statistics.recordQueues(queues)
        #expect(try lastPass("users") == 7, "the older of its parts'")
        #expect(try lastPass("events") == 10)
        #expect(statistics.oldestFullPass(of: keyspaces.keys) == 7_000)
        #expect(statistics.oldestFullPass(of: [0, 5]) == 9_000)
        #expect(statistics.oldestFullPass(of: []) == 0)
    }

    @Test(.timeLimit(.minutes(3)))
    func queuesAreReportedPeriodicallyUntilCancelled() async throws {
        let metrics = TestMetrics()
        let statistics = NodeStatistics(nodeID: "n1", metricsFactory: metrics)
        let reporter = Task {
            await statistics.reportQueues(every: .milliseconds(10)) {
                NodeQueues(hintQueueSizes: ["n2": 7], rangesDue: ["default": 3], keyspaces: [0: "default"])
            }
        }
        let due = [("node", "n1"), ("keyspace", "default")]
        while (try? metrics.expectGauge("quorumkv_anti_entropy_ranges_due", due).values.count) ?? 0 < 2 {
            try await Task.sleep(for: .milliseconds(5))
        }
        reporter.cancel()
        await reporter.value
        #expect(try metrics.expectGauge("quorumkv_hint_queue_size", [("node", "n1"), ("target", "n2")]).lastValue == 7)
    }
}
