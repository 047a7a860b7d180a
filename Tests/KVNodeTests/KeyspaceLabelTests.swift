import Foundation
import KVCore
import KVNode
import KVStorage
import Testing

/// The `keyspace` label of the per-keyspace gauges: the map's names, a split keyspace's parts added
/// up, `unknown` for what the map does not name.
@Suite struct KeyspaceLabelTests {
    /// `users` split at "n" (two parts), and `cache`.
    static let map: ClusterMap = {
        try! ServiceFixture.cluster
            .applying(
                .createKeyspace(
                    "users",
                    KeyspaceSettings(
                        placement: .simple(replicas: 2), splits: [KeyspaceSplit(lowKey: Array("n".utf8), ring: "")]))
            )
            .applying(.createKeyspace("cache", KeyspaceSettings(placement: .simple(replicas: 1))))
    }()

    @Test func figuresAddUpByNameAndWhatTheMapLacksIsUnknown() throws {
        let store = InMemoryStore()
        let parts = Self.map.parts(named: "users").map(\.id)
        let cache = try #require(Self.map.keyspace(named: "cache")).id
        #expect(parts.count == 2)
        let unnamed = (Self.map.keyspaces.map(\.id).max() ?? 0) + 5
        let keys: [(UInt32, Int)] = [(0, 1), (parts[0], 2), (parts[1], 3), (cache, 4), (unnamed, 6)]
        for (id, count) in keys {
            let view = try store.keyspace(id)
            for index in 0..<count {
                _ = try view.apply(
                    key: Array("key-\(index)".utf8),
                    record: StoredRecord(version: Version(hlc: 1, writer: 1), tombstone: false, value: [1]))
            }
        }
        let byID = store.everyKeyspace { Int($0.approximateKeyCount()) }
        #expect(byID == Dictionary(uniqueKeysWithValues: keys))
        #expect(KeyspaceLabel.byLabel(byID, in: Self.map) == ["default": 1, "users": 5, "cache": 4, "unknown": 6])
        #expect(KeyspaceLabel.name(of: 0, in: Self.map) == "default")
        #expect(KeyspaceLabel.name(of: unnamed, in: Self.map) == nil)
        #expect(
            KeyspaceLabel.live(in: Self.map) == [0: "default", parts[0]: "users", parts[1]: "users", cache: "cache"])
        let dropped = try Self.map.applying(.dropKeyspace("cache"))
        #expect(KeyspaceLabel.live(in: dropped)[cache] == nil, "a dropped keyspace has no passes to report")
        #expect(KeyspaceLabel.name(of: cache, in: dropped) == "cache", "its data keeps its name until freed")
    }
}

/// `Admin` stats' range comparison times over several keyspaces.
@Suite struct KeyspaceComparisonTests {
    @Test func aRangeSeveralKeyspacesReplicateTakesTheOldestTimeAndNeverWins() {
        func span(_ end: UInt64) -> TokenRangeSpan { TokenRangeSpan(start: end - 10, end: end) }
        let main: [(range: TokenRangeSpan, millis: UInt64?)] = [(span(10), 5), (span(20), nil), (span(30), 9)]
        let other: [(range: TokenRangeSpan, millis: UInt64?)] = [(span(30), 7), (span(10), 8), (span(40), nil)]
        let third: [(range: TokenRangeSpan, millis: UInt64?)] = [(span(30), nil), (span(50), 1)]
        let merged = AntiEntropies.oldestComparisons([main, other])
        #expect(merged.map(\.range) == [span(10), span(20), span(30), span(40)])
        #expect(merged.map(\.millis) == [5, nil, 7, nil])
        let withThird = AntiEntropies.oldestComparisons([main, other, third])
        #expect(withThird.map(\.millis) == [5, nil, nil, nil, 1], "one keyspace never compared range 30")
        #expect(AntiEntropies.oldestComparisons([]).isEmpty)
        #expect(AntiEntropies.oldestComparisons([main]).map(\.millis) == [5, nil, 9])
    }
}

/// The under-replication gauges follow each keyspace's own ring and N, not the main ring alone.
@Suite struct KeyspaceUnderReplicationTests {
    /// n1–n3 on the main ring (the default keyspace, N=3), n4–n6 on ring `east`; `users` keeps keys
    /// below "n" on the main ring and the others on `east`, `events` lives on `east` with N=2.
    static let map: ClusterMap = {
        // Each ring's tokens allocated on their own, as joins to that ring would.
        let nodes = [("", ["n1", "n2", "n3"]), ("east", ["n4", "n5", "n6"])].flatMap { ring, ids in
            TokenAllocator.allocate(nodeIDs: ids).map {
                ClusterMap.Node(id: $0.id, address: "\($0.id).example:7411", tokens: $0.tokens, ring: ring)
            }
        }
        return try! ClusterMap(clusterID: "test", epoch: 1, replicationFactor: 3, nodes: nodes)
            .applying(
                .createKeyspace(
                    "users", KeyspaceSettings(splits: [KeyspaceSplit(lowKey: Array("n".utf8), ring: "east")]))
            )
            .applying(.createKeyspace("events", KeyspaceSettings(placement: .simple(replicas: 2), ring: "east")))
    }()

    static func read(suspected: Set<String>, keys: [UInt32: UInt64] = [:]) throws -> NodeHealthSample {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("health-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        return NodeHealth.read(
            dataDirectory: folder.path, hintAges: [:], certificateNotAfterSeconds: nil, map: map, suspected: suspected,
            keys: ("n4", keys))
    }

    @Test func aDownNodeOfAnotherRingShowsInItsKeyspacesOnly() throws {
        let users = Self.map.parts(named: "users").map(\.id)
        let events = try #require(Self.map.keyspace(named: "events")).id
        let healthy = try Self.read(suspected: [])
        #expect(healthy.underReplicatedRanges == ["default": 0, "users": 0, "events": 0])

        // n5 (ring east) down: the default keyspace is whole; every range of `users`' east part (N=3 of
        // 3 nodes) and some of `events`' (N=2) lack a replica.
        let eastRing = try Self.map.ring(of: #require(Self.map.keyspace(id: users[1])))
        let down = try Self.read(suspected: ["n5"], keys: [0: 0, users[0]: 0, users[1]: 300, events: 200])
        #expect(down.underReplicatedRanges["default"] == 0)
        #expect(down.underReplicatedRanges["users"] == eastRing.underReplicatedRanges { $0 != "n5" })
        #expect(down.underReplicatedRanges["users"] == eastRing.underReplicatedRanges { _ in false })
        let eventsRanges = try #require(down.underReplicatedRanges["events"])
        #expect(eventsRanges > 0 && eventsRanges < eastRing.underReplicatedRanges { _ in false })
        // n4 holds every key of the east part (3 replicas of 3 nodes), all under-replicated.
        #expect(down.underReplicatedKeys["users"] == 300)
        let eventsKeys = try #require(down.underReplicatedKeys["events"])
        #expect(eventsKeys > 0 && eventsKeys < 300, "\(eventsKeys)")
        #expect(down.underReplicatedKeys["default"] == nil, "n4 replicates nothing of the main ring")
        #expect(down.keysByKeyspace == ["default": 0, "users": 300, "events": 200])
    }
}
