import KVCore
import Testing

/// Zones and placement rules in the cluster map (issue 20): changing the rule streams ranges as
/// changing N does, and joins and replacements carry zones.
struct ZonedMapTests {
    /// Six nodes in zones a, b, c (n1 and n4 in a, n2 and n5 in b, n3 and n6 in c), N = 3 `simple`.
    static func cluster() -> ClusterMap {
        var map = RangeMovementTests.cluster(6)
        for index in map.nodes.indices {
            map.nodes[index].zone = ["a", "b", "c"][index % 3]
        }
        return map
    }

    /// The zones of each vnode range's replicas on `ring` (a vnode token is the last token of its range).
    static func replicaZones(_ ring: Ring, _ map: ClusterMap) -> [[String]] {
        ring.tokens.map { token in
            ring.preferenceList(for: Token(token)).map { map.node($0)?.zone ?? "?" }
        }
    }

    @Test func spreadingOverZonesStreamsTheRangesThatMoveAndThenEveryRangeHasAllThreeZones() throws {
        let base = Self.cluster()
        // With six nodes over three zones and `simple:3`, some ranges have two replicas in one zone.
        #expect(Self.replicaZones(try base.ring(), base).contains { Set($0).count < 3 })
        let map = try base.applying(.setPlacement(.spread(replicas: 3, perZone: 1)))
        #expect(map.isChanging && map.pendingPlacement == .spread(replicas: 3, perZone: 1))
        #expect(map.placement == .simple(replicas: 3) && map.replicationFactor == 3)
        #expect(map.pendingReplicationFactor == 3)
        #expect(!map.streaming.isEmpty)
        #expect(map.changeSummary.contains("placement simple:3 → spread:3/1"))
        // Each receiver gets only ranges it replicates under the new rule, from the old replicas.
        let next = try map.nextRing()
        for movement in map.movements() {
            for receiver in movement.receivers {
                #expect(next.preferenceList(for: Token(movement.range.end)).contains(receiver))
                #expect(!movement.before.contains(receiver))
            }
        }
        let done = try RangeMovementTests.finish(map)
        #expect(done.placement == .spread(replicas: 3, perZone: 1) && done.pendingPlacement == nil)
        #expect(Self.replicaZones(try done.ring(), done).allSatisfy { Set($0).count == 3 })
        #expect(throws: ClusterChangeError.self) { try done.applying(.setPlacement(.spread(replicas: 3, perZone: 1))) }
    }

    @Test func nOfASpreadRuleChangesWithItsCapAndAZonesRuleSaysNThroughItsCounts() throws {
        let spread = try RangeMovementTests.finish(
            try Self.cluster().applying(.setPlacement(.spread(replicas: 3, perZone: 1))))
        let raised = try spread.applying(.setReplicationFactor(4))
        #expect(raised.pendingPlacement == .spread(replicas: 4, perZone: 1))
        let zoned = try RangeMovementTests.finish(try spread.applying(.setPlacement(.zones(["a": 2, "b": 1]))))
        #expect(zoned.replicationFactor == 3)
        // Nodes of zone c hold nothing under `zones:a=2,b=1`.
        #expect(Self.replicaZones(try zoned.ring(), zoned).allSatisfy { $0.sorted() == ["a", "a", "b"] })
        #expect(throws: ClusterChangeError.self) { try zoned.applying(.setReplicationFactor(4)) }
        // A rule the nodes cannot meet is refused before anything changes.
        #expect(throws: ClusterChangeError.self) { try zoned.applying(.setPlacement(.zones(["a": 3]))) }
        #expect(throws: ClusterChangeError.self) { try zoned.applying(.setPlacement(.zones(["d": 1]))) }
    }

    @Test func joinsCarryTheirZoneAndAReplacementKeepsTheReplacedNodesZone() throws {
        let base = Self.cluster()
        let joined = try base.applying(.join(node: "n7", address: "127.0.0.7:7411", tokensPerNode: 16, zone: "c"))
        #expect(joined.node("n7")?.zone == "c")
        #expect(try joined.nextRing().nodes.first { $0.id == "n7" }?.zone == "c")
        let replaced = try base.applying(.replace(node: "n2", with: "n9", address: "127.0.0.9:7411"))
        #expect(replaced.node("n9")?.zone == base.node("n2")?.zone)
        #expect(throws: ClusterChangeError.self) {
            try base.applying(
                .join(
                    node: "n8", address: "127.0.0.8:7411", tokensPerNode: 16,
                    zone: String(repeating: "z", count: Limits.nameBytesMax + 1)))
        }
    }

    @Test func onlyMapsWithZonesOrOtherRulesSayMoreThanProtocolVersionTwo() throws {
        #expect(!RangeMovementTests.cluster(4).usesZones)
        #expect(Self.cluster().usesZones)
        var ruled = RangeMovementTests.cluster(4)
        ruled.pendingPlacement = .spread(replicas: 3, perZone: 1)
        #expect(ruled.usesZones)
    }
}
