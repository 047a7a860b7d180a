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
        let sums = KeyspaceLabel.sum(of: { Int($0.approximateKeyCount()) }, over: store, in: Self.map)
        #expect(sums == ["default": 1, "users": 5, "cache": 4, "unknown": 6])
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
