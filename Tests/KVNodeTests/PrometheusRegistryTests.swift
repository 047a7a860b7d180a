import KVCore
import KVNode
import KVRPC
import KVTLS
import KVWire
import Metrics
import NIOCore
import Synchronization
import Testing

@Suite struct PrometheusRegistryTests {
    @Test func everyKindIsWrittenInTheTextFormat() {
        let registry = PrometheusRegistry()
        let stored = Counter(label: "kv_hints_total", dimensions: [("node", "n1")], factory: registry)
        stored.increment(by: 3)
        stored.increment(by: 2)
        Counter(label: "kv_hints_total", dimensions: [("node", "n2")], factory: registry).increment(by: 1)
        let bytes = FloatingPointCounter(label: "kv_bytes_total", factory: registry)
        bytes.increment(by: 1.5)
        let queue = Gauge(label: "kv_queue", dimensions: [("target", "n3")], factory: registry)
        queue.record(7)
        queue.record(4)
        let pending = Meter(label: "kv_pending", factory: registry)
        pending.set(10)
        pending.decrement(by: 2.5)
        let sizes = Recorder(label: "kv_size_bytes", factory: registry)
        sizes.record(100)
        sizes.record(50)
        let latency = Metrics.Timer(label: "kv_latency_seconds", factory: registry)
        latency.recordNanoseconds(1_500_000_000)
        latency.recordMilliseconds(500)
        latency.recordSeconds(12)

        #expect(
            registry.render() == """
                # TYPE kv_bytes_total counter
                kv_bytes_total 1.5
                # TYPE kv_hints_total counter
                kv_hints_total{node="n1"} 5
                kv_hints_total{node="n2"} 1
                # TYPE kv_latency_seconds histogram
                kv_latency_seconds_bucket{le="0.0001"} 0
                kv_latency_seconds_bucket{le="0.00025"} 0
                kv_latency_seconds_bucket{le="0.0005"} 0
                kv_latency_seconds_bucket{le="0.001"} 0
                kv_latency_seconds_bucket{le="0.0025"} 0
                kv_latency_seconds_bucket{le="0.005"} 0
                kv_latency_seconds_bucket{le="0.01"} 0
                kv_latency_seconds_bucket{le="0.025"} 0
                kv_latency_seconds_bucket{le="0.05"} 0
                kv_latency_seconds_bucket{le="0.1"} 0
                kv_latency_seconds_bucket{le="0.25"} 0
                kv_latency_seconds_bucket{le="0.5"} 1
                kv_latency_seconds_bucket{le="1"} 1
                kv_latency_seconds_bucket{le="2.5"} 2
                kv_latency_seconds_bucket{le="5"} 2
                kv_latency_seconds_bucket{le="10"} 2
                kv_latency_seconds_bucket{le="+Inf"} 3
                kv_latency_seconds_sum 14
                kv_latency_seconds_count 3
                # TYPE kv_pending gauge
                kv_pending 7.5
                # TYPE kv_queue gauge
                kv_queue{target="n3"} 4
                # TYPE kv_size_bytes summary
                kv_size_bytes_count 2
                kv_size_bytes_sum 150

                """)
    }

    @Test func namesAreMadeValidAndLabelValuesEscaped() {
        let registry = PrometheusRegistry()
        Gauge(label: "kv.queue-size", dimensions: [("peer.id", "a\"b\\c\nd"), ("__x", "1")], factory: registry)
            .record(1)
        Gauge(label: "9lives", factory: registry).record(Double.infinity)
        Gauge(label: "kv_nan", factory: registry).record(Double.nan)
        #expect(
            registry.render() == """
                # TYPE _lives gauge
                _lives +Inf
                # TYPE kv_nan gauge
                kv_nan NaN
                # TYPE kv_queue_size gauge
                kv_queue_size{peer_id="a\\"b\\\\c\\nd",x__x="1"} 1

                """)
    }

    @Test func helpTextComesBeforeTheTypeEscaped() {
        let registry = PrometheusRegistry(help: ["kv_total": "Things \\ done.\nTwice."])
        Counter(label: "kv_total", factory: registry).increment()
        Counter(label: "kv_other_total", factory: registry).increment()
        #expect(
            registry.render() == """
                # TYPE kv_other_total counter
                kv_other_total 1
                # HELP kv_total Things \\\\ done.\\nTwice.
                # TYPE kv_total counter
                kv_total 1

                """)
    }

    @Test func everyNodeMetricHasHelp() async throws {
        let registry = PrometheusRegistry(help: NodeStatistics.metricHelp)
        let statistics = NodeStatistics(nodeID: "n1", metricsFactory: registry)
        statistics.recordQueues(
            NodeQueues(hintQueueSizes: ["n2": 1], rangesDue: ["default": 0], keyspaces: [0: "default"]))
        statistics.recordPeers(phi: ["n2": 0], suspected: [], epoch: 1)
        let service = MeasuredService(FailingOnGets(), nodeID: "n1", factory: registry)
        _ = try await service.handle(
            .pingRequest(PingRequest(epoch: 0, clock: 0)), from: PeerIdentity(name: "c", role: .client))
        _ = try await service.handle(putBatch(["a"]), from: PeerIdentity(name: "c", role: .client))
        let lines = registry.render().split(separator: "\n")
        let types = lines.filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }
        let helped = Set(lines.filter { $0.hasPrefix("# HELP ") }.map { $0.split(separator: " ")[2] })
        #expect(types.filter { !helped.contains($0) } == [])
        // And no help for a metric that does not exist (a renamed one, say).
        #expect(Set(types.map(String.init)) == Set(NodeStatistics.metricHelp.keys))
    }

    @Test func oneSeriesPerNameAndDimensionsAndOneTypePerName() {
        let registry = PrometheusRegistry()
        Counter(label: "kv_total", factory: registry).increment(by: 2)
        // Made again: the same series goes on counting.
        Counter(label: "kv_total", factory: registry).increment(by: 3)
        // Another kind under a name already used: counted, never written.
        Gauge(label: "kv_total", dimensions: [("node", "n1")], factory: registry).record(99)
        #expect(registry.render() == "# TYPE kv_total counter\nkv_total 5\n")
    }

    @Test func aDestroyedMetricIsNoLongerWritten() {
        let registry = PrometheusRegistry()
        let kept = Counter(label: "kv_kept_total", factory: registry)
        kept.increment()
        let gone = Gauge(label: "kv_gone", factory: registry)
        gone.record(1)
        gone.destroy()
        #expect(registry.render() == "# TYPE kv_kept_total counter\nkv_kept_total 1\n")
        // The name is free again, for any kind.
        Counter(label: "kv_gone", factory: registry).increment(by: 4)
        #expect(registry.render().contains("# TYPE kv_gone counter\nkv_gone 4\n"))
    }

    @Test func aTimerWithNoDurationsHasEmptyBuckets() {
        let registry = PrometheusRegistry()
        _ = Metrics.Timer(label: "kv_idle_seconds", dimensions: [("node", "n1")], factory: registry)
        let text = registry.render()
        #expect(
            text.hasPrefix("# TYPE kv_idle_seconds histogram\nkv_idle_seconds_bucket{node=\"n1\",le=\"0.0001\"} 0\n"))
        #expect(
            text.hasSuffix(
                "kv_idle_seconds_bucket{node=\"n1\",le=\"+Inf\"} 0\nkv_idle_seconds_sum{node=\"n1\"} 0\nkv_idle_seconds_count{node=\"n1\"} 0\n"
            ))
        #expect(text.split(separator: "\n").count == 1 + PrometheusRegistry.timerBuckets.count + 3)
    }

    @Test func requestsAreCountedAndTimedPerTypeAndErrorsApart() async throws {
        let registry = PrometheusRegistry()
        let service = MeasuredService(FailingOnGets(), nodeID: "n1", factory: registry)
        let peer = PeerIdentity(name: "client", role: .client)
        for _ in 0..<2 {
            _ = try await service.handle(.pingRequest(PingRequest(epoch: 0, clock: 0)), from: peer)
        }
        // Taken without a task (from the event loop): measured the same way.
        #expect(service.mayAnswerWithoutTask(.pingRequest))
        let taken = service.answerWithoutTask(.pingRequest(PingRequest(epoch: 0, clock: 0)), from: peer) { _ in }
        #expect(taken)
        #expect(
            !service.answerWithoutTask(.getRequest(GetRequest(key: ByteBuffer(string: "k"), keyspace: 0)), from: peer) {
                _ in
            })
        await #expect(throws: RPCError.self) {
            try await service.handle(.getRequest(GetRequest(key: ByteBuffer(string: "k"), keyspace: 0)), from: peer)
        }
        let text = registry.render()
        #expect(text.contains("quorumkv_requests_total{node=\"n1\",type=\"pingRequest\",keyspace=\"none\"} 3\n"))
        #expect(
            text.contains(
                "quorumkv_requests_on_event_loop_total{node=\"n1\",type=\"pingRequest\",keyspace=\"none\"} 1\n"))
        #expect(
            text.contains(
                "quorumkv_requests_on_event_loop_total{node=\"n1\",type=\"getRequest\",keyspace=\"default\"} 0\n"))
        #expect(text.contains("quorumkv_request_errors_total{node=\"n1\",type=\"pingRequest\",keyspace=\"none\"} 0\n"))
        #expect(text.contains("quorumkv_requests_total{node=\"n1\",type=\"getRequest\",keyspace=\"default\"} 1\n"))
        #expect(
            text.contains("quorumkv_request_errors_total{node=\"n1\",type=\"getRequest\",keyspace=\"default\"} 1\n"))
        #expect(
            text.contains(
                "quorumkv_request_duration_seconds_count{node=\"n1\",type=\"pingRequest\",keyspace=\"none\"} 3\n"))
        #expect(
            text.contains(
                "quorumkv_request_duration_seconds_bucket{node=\"n1\",type=\"pingRequest\",keyspace=\"none\",le=\"+Inf\"} 3\n"
            ))
    }

    @Test func batchesCountTheirKeysAndTheKeysAnsweredWithAnError() async throws {
        let registry = PrometheusRegistry()
        let service = MeasuredService(FailingOnGets(), nodeID: "n1", factory: registry)
        let peer = PeerIdentity(name: "client", role: .client)
        _ = try await service.handle(putBatch(["a", "bad", "c"]), from: peer)
        _ = try await service.handle(putBatch(["d", "e"]), from: peer)
        // A batch refused whole: each of its keys is an error.
        let keys = [ByteBuffer(string: "x"), ByteBuffer(string: "y")]
        await #expect(throws: RPCError.self) {
            try await service.handle(.getBatchRequest(GetBatchRequest(keyspace: 0, keys: keys)), from: peer)
        }
        _ = try await service.handle(.pingRequest(PingRequest(epoch: 0, clock: 0)), from: peer)
        let text = registry.render()
        #expect(text.contains("quorumkv_requests_total{node=\"n1\",type=\"putBatchRequest\",keyspace=\"default\"} 2\n"))
        #expect(
            text.contains("quorumkv_batch_items_total{node=\"n1\",type=\"putBatchRequest\",keyspace=\"default\"} 5\n"))
        #expect(
            text.contains(
                "quorumkv_batch_item_errors_total{node=\"n1\",type=\"putBatchRequest\",keyspace=\"default\"} 1\n"))
        #expect(
            text.contains("quorumkv_batch_items_total{node=\"n1\",type=\"getBatchRequest\",keyspace=\"default\"} 2\n"))
        #expect(
            text.contains(
                "quorumkv_batch_item_errors_total{node=\"n1\",type=\"getBatchRequest\",keyspace=\"default\"} 2\n"))
        // A request that is not a batch has no such series.
        #expect(!text.contains("quorumkv_batch_items_total{node=\"n1\",type=\"pingRequest\""))
    }

    @Test func requestsAreCountedPerKeyspaceByNameAndUnknownIdsApart() async throws {
        let registry = PrometheusRegistry()
        // Keyspace `cache` is split in two parts (ids 7 and 8); id 9 is in no map.
        let names: [UInt32: String] = [7: "cache", 8: "cache"]
        let service = MeasuredService(FailingOnGets(), nodeID: "n1", factory: registry) { names[$0] }
        let peer = PeerIdentity(name: "client", role: .client)
        for keyspace: UInt32 in [7, 8, 7, 9, 9, 0] {
            _ = try? await service.handle(
                .getRequest(GetRequest(key: ByteBuffer(string: "k"), keyspace: keyspace)), from: peer)
        }
        for id in 1_000...1_100 as ClosedRange<UInt32> {
            _ = try? await service.handle(
                .getRequest(GetRequest(key: ByteBuffer(string: "k"), keyspace: id)), from: peer)
        }
        _ = try await service.handle(.pingRequest(PingRequest(epoch: 0, clock: 0)), from: peer)
        let text = registry.render()
        #expect(text.contains("quorumkv_requests_total{node=\"n1\",type=\"getRequest\",keyspace=\"cache\"} 3\n"))
        #expect(text.contains("quorumkv_requests_total{node=\"n1\",type=\"getRequest\",keyspace=\"default\"} 1\n"))
        #expect(text.contains("quorumkv_requests_total{node=\"n1\",type=\"getRequest\",keyspace=\"unknown\"} 103\n"))
        #expect(text.contains("quorumkv_requests_total{node=\"n1\",type=\"pingRequest\",keyspace=\"none\"} 1\n"))
        // A peer's ids do not grow the series: 4 label sets, whatever ids came.
        let series = text.split(separator: "\n").filter { $0.hasPrefix("quorumkv_requests_total{") }
        #expect(series.count == 4, "\(series)")
    }

    @Test func nodeStatisticsReportPeerHealthAndTheEpoch() {
        let registry = PrometheusRegistry()
        let statistics = NodeStatistics(nodeID: "n1", metricsFactory: registry)
        statistics.recordPeers(phi: ["n2": 0.4, "n3": 12.5], suspected: ["n3"], epoch: 7)
        var text = registry.render()
        #expect(text.contains("quorumkv_cluster_epoch{node=\"n1\"} 7\n"))
        #expect(text.contains("quorumkv_peer_up{node=\"n1\",peer=\"n2\"} 1\n"))
        #expect(text.contains("quorumkv_peer_up{node=\"n1\",peer=\"n3\"} 0\n"))
        #expect(text.contains("quorumkv_peer_phi{node=\"n1\",peer=\"n3\"} 12.5\n"))
        #expect(
            text.contains(
                "# TYPE quorumkv_hints_stored_total counter\nquorumkv_hints_stored_total{node=\"n1\",keyspace=\"default\"} 0\n"
            ))

        // n3 trusted again, n2 no longer watched (removed from the map): down, phi 0.
        statistics.recordPeers(phi: ["n3": 0.1], suspected: [], epoch: 9)
        statistics.hintsStored.add(2, keyspace: "default")
        text = registry.render()
        #expect(text.contains("quorumkv_cluster_epoch{node=\"n1\"} 9\n"))
        #expect(text.contains("quorumkv_peer_up{node=\"n1\",peer=\"n2\"} 0\n"))
        #expect(text.contains("quorumkv_peer_phi{node=\"n1\",peer=\"n2\"} 0\n"))
        #expect(text.contains("quorumkv_peer_up{node=\"n1\",peer=\"n3\"} 1\n"))
        #expect(text.contains("quorumkv_hints_stored_total{node=\"n1\",keyspace=\"default\"} 2\n"))
    }
}

/// Answers pings with a pong and refuses every other request; takes pings without a task too.
private struct FailingOnGets: RPCService {
    func handle(_ request: Message, from peer: PeerIdentity) async throws -> Message {
        if case .putBatchRequest(let batch) = request {
            // Each write applied but a key named `bad`.
            return .putBatchResponse(
                PutBatchResponse(
                    items: batch.puts.map {
                        String(buffer: $0.key) == "bad"
                            ? PutBatchItem(
                                outcome: nil, current: Version(hlc: 0, writer: 0),
                                error: BatchItemError(code: .notReplica, message: "not here"))
                            : PutBatchItem(outcome: .applied, current: $0.version, error: nil)
                    }, clock: 1))
        }
        guard case .pingRequest = request else { throw RPCError.remote(.internal, message: "refused") }
        return .pingResponse(PingResponse(epoch: 0, clock: 0, keys: 0, hintsQueued: 0, requestsInFlight: 0))
    }

    func mayAnswerWithoutTask(_ type: MessageType) -> Bool { type == .pingRequest }

    func answerWithoutTask(
        _ request: Message, from peer: PeerIdentity, reply: @escaping @Sendable (Result<Message, any Error>) -> Void
    ) -> Bool {
        guard case .pingRequest = request else { return false }
        reply(.success(.pingResponse(PingResponse(epoch: 0, clock: 0, keys: 0, hintsQueued: 0, requestsInFlight: 0))))
        return true
    }

    func handshakeState() -> (epoch: UInt64, clock: UInt64) { (0, 0) }
}

/// A `PutBatch` of `keys` in the default keyspace.
private func putBatch(_ keys: [String]) -> Message {
    .putBatchRequest(
        PutBatchRequest(
            keyspace: 0, epoch: 0,
            puts: keys.map {
                BatchPut(
                    key: ByteBuffer(string: $0), value: ByteBuffer(string: "v"), version: Version(hlc: 1, writer: 1),
                    tombstone: false, expiresAtMillis: nil)
            }))
}
