import KVCore
import KVRPC
import Testing

@testable import KVNode
@testable import KVStorage

/// The byte counters of `NodeHealth` (network per peer, RocksDB): Prometheus counters that follow the
/// totals each health sample reads.
struct NodeHealthCountersTests {
    static func sample(traffic: [String: PeerTraffic.Totals], written: UInt64) -> NodeHealthSample {
        var engine = EngineTraffic()
        engine.writtenBytes = written
        engine.compactionReadBytes = written / 2
        engine.blockCacheHits = written / 10
        engine.bloomFilterSkips = written / 5
        return NodeHealthSample(
            diskUsedBytes: 0, hintOldestAgeSeconds: [:], healthyNodes: 1, underReplicatedRanges: [:],
            engine: EngineFigures(
                pendingCompactionBytes: 0, liveTableBytes: 0, memtableBytes: 0, blockCacheBytes: written / 4,
                blockCacheCapacityBytes: 1 << 20, traffic: engine),
            peerTraffic: traffic)
    }

    @Test func countersAdvanceToTheTotalsAndNeverGoBack() {
        let registry = PrometheusRegistry(help: NodeHealth.metricHelp)
        let health = NodeHealth(nodeID: "n1", metricsFactory: registry)
        health.record(Self.sample(traffic: ["n2": .init(sent: 100, received: 40)], written: 1000))
        health.record(
            Self.sample(
                traffic: ["n2": .init(sent: 150, received: 40), "client": .init(sent: 7, received: 9)], written: 1600))
        var text = registry.render()
        #expect(text.contains("# TYPE quorumkv_peer_sent_bytes_total counter"))
        #expect(text.contains("quorumkv_peer_sent_bytes_total{node=\"n1\",peer=\"n2\"} 150"), "\(text)")
        #expect(text.contains("quorumkv_peer_received_bytes_total{node=\"n1\",peer=\"n2\"} 40"))
        #expect(text.contains("quorumkv_peer_received_bytes_total{node=\"n1\",peer=\"client\"} 9"))
        #expect(text.contains("# TYPE quorumkv_rocksdb_written_bytes_total counter"))
        #expect(text.contains("quorumkv_rocksdb_written_bytes_total{node=\"n1\"} 1600"))
        #expect(text.contains("quorumkv_rocksdb_compaction_read_bytes_total{node=\"n1\"} 800"))
        #expect(text.contains("quorumkv_rocksdb_block_cache_hits_total{node=\"n1\"} 160"), "\(text)")
        #expect(text.contains("quorumkv_rocksdb_bloom_filter_skips_total{node=\"n1\"} 320"))
        #expect(text.contains("quorumkv_rocksdb_block_cache_bytes{node=\"n1\"} 400"))
        #expect(text.contains("quorumkv_rocksdb_block_cache_capacity_bytes{node=\"n1\"} 1048576"))
        // A total that went down (its source restarted) adds nothing; growth after it counts again.
        health.record(Self.sample(traffic: ["n2": .init(sent: 20, received: 40)], written: 100))
        health.record(Self.sample(traffic: ["n2": .init(sent: 30, received: 40)], written: 150))
        text = registry.render()
        #expect(text.contains("quorumkv_peer_sent_bytes_total{node=\"n1\",peer=\"n2\"} 160"), "\(text)")
        #expect(text.contains("quorumkv_rocksdb_written_bytes_total{node=\"n1\"} 1650"))
    }
}
