import KVCore
import NIOCore
import Testing

@testable import KVWire

/// Zones and placements on the wire (protocol version 3), and the signed form of a map.
struct ZonedMapWireTests {
    static let plain = ClusterMap(
        clusterID: "q", epoch: 8, replicationFactor: 2,
        nodes: [
            ClusterMap.Node(id: "n1", address: "h:1", tokens: [9]),
            ClusterMap.Node(id: "n2", address: "h:2", tokens: [19], state: .joining),
        ], pendingReplicationFactor: 1, streaming: ["n2"], changeEpoch: 8)

    static var zoned: ClusterMap {
        var map = plain
        map.nodes[0].zone = "dc1"
        map.nodes[1].zone = "dc2"
        map.placement = .zones(["dc1": 1, "dc2": 1])
        map.pendingPlacement = .spread(replicas: 2, perZone: 1)
        return map
    }

    @Test(arguments: [plain, zoned])
    func aMapComesBackAsItWasFromEveryMessageThatCarriesIt(_ map: ClusterMap) throws {
        #expect(MapBody(map).map == map)
        #expect(ClusterMapResponse(map).map == map)
        var buffer = ByteBuffer()
        buffer.writeMapBody(MapBody(map))
        #expect(try buffer.readMapBody()?.map == map)
        #expect(buffer.readableBytes == 0)
    }

    @Test func aMapWithoutZonesIsSignedAsProtocolVersionTwoSignedIt() throws {
        let ballot = Ballot(round: 6, proposer: "c")
        var legacy = ByteBuffer()
        legacy.writeString("quorumkv map accept v1\0")
        legacy.writeBallot(ballot)
        legacy.writeLegacyMapBody(try #require(LegacyMapBody(Self.plain)))
        #expect(MapProposal(ballot: ballot, map: Self.plain).signedBytes == Array(legacy.readableBytesView))

        // A zoned map has no version-2 form and is signed whole, under another label: changing a
        // zone or the rule changes what is signed.
        #expect(LegacyMapBody(Self.zoned) == nil)
        let signed = MapProposal(ballot: ballot, map: Self.zoned).signedBytes
        #expect(signed.starts(with: Array("quorumkv map accept v2\0".utf8)))
        var moved = Self.zoned
        moved.nodes[1].zone = "dc3"
        #expect(MapProposal(ballot: ballot, map: moved).signedBytes != signed)
        var ruled = Self.zoned
        ruled.pendingPlacement = .spread(replicas: 2, perZone: 2)
        #expect(MapProposal(ballot: ballot, map: ruled).signedBytes != signed)
    }

    @Test func hostilePlacementCountsBecomeRulesTheRingRefuses() throws {
        // A peer's rule decodes whatever its numbers are; `Ring` refuses what cannot be met.
        let body = PlacementBody(
            kind: .zones, replicas: 200, perZone: 0, zones: [ZoneCountBody(zone: "dc1", count: 255)])
        var map = Self.zoned
        map.placement = body.placement
        #expect(throws: RingError.self) { try map.ring() }
        map.placement = PlacementBody(kind: .spread, replicas: 2, perZone: 0, zones: []).placement
        #expect(throws: RingError.self) { try map.ring() }
    }
}

/// Keyspaces in the map on the wire: they come back as they were and are signed.
@Suite struct KeyspaceWireTests {
    @Test func keyspacesComeBackAndAreSigned() throws {
        var map = ZonedMapWireTests.plain
        map.keyspaces = [
            Keyspace(
                id: 1, name: "cache", placement: .simple(replicas: 2), readLevel: .one, writeLevel: .count(1),
                timeToLive: .seconds(1_800)),
            Keyspace(
                id: 2, name: "accounts", placement: .spread(replicas: 2, perZone: 1),
                pendingPlacement: .zones(["dc1": 1]), readLevel: .localQuorum, writeLevel: .eachQuorum, dropped: true),
        ]
        #expect(MapBody(map).map == map)
        #expect(ClusterMapResponse(map).map == map)
        // A map with keyspaces has no protocol-version-2 form: it is signed whole, keyspaces included.
        #expect(LegacyMapBody(map) == nil)
        let ballot = Ballot(round: 1, proposer: "p")
        var altered = map
        altered.keyspaces[0].readLevel = .quorum
        #expect(
            MapProposal(ballot: ballot, map: altered).signedBytes != MapProposal(ballot: ballot, map: map).signedBytes)
    }
}
