import KVCore
import Testing

/// Keyspaces in the cluster map (issue 20, first piece): created, altered and dropped through map
/// changes, each with its own ring, ids never given twice.
@Suite struct KeyspaceTests {
    static let six = RangeMovementTests.cluster(6)

    @Test func keyspacesOfTheirOwnNLiveInOneMapWithTheirOwnRings() throws {
        let cache = try Self.six.applying(
            .createKeyspace(
                "cache", KeyspaceSettings(placement: .simple(replicas: 3), readLevel: .one, writeLevel: .one)))
        let accounts = try cache.applying(
            .createKeyspace(
                "accounts", KeyspaceSettings(placement: .simple(replicas: 5), readLevel: .quorum, writeLevel: .quorum)))
        #expect(accounts.epoch == Self.six.epoch + 2 && !accounts.isChanging)
        let first = try #require(accounts.keyspace(named: "cache"))
        let second = try #require(accounts.keyspace(named: "accounts"))
        #expect(first.id == 1 && second.id == 2)
        #expect(first.readLevel == .one && second.writeLevel == .quorum)
        #expect(try accounts.ring(of: first).replicationFactor == 3)
        #expect(try accounts.ring(of: second).replicationFactor == 5)
        // The same key has three replicas in one keyspace and five in the other, the first three alike.
        let key = Array("user:42".utf8)
        let five = try accounts.ring(of: second).preferenceList(forKey: key)
        let three = try accounts.ring(of: first).preferenceList(forKey: key)
        #expect(five.count == 5 && Array(five.prefix(3)) == three)
        // `default` is the map's own placement.
        #expect(accounts.keyspace(named: "default")?.placement == Self.six.placement)
        #expect(accounts.keyspace(id: 0)?.name == "default")
    }

    /// A node cannot leave when a keyspace would be left with fewer nodes than its N: the refusal names
    /// the keyspace (it read as if the cluster's own N were at fault).
    @Test func aLeaveThatAKeyspacesNForbidsNamesTheKeyspace() throws {
        let four = RangeMovementTests.cluster(4)
        let map = try four.applying(.createKeyspace("acct", KeyspaceSettings(placement: .simple(replicas: 4))))
        let error = try #require(throws: ClusterChangeError.self) { try map.applying(.leave(node: "n4")) }
        #expect("\(error)".contains("keyspace acct's ring") && "\(error)".contains("alter or drop"), "\(error)")
    }

    @Test func aDroppedKeyspacesIdIsNeverGivenAgainButItsNameIs() throws {
        var map = try Self.six.applying(.createKeyspace("sessions", KeyspaceSettings(timeToLive: .seconds(1_800))))
        #expect(map.keyspace(named: "sessions")?.timeToLive == .seconds(1_800))
        map = try map.applying(.dropKeyspace("sessions"))
        #expect(map.keyspace(named: "sessions") == nil && map.keyspace(id: 1) == nil)
        map = try map.applying(.createKeyspace("sessions", KeyspaceSettings()))
        #expect(map.keyspace(named: "sessions")?.id == 2)
        #expect(map.keyspaces.map(\.dropped) == [true, false])
    }

    @Test func alteringChangesLevelsAndTTLAndStreamsANewPlacement() throws {
        var map = try Self.six.applying(.createKeyspace("cache", KeyspaceSettings(readLevel: .one)))
        map = try map.applying(
            .alterKeyspace("cache", KeyspaceSettings(writeLevel: .all, timeToLive: .some(.seconds(60)))))
        let cache = try #require(map.keyspace(named: "cache"))
        #expect(cache.readLevel == .one && cache.writeLevel == .all && cache.timeToLive == .seconds(60))
        map = try map.applying(.alterKeyspace("cache", KeyspaceSettings(timeToLive: .some(nil))))
        #expect(map.keyspace(named: "cache")?.timeToLive == nil)
        #expect(throws: ClusterChangeError.self) { try map.applying(.alterKeyspace("cache", KeyspaceSettings())) }
        // A new placement is pending while the nodes that gain ranges of the keyspace receive them.
        var raised = try map.applying(.alterKeyspace("cache", KeyspaceSettings(placement: .simple(replicas: 5))))
        let pending = try #require(raised.keyspace(named: "cache"))
        #expect(pending.placement == .simple(replicas: 3) && pending.pendingPlacement == .simple(replicas: 5))
        #expect(raised.isChanging && !raised.streaming.isEmpty)
        #expect(
            try raised.ring(of: pending).replicationFactor == 3 && raised.nextRing(of: pending).replicationFactor == 5)
        // The default keyspace moves nothing: only the keyspace's receivers stream.
        #expect(raised.movements().isEmpty)
        #expect(
            Set(raised.streaming) == Set(raised.viewed(as: pending).movements().flatMap(\.receivers)))
        #expect(throws: ClusterChangeError.self) {
            try raised.applying(.join(node: "n7", address: "127.0.0.7:7411", tokensPerNode: 16))
        }
        for node in raised.streaming { raised = try raised.applying(.streamed(node: node)) }
        #expect(!raised.isChanging)
        #expect(raised.keyspace(named: "cache")?.placement == .simple(replicas: 5))
        #expect(raised.keyspace(named: "cache")?.pendingPlacement == nil)
    }

    @Test(arguments: [
        ("default", KeyspaceSettings()), ("9lives", KeyspaceSettings()), ("", KeyspaceSettings()),
        ("has space", KeyspaceSettings()), ("big", KeyspaceSettings(placement: .simple(replicas: 7))),
        ("zoned", KeyspaceSettings(placement: .zones(["dc9": 1]))),
        ("strict", KeyspaceSettings(placement: .simple(replicas: 3), writeLevel: .count(4))),
        ("forever", KeyspaceSettings(timeToLive: .some(.seconds(20 * 366 * 86_400)))),
    ])
    func keyspacesThatCannotWorkAreRefused(_ name: String, _ settings: KeyspaceSettings) throws {
        #expect(throws: ClusterChangeError.self) { try Self.six.applying(.createKeyspace(name, settings)) }
    }

    /// A map from peers is hostile until bounded: a keyspace id at the top of its range is refused,
    /// not counted past (which would trap).
    @Test func aMapWhoseKeyspaceIDsRanOutRefusesANewOneWithoutTrapping() throws {
        var map = Self.six
        map.keyspaces = [Keyspace(id: .max, name: "last", placement: .simple(replicas: 3))]
        #expect(throws: ClusterChangeError.self) { try map.applying(.createKeyspace("next", KeyspaceSettings())) }
    }

    @Test func theDefaultKeyspaceCannotBeDroppedOrAlteredHereAndNamesAreUnique() throws {
        let map = try Self.six.applying(.createKeyspace("cache", KeyspaceSettings()))
        #expect(throws: ClusterChangeError.self) { try map.applying(.dropKeyspace("default")) }
        #expect(throws: ClusterChangeError.self) { try map.applying(.alterKeyspace("default", KeyspaceSettings())) }
        #expect(throws: ClusterChangeError.self) { try map.applying(.createKeyspace("cache", KeyspaceSettings())) }
        #expect(throws: ClusterChangeError.self) { try map.applying(.dropKeyspace("nothing")) }
    }
}
