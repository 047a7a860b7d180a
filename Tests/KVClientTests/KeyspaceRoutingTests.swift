import Foundation
import KVCore
import KVTLS
import KVWire
import NIOCore
import Testing

@testable import KVClient

/// Keyspaces in the SDK (issue 20): a keyspace's keys go to its own ring's replicas, with its id on
/// every request, its N and its default levels and TTL; an unknown or dropped keyspace fails naming it.
@Suite(.timeLimit(.minutes(3)))
struct KeyspaceRoutingTests {
    /// Six nodes on ports where nothing listens: every connection is refused at once, so an operation
    /// fails fast with a quorum error naming the replicas it was for (its keyspace's ring and N).
    static let base: ClusterMap = {
        var nodes: [ClusterMap.Node] = []
        for index in 1...6 {
            let tokens = TokenAllocator.tokensForJoiningNode(
                "n\(index)", existing: nodes.map(\.ringNode), tokensPerNode: 8)
            nodes.append(ClusterMap.Node(id: "n\(index)", address: "127.0.0.1:\(index)", tokens: tokens))
        }
        return ClusterMap(clusterID: "test", epoch: 3, replicationFactor: 3, nodes: nodes)
    }()

    /// `base` with `cache` (N=3, R=1, W=1, TTL 30m), `accounts` (N=5, R=3, W=3) and a dropped `old`.
    static func map() throws -> ClusterMap {
        try base
            .applying(
                .createKeyspace(
                    "cache",
                    KeyspaceSettings(
                        placement: .simple(replicas: 3), readLevel: .one, writeLevel: .one,
                        timeToLive: .some(.seconds(1800))))
            )
            .applying(
                .createKeyspace(
                    "accounts",
                    KeyspaceSettings(placement: .simple(replicas: 5), readLevel: .count(3), writeLevel: .count(3)))
            )
            .applying(.createKeyspace("old", KeyspaceSettings()))
            .applying(.dropKeyspace("old"))
    }

    static let keys = (0..<64).map { Array("key-\($0)".utf8) }

    /// The routes of `map`, without connections.
    static func topology(_ map: ClusterMap) throws -> KVClient.Topology {
        KVClient.Topology(map: map, routes: try KeyspaceRoute.routes(of: map), nodes: [:])
    }

    @Test func eachKeyspaceRoutesToItsOwnRingWithItsDefaults() throws {
        let map = try Self.map()
        let topology = try Self.topology(map)
        #expect(Set(topology.routes.keys.map { map.keyspace(id: $0)?.name }) == ["default", "cache", "accounts"])
        #expect(try topology.route("old", forKey: [1]) == nil, "a dropped keyspace has no route")
        let cache = try #require(try topology.route("cache", forKey: [1]))
        let accounts = try #require(try topology.route("accounts", forKey: [1]))
        let standard = try #require(try topology.route("default", forKey: [1]))
        #expect(cache.id == map.keyspace(named: "cache")?.id && cache.id != 0)
        #expect(accounts.id == map.keyspace(named: "accounts")?.id && accounts.id != cache.id)
        #expect(standard.id == 0)

        var differ = false
        for key in Self.keys {
            for (name, route) in [("cache", cache), ("accounts", accounts), ("default", standard)] {
                let expected = try map.ring(of: #require(map.keyspace(named: name))).preferenceList(forKey: key)
                #expect(route.ring.preferenceList(forKey: key) == expected)
            }
            #expect(accounts.ring.preferenceList(forKey: key).count == 5)
            #expect(cache.ring.preferenceList(forKey: key).count == 3)
            differ = differ || accounts.ring.preferenceList(forKey: key) != standard.ring.preferenceList(forKey: key)
        }
        #expect(differ, "N=5 and N=3 rings must not give every key the same replicas")

        // The keyspace's defaults; the default keyspace leaves them to the client configuration.
        #expect(cache.readLevel == .one && cache.writeLevel == .one && cache.timeToLive == .seconds(1800))
        #expect(accounts.readLevel == .count(3) && accounts.writeLevel == .count(3) && accounts.timeToLive == nil)
        #expect(standard.readLevel == nil && standard.writeLevel == nil && standard.timeToLive == nil)
        #expect(cache.next == nil && standard.next == nil, "nothing is changing")
    }

    @Test func everyRequestOfAKeyspaceCarriesItsID() throws {
        let route = try #require(try Self.topology(Self.map()).route("accounts", forKey: [1]))
        let key = Array("user:42".utf8)
        let version = Version(hlc: 1 << 20, writer: 7)
        let record = Record(
            key: .init(bytes: key), version: version, tombstone: false, value: .init(bytes: [1, 2]),
            expiresAtMillis: nil)

        guard case .getRequest(let get) = route.getRequest(key) else { Issue.record("not a Get"); return }
        #expect(get.keyspace == route.id && Array(get.key.readableBytesView) == key)
        guard case .putRequest(let put) = route.putRequest(record, epoch: 3) else { Issue.record("not a Put"); return }
        #expect(put.keyspace == route.id && put.origin == .client && put.epoch == 3)
        guard case .hintRequest(let hint) = route.hintRequest(for: "n2", record) else {
            Issue.record("not a Hint")
            return
        }
        #expect(hint.keyspace == route.id && hint.target == "n2")
        let stored = StoredRecord(version: version, tombstone: false, value: [1, 2])
        guard case .putRequest(let repair) = route.repairRequest(key, stored) else {
            Issue.record("not a repair Put")
            return
        }
        #expect(repair.keyspace == route.id && repair.origin == .readRepair)
    }

    @Test func aKeyspaceWithATimeToLiveBeyondTheLimitIsRefused() throws {
        var map = try Self.map()
        let index = try #require(map.keyspaces.firstIndex { $0.name == "cache" })
        map.keyspaces[index].timeToLive = Limits.timeToLiveMax + .seconds(1)
        let topology = try Self.topology(map)
        #expect(throws: KVClientError.self) { try topology.route("cache", forKey: [1]) }
        #expect(try topology.route("accounts", forKey: [1]) != nil, "one bad keyspace does not stop the others")
    }

    // MARK: - Through the client's coordination

    /// A client of `map` whose every replica refuses connections.
    static func client(_ map: ClusterMap) throws -> KVClient {
        let authority = try CertificateIssuer.makeAuthority(commonName: "test-ca")
        let certificate = try CertificateIssuer.issue(role: .client, name: "client", authority: authority)
        var configuration = KVClientConfiguration(
            cluster: map,
            tls: TLSConfiguration(
                caPEM: authority.certificatePEM, certificatePEM: certificate.certificatePEM,
                keyPEM: certificate.privateKeyPEM))
        configuration.requestTimeout = .seconds(5)
        configuration.hintedHandoff = false
        configuration.healthCheckInterval = nil
        configuration.speculativeReads = false
        return try KVClient(configuration: configuration)
    }

    /// Checks that `error` is a quorum failure needing `required` of the replicas `replicas` (naming
    /// no other node), in keyspace `keyspace` (nil: the default, which the message does not name).
    static func expectQuorumFailure(
        _ error: KVClientError, _ operation: String, needs required: Int, of replicas: [String], keyspace: String?
    ) {
        let text = error.description
        #expect(error.isUnavailable, "\(text)")
        #expect(text.contains("\(operation) needs \(required) of \(replicas.count) replicas"), "\(text)")
        if let keyspace {
            #expect(text.contains("in keyspace '\(keyspace)'"), "\(text)")
        } else {
            #expect(!text.contains("keyspace"), "\(text)")
        }
        // The quorum fails as soon as it cannot be met: the replicas that failed by then are named,
        // and only replicas of the key in this keyspace's ring.
        let named = (1...6).map { "n\($0)" }.filter { text.contains("\($0) (") }
        #expect(!named.isEmpty && named.allSatisfy(replicas.contains), "\(replicas): \(text)")
    }

    @Test func operationsUseTheKeyspacesRingNAndDefaultLevels() async throws {
        let map = try Self.map()
        let client = try Self.client(map)
        let key = Array("user:42".utf8)
        let cacheReplicas = try map.ring(of: #require(map.keyspace(named: "cache"))).preferenceList(forKey: key)
        let accountReplicas = try map.ring(of: #require(map.keyspace(named: "accounts"))).preferenceList(forKey: key)
        let defaultReplicas = try map.ring().preferenceList(forKey: key)

        let cache = client.keyspace("cache")
        let accounts = client.keyspace("accounts")
        let error = { (body: () async throws -> Void) async -> KVClientError? in
            do {
                try await body()
                return nil
            } catch {
                return error as? KVClientError
            }
        }
        // Each keyspace's own N and levels (cache W=1, R=1; accounts W=3, R=3; default quorum of 3).
        let cacheWrite = try #require(await error { try await cache.put(key, value: [1]) })
        Self.expectQuorumFailure(cacheWrite, "write", needs: 1, of: cacheReplicas, keyspace: "cache")
        let cacheRead = try #require(await error { _ = try await cache.get(key) })
        Self.expectQuorumFailure(cacheRead, "read", needs: 1, of: cacheReplicas, keyspace: "cache")
        let accountsWrite = try #require(await error { try await accounts.put(key, value: [1]) })
        Self.expectQuorumFailure(accountsWrite, "write", needs: 3, of: accountReplicas, keyspace: "accounts")
        let accountsDelete = try #require(await error { try await accounts.delete(key) })
        Self.expectQuorumFailure(accountsDelete, "write", needs: 3, of: accountReplicas, keyspace: "accounts")
        let accountsRead = try #require(await error { _ = try await accounts.get(key) })
        Self.expectQuorumFailure(accountsRead, "read", needs: 3, of: accountReplicas, keyspace: "accounts")
        // A level the call names wins over the keyspace's.
        let readOne = try #require(await error { _ = try await accounts.get(key, consistency: .one) })
        Self.expectQuorumFailure(readOne, "read", needs: 1, of: accountReplicas, keyspace: "accounts")
        // The client itself and `keyspace("default")` are today's default keyspace.
        let defaultWrite = try #require(await error { try await client.put(key, value: [1]) })
        Self.expectQuorumFailure(defaultWrite, "write", needs: 2, of: defaultReplicas, keyspace: nil)
        let named = try #require(await error { _ = try await client.keyspace("default").get(key) })
        Self.expectQuorumFailure(named, "read", needs: 2, of: defaultReplicas, keyspace: nil)
        #expect(try await accounts.replicas(ofKey: key) == accountReplicas)
        await client.close()
    }

    @Test(arguments: [
        ("nope", "no keyspace 'nope' in the cluster map (epoch 7; keyspaces: default, cache, accounts)"),
        ("old", "keyspace 'old' was dropped (epoch 7; keyspaces: default, cache, accounts)"),
    ])
    func anUnknownOrDroppedKeyspaceFailsNamingIt(_ name: String, _ message: String) async throws {
        let client = try Self.client(Self.map())
        let keyspace = client.keyspace(name)
        for operation in [
            { _ = try await keyspace.get([1]) }, { try await keyspace.put([1], value: [2]) },
            { try await keyspace.delete([1]) },
        ] as [() async throws -> Void] {
            let error = try await #require(throws: KVClientError.self) { try await operation() }
            #expect(error.isInvalidArgument && error.description == message, "\(error)")
        }
        await client.close()
    }

    // MARK: - A keyspace split across rings

    /// n1–n3 on the main ring, n4–n6 on ring `east`; `users` split at `n`: keys below it on the main
    /// ring, keys from it on `east`.
    static func splitMap() throws -> ClusterMap {
        var nodes: [ClusterMap.Node] = []
        for (index, ring) in ["", "", "", "east", "east", "east"].enumerated() {
            let id = "n\(index + 1)"
            let existing = nodes.filter { $0.ring == ring }.map(\.ringNode)
            nodes.append(
                ClusterMap.Node(
                    id: id, address: "127.0.0.1:\(index + 1)",
                    tokens: TokenAllocator.tokensForJoiningNode(id, existing: existing, tokensPerNode: 8), ring: ring))
        }
        return try ClusterMap(clusterID: "test", epoch: 3, replicationFactor: 3, nodes: nodes)
            .applying(
                .createKeyspace(
                    "users",
                    KeyspaceSettings(
                        readLevel: .one, writeLevel: .count(3),
                        splits: [KeyspaceSplit(lowKey: Array("n".utf8), ring: "east")])))
    }

    static let mainRing: Set<String> = ["n1", "n2", "n3"]
    static let eastRing: Set<String> = ["n4", "n5", "n6"]

    @Test(arguments: [("alice", false), ("mallory", false), ("n", true), ("nancy", true), ("zoe", true)])
    func aSplitKeyspacesKeysGoToTheirPartsRingWithItsID(_ name: String, _ east: Bool) throws {
        let map = try Self.splitMap()
        let parts = map.parts(named: "users")
        let part = parts[east ? 1 : 0]
        let key = Array(name.utf8)
        let route = try #require(try Self.topology(map).route("users", forKey: key))
        #expect(route.id == part.id && route.name == "users")
        #expect(Set(route.ring.preferenceList(forKey: key)) == (east ? Self.eastRing : Self.mainRing))
        #expect(route.next == nil && route.readLevel == .one && route.writeLevel == .count(3))
        guard case .getRequest(let get) = route.getRequest(key) else { Issue.record("not a Get"); return }
        #expect(get.keyspace == part.id)
        let record = Record(
            key: .init(bytes: key), version: Version(hlc: 1 << 20, writer: 7), tombstone: false,
            value: .init(bytes: []),
            expiresAtMillis: nil)
        guard case .putRequest(let put) = route.putRequest(record, epoch: 3) else { Issue.record("not a Put"); return }
        #expect(put.keyspace == part.id)
    }

    @Test func aMovingPartWritesToBothRings() throws {
        let map = try Self.splitMap().applying(.moveKeyspaceRange("users", lowKey: Array("n".utf8), ring: ""))
        let topology = try Self.topology(map)
        let key = Array("zoe".utf8)
        let route = try #require(try topology.route("users", forKey: key))
        #expect(Set(route.ring.preferenceList(forKey: key)) == Self.eastRing)
        #expect(Set(try #require(route.next).preferenceList(forKey: key)) == Self.mainRing)
        // The part that does not move: the change in progress changes nothing for it.
        let low = try #require(try topology.route("users", forKey: Array("alice".utf8)))
        #expect(low.next.map { Set($0.preferenceList(forKey: Array("alice".utf8))) } ?? Self.mainRing == Self.mainRing)
        #expect(Set(low.ring.preferenceList(forKey: Array("alice".utf8))) == Self.mainRing)
    }

    @Test func aSplitKeyspacesOperationsUseTheirKeysPart() async throws {
        let map = try Self.splitMap()
        let client = try Self.client(map)
        let users = client.keyspace("users")
        for (name, ring) in [("alice", Self.mainRing), ("zoe", Self.eastRing)] {
            let key = Array(name.utf8)
            let replicas = try await users.replicas(ofKey: key)
            #expect(Set(replicas) == ring, "\(name)")
            let write = try await #require(throws: KVClientError.self) { try await users.put(key, value: [1]) }
            Self.expectQuorumFailure(write, "write", needs: 3, of: replicas, keyspace: "users")
            let read = try await #require(throws: KVClientError.self) { _ = try await users.get(key) }
            Self.expectQuorumFailure(read, "read", needs: 1, of: replicas, keyspace: "users")
        }
        await client.close()
    }
}
