import InMemoryLogging
import KVCore
import KVNode
import KVStorage
import KVTLS
import KVWire
import Logging
import Metrics
import MetricsTestKit
import NIOCore
import NIOPosix
import Testing

/// A `ReplicaService` in process, over an `InMemoryStore`, with its counters in a `TestMetrics` and its
/// logs in memory: requests go straight to `handle`, without TLS or sockets.
final class ServiceFixture: Sendable {
    static let cluster = ClusterMap(
        clusterID: "test", epoch: 1, replicationFactor: 2,
        nodes: [
            ClusterMap.Node(id: "n1", address: "127.0.0.1:1", tokens: [1 << 62, 3 << 62]),
            ClusterMap.Node(id: "n2", address: "127.0.0.1:2", tokens: [2 << 62]),
            ClusterMap.Node(id: "n3", address: "127.0.0.1:3", tokens: [.max]),
        ])
    static let client = PeerIdentity(name: "client", role: .client)
    static let admin = PeerIdentity(name: "admin", role: .admin)

    let store: InMemoryStore
    let metrics: TestMetrics
    let logs: InMemoryLogHandler
    let pool: NIOThreadPool
    let ring: Ring
    let statistics: NodeStatistics
    let marker: RepairMarker
    let service: ReplicaService

    init(hintQueueMax: Int = 1) throws {
        let store = InMemoryStore()
        let metrics = TestMetrics()
        let logs = InMemoryLogHandler()
        let pool = NIOThreadPool(numberOfThreads: 2)
        let ring = try Self.cluster.ring()
        pool.start()
        let logger = Logger(label: "test") { _ in logs }
        let statistics = withMetricsFactory(metrics) { NodeStatistics(nodeID: "n1") }
        let marker = RepairMarker(
            ring: ring, store: store, pool: pool, statistics: statistics, wallMillis: { 1_000 }, logger: logger)
        self.store = store
        self.metrics = metrics
        self.logs = logs
        self.pool = pool
        self.ring = ring
        self.statistics = statistics
        self.marker = marker
        self.service = ReplicaService(
            nodeID: "n1", membership: try Membership(initial: Self.cluster, store: store), store: store, hints: store,
            repairMarker: marker,
            hintQueueMax: hintQueueMax, pool: pool, statistics: statistics, wallMillis: { 1_000 })
    }

    func shutdown() async throws {
        store.close()
        try await pool.shutdownGracefully()
    }

    func hint(_ target: String, _ key: String, hlc: UInt64) async throws -> HintOutcome? {
        let answer = try await service.handle(
            .hintRequest(
                HintRequest(
                    target: target,
                    record: Record(
                        key: ByteBuffer(string: key), version: Version(hlc: hlc, writer: 7), tombstone: false,
                        value: ByteBuffer(string: "v")))),
            from: Self.client)
        guard case .hintResponse(let response) = answer else { return nil }
        return response.outcome
    }

    func put(_ key: String, hlc: UInt64, origin: PutOrigin) async throws -> PutOutcome? {
        let answer = try await service.handle(
            .putRequest(
                PutRequest(
                    key: ByteBuffer(string: key), value: ByteBuffer(string: "v\(hlc)"),
                    version: Version(hlc: hlc, writer: 7), tombstone: false, origin: origin)),
            from: Self.client)
        guard case .putResponse(let response) = answer else { return nil }
        return response.outcome
    }

    /// `Admin` stats as a dictionary.
    func adminStats() async throws -> [String: String] {
        let answer = try await service.handle(
            .adminRequest(AdminRequest(command: .stats, arguments: [])), from: Self.admin)
        guard case .adminResponse(let response) = answer else { return [:] }
        return Dictionary(response.results.map { ($0.name, $0.value) }, uniquingKeysWith: { $1 })
    }

    func counter(_ label: String, _ dimensions: [(String, String)] = []) -> Int64 {
        metrics.counterTotal(label: label, dimensions: [("node", "n1")] + dimensions)
    }

    /// Log entries at `notice` or above with this message.
    func notices(_ message: String) -> [InMemoryLogHandler.Entry] {
        logs.entries.filter { $0.level >= .notice && $0.message.description == message }
    }
}

/// Two keys in the same vnode range of `ServiceFixture.cluster`, and one in another.
private func keys(inRangeOf ring: Ring) -> (first: String, sameRange: String, otherRange: String) {
    let first = "key-0"
    let range = ring.range(containing: Token(key: Array(first.utf8)))
    var sameRange: String?
    var otherRange: String?
    for index in 1..<10_000 where sameRange == nil || otherRange == nil {
        let key = "key-\(index)"
        if range.contains(Token(key: Array(key.utf8))) {
            sameRange = sameRange ?? key
        } else {
            otherRange = otherRange ?? key
        }
    }
    return (first, sameRange!, otherRange!)
}

@Suite(.timeLimit(.minutes(1)))
struct ReplicaServiceTests {
    @Test func refusedHintMarksItsRangeOnceAndCountsIt() async throws {
        let fixture = try ServiceFixture(hintQueueMax: 1)
        let (first, sameRange, otherRange) = keys(inRangeOf: fixture.ring)

        #expect(try await fixture.hint("n2", first, hlc: 1) == .stored)
        #expect(fixture.store.rangesDue().isEmpty, "a stored hint marks nothing")
        // n2's queue is full: refused, counted, and its range is due on n2.
        #expect(try await fixture.hint("n2", first, hlc: 2) == .refused)
        let range = fixture.ring.range(containing: Token(key: Array(first.utf8)))
        #expect(fixture.store.rangesDue() == [RepairMark(replica: "n2", range: range, firstMarkedMillis: 1_000)])
        // Another key of the same range: refused and counted again, but the range is marked once.
        #expect(try await fixture.hint("n2", sameRange, hlc: 3) == .refused)
        #expect(fixture.store.rangesDue().count == 1)
        // A key of another range is another mark.
        #expect(try await fixture.hint("n2", otherRange, hlc: 4) == .refused)
        #expect(fixture.store.rangesDue().count == 2)
        #expect(fixture.store.rangesDue().allSatisfy { $0.replica == "n2" })
        // n3 has its own queue.
        #expect(try await fixture.hint("n3", first, hlc: 5) == .stored)

        #expect(fixture.counter("quorumkv_hints_stored_total") == 2)
        #expect(fixture.counter("quorumkv_hints_refused_total") == 3)
        #expect(fixture.counter("quorumkv_anti_entropy_ranges_marked_total", [("reason", "hint_refused")]) == 2)
        #expect(fixture.counter("quorumkv_anti_entropy_mark_failures_total") == 0)
        let notices = fixture.notices("range marked for anti-entropy")
        #expect(notices.count == 2, "logged once per range")
        #expect(notices.first?.metadata["peer.node_id"] == "n2")
        #expect(notices.first?.metadata["repair.reason"] == "hint_refused")

        let stats = try await fixture.adminStats()
        #expect(stats["hints_stored"] == "2")
        #expect(stats["hints_refused"] == "3")
        #expect(stats["anti_entropy_ranges_due"] == "2")
        #expect(stats["anti_entropy_ranges_marked_hint_refused"] == "2")
        #expect(stats["hints_queued.n2"] == "1")
        #expect(stats["hints_queued.n3"] == "1")
        // Reading the queues set the gauges.
        #expect(
            try fixture.metrics.expectGauge("quorumkv_hint_queue_size", [("node", "n1"), ("target", "n2")]).lastValue
                == 1)
        #expect(try fixture.metrics.expectGauge("quorumkv_anti_entropy_ranges_due", [("node", "n1")]).lastValue == 2)
        try await fixture.shutdown()
    }

    @Test func expiredHintMarksItsRangeWithItsOwnReason() async throws {
        let fixture = try ServiceFixture()
        await fixture.marker.hintExpired(target: "n3", key: Array("gone".utf8))
        await fixture.marker.hintExpired(target: "n3", key: Array("gone".utf8))
        let range = fixture.ring.range(containing: Token(key: Array("gone".utf8)))
        #expect(fixture.store.rangesDue() == [RepairMark(replica: "n3", range: range, firstMarkedMillis: 1_000)])
        #expect(fixture.marker.rangesDueCount == 1)
        #expect(fixture.counter("quorumkv_anti_entropy_ranges_marked_total", [("reason", "hint_expired")]) == 1)
        #expect(fixture.counter("quorumkv_anti_entropy_ranges_marked_total", [("reason", "hint_refused")]) == 0)
        #expect(fixture.notices("range marked for anti-entropy").first?.metadata["repair.reason"] == "hint_expired")
        try await fixture.shutdown()
    }

    @Test func markThatCannotBeWrittenIsLoggedAndCounted() async throws {
        let fixture = try ServiceFixture()
        fixture.store.close()
        await fixture.marker.hintRefused(target: "n2", key: Array("k".utf8))
        #expect(fixture.counter("quorumkv_anti_entropy_mark_failures_total") == 1)
        #expect(fixture.counter("quorumkv_anti_entropy_ranges_marked_total") == 0)
        #expect(fixture.logs.entries.contains { $0.level == .warning })
        try await fixture.shutdown()
    }

    @Test func readRepairsAreCountedAndThoseThatChangedDataApart() async throws {
        let fixture = try ServiceFixture()
        // A client's write is not a repair.
        #expect(try await fixture.put("k", hlc: 10, origin: .client) == .applied)
        #expect(fixture.counter("quorumkv_read_repairs_received_total") == 0)
        // A repair with a newer version changes the replica.
        #expect(try await fixture.put("k", hlc: 20, origin: .readRepair) == .applied)
        // The same version again, and an older one: received, but nothing changed.
        #expect(try await fixture.put("k", hlc: 20, origin: .readRepair) == .applied)
        #expect(try await fixture.put("k", hlc: 15, origin: .readRepair) == .superseded)
        // A repair of a key the replica never saw changes it too.
        #expect(try await fixture.put("new", hlc: 5, origin: .readRepair) == .applied)
        // Hint replays are neither.
        #expect(try await fixture.put("k", hlc: 30, origin: .hintReplay) == .applied)

        #expect(fixture.counter("quorumkv_read_repairs_received_total") == 4)
        #expect(fixture.counter("quorumkv_read_repairs_applied_total") == 2)
        let stats = try await fixture.adminStats()
        #expect(stats["read_repairs_received"] == "4")
        #expect(stats["read_repairs_applied"] == "2")
        #expect(stats["anti_entropy_ranges_due"] == "0")
        try await fixture.shutdown()
    }
}
