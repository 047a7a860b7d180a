import KVCore
import Testing

/// Several rings: nodes belong to a ring, a keyspace lives on one ring or is split by key range across
/// rings, and a part moves between rings as a join moves ranges.
@Suite struct RingSplitTests {
    /// n1–n3 on the main ring, n4–n6 on ring `east`, each ring's tokens allocated on its own.
    static let twoRings: ClusterMap = {
        var nodes: [ClusterMap.Node] = []
        for (index, ring) in ["", "", "", "east", "east", "east"].enumerated() {
            let id = "n\(index + 1)"
            let existing = nodes.filter { $0.ring == ring }.map(\.ringNode)
            nodes.append(
                ClusterMap.Node(
                    id: id, address: "127.0.0.\(index + 1):7411",
                    tokens: TokenAllocator.tokensForJoiningNode(id, existing: existing, tokensPerNode: 16), ring: ring))
        }
        return ClusterMap(clusterID: "test", epoch: 1, replicationFactor: 3, nodes: nodes)
    }()

    static let users: ClusterMap = {
        try! twoRings.applying(
            .createKeyspace("users", KeyspaceSettings(splits: [KeyspaceSplit(lowKey: Array("n".utf8), ring: "east")])))
    }()

    @Test func theDefaultKeyspaceLivesOnTheMainRingOnly() throws {
        let ring = try Self.twoRings.ring()
        #expect(Set(ring.nodes.map(\.id)) == ["n1", "n2", "n3"])
        #expect(Self.twoRings.ringNames == ["", "east"])
    }

    /// Every ring with owners, each with the placement of a keyspace living on it, else the map's N
    /// capped at its owners: what `kvctl ring` lists and `kvctl status` takes each node's share from.
    @Test func ringsByNameGiveEachRingItsNodesAndPlacement() throws {
        let bare = try Self.twoRings.ringsByName()
        #expect(bare.map(\.name) == ["", "east"])
        #expect(bare.map { Set($0.ring.nodes.map(\.id)) } == [["n1", "n2", "n3"], ["n4", "n5", "n6"]])
        #expect(bare.map(\.ring.replicationFactor) == [3, 3])
        let events = try Self.twoRings.applying(
            .createKeyspace("events", KeyspaceSettings(placement: .simple(replicas: 2), ring: "east")))
        #expect(try events.ringsByName().map(\.ring.replicationFactor) == [3, 2], "events' placement on east")
        var joining = Self.twoRings
        joining.nodes = joining.nodes.map { node in
            var node = node
            if node.ring == "east" { node.state = .joining }
            return node
        }
        #expect(try joining.ringsByName().map(\.name) == [""], "a ring of joining nodes has no tokens yet")
        // Every node is on one ring: their shares of their rings cover each ring once per replica.
        let shares = try Self.twoRings.ringsByName().map { $0.ring.replicaShare() }
        #expect(shares.map { $0.values.reduce(0, +).rounded() } == [3, 3])
    }

    @Test func aSplitKeyspacePlacesEachKeyRangeOnItsRing() throws {
        let map = Self.users
        let parts = map.parts(named: "users")
        #expect(parts.map(\.lowKey) == [[], Array("n".utf8)])
        #expect(parts.map(\.ring) == ["", "east"])
        #expect(Set(parts.map(\.id)).count == 2)
        for (key, part) in [("alice", 0), ("mallory", 0), ("n", 1), ("zoe", 1)] {
            let found = try #require(map.keyspace(named: "users", forKey: Array(key.utf8)))
            #expect(found.id == parts[part].id, "\(key)")
            #expect(map.holds(parts[part], key: Array(key.utf8)))
            #expect(!map.holds(parts[1 - part], key: Array(key.utf8)))
            let replicas = try map.ring(of: found).preferenceList(forKey: Array(key.utf8))
            let expected: Set<String> = part == 0 ? ["n1", "n2", "n3"] : ["n4", "n5", "n6"]
            #expect(Set(replicas) == expected, "\(key)")
        }
        #expect(map.keyspace(named: "users")?.id == parts[0].id)
    }

    /// The parts index a driver keeps per map finds the part the map's own lookup does, for every
    /// keyspace (split, dropped, default) and key.
    @Test func thePartsIndexAgreesWithTheMapsLookup() throws {
        let map = try Self.users.applying(.createKeyspace("gone", KeyspaceSettings()))
            .applying(.dropKeyspace("gone"))
        let index = map.partsByName
        #expect(Set(index.keys) == [Keyspace.defaultName, "users"])
        for name in [Keyspace.defaultName, "users", "gone", "never"] {
            #expect((index[name] ?? []).map(\.id) == map.parts(named: name).map(\.id), "\(name)")
            for key in ["", "alice", "n", "nn", "zoe"].map({ Array($0.utf8) }) {
                #expect(
                    Keyspace.part(of: index[name] ?? [], forKey: key)?.id
                        == map.keyspace(named: name, forKey: key)?.id, "\(name) \(key)")
            }
        }
    }

    @Test func aPartMovesToAnotherRingThroughATransfer() throws {
        let part = try #require(Self.users.parts(named: "users").last)
        var map = try Self.users.applying(.moveKeyspaceRange("users", lowKey: part.lowKey, ring: ""))
        let moving = try #require(map.keyspace(id: part.id))
        #expect(moving.ring == "east" && moving.pendingRing == "")
        #expect(map.isChanging)
        // Writes go to both rings; the main ring's nodes receive every range from the east ring's.
        #expect(Set(try map.ring(of: moving).nodes.map(\.id)) == ["n4", "n5", "n6"])
        #expect(Set(try map.nextRing(of: moving).nodes.map(\.id)) == ["n1", "n2", "n3"])
        #expect(Set(map.streaming) == ["n1", "n2", "n3"])
        let transfers = map.viewed(as: moving).transfers(to: "n1")
        #expect(!transfers.isEmpty)
        #expect(transfers.allSatisfy { Set($0.sources).isSubset(of: ["n4", "n5", "n6"]) })
        // The other part and the default keyspace move nothing.
        #expect(map.movements().isEmpty)
        #expect(try map.viewed(as: #require(map.parts(named: "users").first)).movements().isEmpty)
        #expect(throws: ClusterChangeError.self) {
            try map.applying(.moveKeyspaceRange("users", lowKey: [], ring: "east"))
        }
        for node in map.streaming { map = try map.applying(.streamed(node: node)) }
        #expect(!map.isChanging)
        let moved = try #require(map.keyspace(id: part.id))
        #expect(moved.ring == "" && moved.pendingRing == nil)
        #expect(Set(try map.ring(of: moved).nodes.map(\.id)) == ["n1", "n2", "n3"])
    }

    @Test func aJoinToOneRingMovesOnlyThatRingsRanges() throws {
        var map = try Self.users.applying(
            .join(node: "n7", address: "127.0.0.7:7411", tokensPerNode: 16, ring: "east"))
        #expect(map.node("n7")?.ring == "east")
        #expect(map.movements().isEmpty)
        let east = try #require(map.parts(named: "users").last)
        #expect(map.streaming == ["n7"])
        #expect(!map.viewed(as: east).transfers(to: "n7").isEmpty)
        for node in map.streaming { map = try map.applying(.streamed(node: node)) }
        #expect(Set(try map.ring(of: east).nodes.map(\.id)) == ["n4", "n5", "n6", "n7"])
        #expect(Set(try map.ring().nodes.map(\.id)) == ["n1", "n2", "n3"])
    }

    @Test func splitsAndMovesThatCannotWorkAreRefused() throws {
        // A ring without nodes.
        #expect(throws: ClusterChangeError.self) {
            try Self.twoRings.applying(
                .createKeyspace("x", KeyspaceSettings(splits: [KeyspaceSplit(lowKey: [1], ring: "west")])))
        }
        // Split keys must be distinct and not empty.
        #expect(throws: ClusterChangeError.self) {
            try Self.twoRings.applying(
                .createKeyspace("x", KeyspaceSettings(splits: [KeyspaceSplit(lowKey: [], ring: "east")])))
        }
        #expect(throws: ClusterChangeError.self) {
            try Self.twoRings.applying(
                .createKeyspace(
                    "x",
                    KeyspaceSettings(splits: [
                        KeyspaceSplit(lowKey: [1], ring: "east"), KeyspaceSplit(lowKey: [1], ring: ""),
                    ])))
        }
        // No part starts at that key; the part is there already.
        #expect(throws: ClusterChangeError.self) {
            try Self.users.applying(.moveKeyspaceRange("users", lowKey: Array("m".utf8), ring: ""))
        }
        #expect(throws: ClusterChangeError.self) {
            try Self.users.applying(.moveKeyspaceRange("users", lowKey: Array("n".utf8), ring: "east"))
        }
        // `main` is spelled by leaving the ring out.
        #expect(throws: ClusterChangeError.self) {
            try Self.twoRings.applying(.join(node: "n9", address: "127.0.0.9:7411", tokensPerNode: 8, ring: "main"))
        }
        // Dropping a split keyspace drops every part.
        let dropped = try Self.users.applying(.dropKeyspace("users"))
        #expect(dropped.parts(named: "users").isEmpty && dropped.keyspaces.allSatisfy(\.dropped))
    }
}
