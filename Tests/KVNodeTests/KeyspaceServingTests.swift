import InMemoryLogging
import KVCore
import KVNode
import KVRPC
import KVStorage
import KVTLS
import KVWire
import Logging
import Metrics
import MetricsTestKit
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A node serves each keyspace of its map from that keyspace's store view: the same key bytes in two
/// keyspaces never meet, hints remember their keyspace, and a keyspace the map does not have (or
/// dropped) is refused naming it.
@Suite struct KeyspaceServingTests {
    static let withCache: ClusterMap = {
        // n1 replicates everything in `default` (N=2 of 3 nodes); `cache` keeps one copy a key.
        try! ServiceFixture.cluster.applying(
            .createKeyspace("cache", KeyspaceSettings(placement: .simple(replicas: 1))))
    }()

    /// The pool every service of the suite runs its store calls on (it lives as long as the process).
    static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        return pool
    }()

    /// A service of node n1 over `store` following `map` (or `membership`, which holds it), with its
    /// keyspaces.
    static func service(
        _ map: ClusterMap, store: InMemoryStore, membership: Membership? = nil,
        statistics: NodeStatistics = NodeStatistics(nodeID: "n1", metricsFactory: TestMetrics())
    ) throws -> (ReplicaService, NodeKeyspaces) {
        let replica = Replica(nodeID: "n1", store: store, wallMillis: { 1_000 })
        let keyspaces = NodeKeyspaces(root: store, replica: replica)
        let logger = Logger(label: "test") { _ in InMemoryLogHandler() }
        let ring = try map.ring()
        let marker = RepairMarker(
            ring: { ring }, store: store, pool: pool, statistics: statistics, wallMillis: { 1_000 }, logger: logger)
        let service = ReplicaService(
            nodeID: "n1", membership: try membership ?? Membership(initial: map, store: store, votes: TestMapVotes()),
            store: store,
            hints: store, repairMarker: marker, hintQueueMax: 10, pool: pool, statistics: statistics,
            merkle: store, streaming: store, replica: replica, keyspaces: keyspaces, wallMillis: { 1_000 })
        return (service, keyspaces)
    }

    /// A service over a fresh store following `withCache`, the metrics its statistics report to, and
    /// the id of `cache`.
    static func measuredService() throws -> (
        service: ReplicaService, store: InMemoryStore, metrics: TestMetrics, statistics: NodeStatistics, cache: UInt32
    ) {
        let store = InMemoryStore()
        let metrics = TestMetrics()
        let statistics = NodeStatistics(nodeID: "n1", metricsFactory: metrics)
        let (service, _) = try service(withCache, store: store, statistics: statistics)
        return (service, store, metrics, statistics, try #require(withCache.keyspace(named: "cache")).id)
    }

    static func put(_ service: ReplicaService, _ key: String, _ value: String, keyspace: UInt32) async throws {
        let answer = try await service.handle(
            .putRequest(
                PutRequest(
                    key: ByteBuffer(string: key), value: ByteBuffer(string: value), version: Version(hlc: 5, writer: 1),
                    tombstone: false, origin: .client, epoch: 0, expiresAtMillis: nil, keyspace: keyspace)),
            from: ServiceFixture.client)
        guard case .putResponse(let response) = answer, response.outcome == .applied else {
            Issue.record("put answered \(answer)")
            return
        }
    }

    static func get(_ service: ReplicaService, _ key: String, keyspace: UInt32) async throws -> String? {
        let answer = try await service.handle(
            .getRequest(GetRequest(key: ByteBuffer(string: key), keyspace: keyspace)), from: ServiceFixture.client)
        guard case .getResponse(let response) = answer else { return nil }
        return response.record.map { String(buffer: $0.value) }
    }

    @Test func theSameKeyInTwoKeyspacesHoldsTwoValues() async throws {
        let store = InMemoryStore()
        let (service, _) = try Self.service(Self.withCache, store: store)
        let cache = try #require(Self.withCache.keyspace(named: "cache")).id
        try await Self.put(service, "user:42", "in default", keyspace: 0)
        try await Self.put(service, "user:42", "in cache", keyspace: cache)
        #expect(try await Self.get(service, "user:42", keyspace: 0) == "in default")
        #expect(try await Self.get(service, "user:42", keyspace: cache) == "in cache")
        // In the store: one record in each keyspace's view.
        #expect(
            try store.get(key: Array("user:42".utf8)).map { String(decoding: $0.value, as: UTF8.self) } == "in default")
        #expect(
            try store.keyspace(cache).get(key: Array("user:42".utf8)).map { String(decoding: $0.value, as: UTF8.self) }
                == "in cache")
    }

    /// `kvctl status` and pings count the keys of every keyspace, not the default's alone.
    @Test func theNodesKeyCountIsEveryKeyspaces() async throws {
        let store = InMemoryStore()
        let (service, _) = try Self.service(Self.withCache, store: store)
        let cache = try #require(Self.withCache.keyspace(named: "cache")).id
        try await Self.put(service, "a", "1", keyspace: 0)
        for key in ["a", "b", "c"] { try await Self.put(service, key, "2", keyspace: cache) }
        let stats = try await service.handle(
            .adminRequest(AdminRequest(command: .stats, arguments: [])), from: ServiceFixture.admin)
        guard case .nodeStats(let counters) = stats else {
            Issue.record("Admin stats answered \(stats.type)")
            return
        }
        #expect(counters.keys == 4)
        #expect(
            counters.keyspaceKeys == [KeyspaceKeys(keyspace: 0, keys: 1), KeyspaceKeys(keyspace: cache, keys: 3)],
            "and each keyspace's, by id")
        let pong = try await service.handle(
            .pingRequest(PingRequest(epoch: 0, clock: 0)), from: PeerIdentity(name: "c", role: .client))
        guard case .pingResponse(let response) = pong else {
            Issue.record("Ping answered \(pong.type)")
            return
        }
        #expect(response.keys == 4)
    }

    /// `kvctl status`'s ranges due and the anti-entropy gauges count every keyspace's marks, each
    /// keyspace under its name, and the node's last whole pass is the oldest of its keyspaces'.
    @Test func theNodesAntiEntropyFiguresAreEveryKeyspaces() async throws {
        let (service, store, metrics, statistics, cache) = try Self.measuredService()
        let ranges = try Self.withCache.ring().vnodeRanges(replicatedBy: "n1")
        try store.markDue(replica: "n2", range: ranges[0], atMillis: 1)
        for range in ranges.prefix(3) { try store.keyspace(cache).markDue(replica: "n3", range: range, atMillis: 1) }
        statistics.recordFullPass(keyspace: 0, atMillis: 5_000)
        func stats() async throws -> NodeStats? {
            let answer = try await service.handle(
                .adminRequest(AdminRequest(command: .stats, arguments: [])), from: ServiceFixture.admin)
            guard case .nodeStats(let counters) = answer else { return nil }
            return counters
        }
        func due(_ keyspace: String) throws -> Double? {
            try metrics.expectGauge("quorumkv_anti_entropy_ranges_due", [("node", "n1"), ("keyspace", keyspace)])
                .lastValue
        }
        func lastPass(_ keyspace: String) throws -> Double? {
            try metrics.expectGauge(
                "quorumkv_anti_entropy_last_full_pass_timestamp_seconds", [("node", "n1"), ("keyspace", keyspace)]
            ).lastValue
        }
        let before = try #require(try await stats())
        #expect(before.antiEntropyRangesDue == 4)
        #expect(before.antiEntropyLastFullPassMillis == 0, "cache never passed whole")
        #expect(try due("default") == 1)
        #expect(try due("cache") == 3)
        #expect(try lastPass("default") == 5)
        #expect(try lastPass("cache") == 0)

        try store.keyspace(cache).clearDue(replica: "n3", range: ranges[0])
        statistics.recordFullPass(keyspace: cache, atMillis: 4_000)
        let after = try #require(try await stats())
        #expect(after.antiEntropyRangesDue == 3)
        #expect(after.antiEntropyLastFullPassMillis == 4_000)
        #expect(try due("cache") == 2)
        #expect(try lastPass("cache") == 4)
    }

    /// Read repairs count under the keyspace they repair, and in `Admin` stats all together.
    @Test func readRepairsCountUnderTheirKeyspace() async throws {
        let (service, _, metrics, statistics, cache) = try Self.measuredService()
        for (key, keyspace) in [("a", UInt32(0)), ("b", cache), ("c", cache)] {
            _ = try await service.handle(
                .putRequest(
                    PutRequest(
                        key: ByteBuffer(string: key), value: ByteBuffer(string: "v"),
                        version: Version(hlc: 5, writer: 1), tombstone: false, origin: .readRepair, epoch: 0,
                        expiresAtMillis: nil, keyspace: keyspace)),
                from: ServiceFixture.client)
        }
        func repaired(_ keyspace: String) throws -> Int64? {
            try metrics.expectCounter(
                "quorumkv_read_repairs_applied_total", [("node", "n1"), ("keyspace", keyspace)]
            ).totalValue
        }
        #expect(try repaired("default") == 1)
        #expect(try repaired("cache") == 2)
        #expect(statistics.readRepairsApplied.load(ordering: .relaxed) == 3)
    }

    /// A hint keeps its keyspace, and is counted under its name (`quorumkv_hints_stored_total{keyspace}`).
    @Test func aHintRemembersItsKeyspace() async throws {
        let (service, store, metrics, statistics, cache) = try Self.measuredService()
        let answer = try await service.handle(
            .hintRequest(
                HintRequest(
                    target: "n2",
                    record: Record(
                        key: ByteBuffer(string: "k"), version: Version(hlc: 9, writer: 1), tombstone: false,
                        value: ByteBuffer(string: "v"), expiresAtMillis: nil), keyspace: cache)),
            from: ServiceFixture.client)
        guard case .hintResponse(let response) = answer else {
            Issue.record("hint answered \(answer)")
            return
        }
        #expect(response.outcome == .stored)
        let held = try store.hints(for: "n2", limit: 10)
        #expect(held.map(\.hint.keyspace) == [cache])
        #expect(
            try metrics.expectCounter("quorumkv_hints_stored_total", [("node", "n1"), ("keyspace", "cache")]).totalValue
                == 1)
        #expect(
            try metrics.expectCounter("quorumkv_hints_stored_total", [("node", "n1"), ("keyspace", "default")])
                .totalValue == 0)
        #expect(statistics.hintsStored.load(ordering: .relaxed) == 1)
    }

    @Test func anUnknownKeyspaceIsRefusedNamingIt() async throws {
        let (service, _) = try Self.service(Self.withCache, store: InMemoryStore())
        await #expect {
            _ = try await Self.get(service, "k", keyspace: 9)
        } throws: { error in
            guard let error = error as? RPCError else { return false }
            return error.remoteCode == .notReplica && "\(error)".contains("keyspace 9")
        }
    }

    @Test func aDroppedKeyspaceIsDeletedAndRefused() async throws {
        let store = InMemoryStore()
        let cache = try #require(Self.withCache.keyspace(named: "cache")).id
        do {
            let (service, _) = try Self.service(Self.withCache, store: store)
            try await Self.put(service, "k", "cached", keyspace: cache)
        }
        #expect(store.storedKeyspaces() == [cache])
        let dropped = try Self.withCache.applying(.dropKeyspace("cache"))
        let (service, keyspaces) = try Self.service(dropped, store: store)
        #expect(try keyspaces.dropKeyspacesGone(in: dropped) == [cache])
        #expect(store.storedKeyspaces().isEmpty)
        // A new view of the id holds nothing of the dropped keyspace.
        #expect(try store.keyspace(cache).get(key: Array("k".utf8)) == nil)
        await #expect {
            try await Self.put(service, "k", "again", keyspace: cache)
        } throws: { error in
            (error as? RPCError)?.remoteCode == .notReplica
        }
    }

    /// A dropped keyspace's write group (and the replica it holds) is let go; another keyspace's
    /// stays, and a write after the drop finds a new group.
    @Test func aDroppedKeyspacesWriteGroupIsLetGo() async throws {
        let cache = try #require(Self.withCache.keyspace(named: "cache")).id
        let (service, _) = try Self.service(Self.withCache, store: InMemoryStore())
        try await Self.put(service, "k", "cached", keyspace: cache)
        try await Self.put(service, "k", "main", keyspace: 0)
        #expect(service.storageQueue.writeGroupKeyspaces == [0, cache])
        service.storageQueue.forget(keyspaces: [cache])
        #expect(service.storageQueue.writeGroupKeyspaces == [0])
        try await Self.put(service, "k", "again", keyspace: cache)
        #expect(service.storageQueue.writeGroupKeyspaces == [0, cache])
    }

    @Test func aKeyOfAnotherPartIsRefused() async throws {
        // `users` split at "n", both parts on the main ring (n1 replicates both).
        let map = try ServiceFixture.cluster.applying(
            .createKeyspace(
                "users",
                KeyspaceSettings(
                    placement: .simple(replicas: 2), splits: [KeyspaceSplit(lowKey: Array("n".utf8), ring: "")])))
        let parts = map.parts(named: "users")
        let (service, _) = try Self.service(map, store: InMemoryStore())
        try await Self.put(service, "alice", "a", keyspace: parts[0].id)
        try await Self.put(service, "zoe", "z", keyspace: parts[1].id)
        for (key, wrong) in [("alice", parts[1].id), ("zoe", parts[0].id)] {
            await #expect {
                try await Self.put(service, key, "misplaced", keyspace: wrong)
            } throws: { error in
                (error as? RPCError)?.remoteCode == .notReplica && "\(error)".contains("belongs to part")
            }
        }
        #expect(try await Self.get(service, "zoe", keyspace: parts[1].id) == "z")
    }
}
