import Foundation
import KVCluster
import KVCore
import KVRPC
package import KVTLS
import KVWire
import Metrics
import NIOCore
import NIOPosix
import Synchronization

/// The QuorumKV SDK: the coordinator of every read and write.
///
/// It hashes each key onto the ring, sends a write to all N replicas at once and answers at the W-th
/// acknowledgement, and reads from R replicas (asking the next one at once when a replica fails, and
/// one more when they are slower than their recent p99). Versions are hybrid-logical-clock stamps; the
/// client moves its clock past every clock a replica reports, and re-stamps and retries a write that
/// a replica finds older than what it holds, so writes are acknowledged in version order whenever
/// write quorums overlap.
public final class KVClient: Sendable {
    /// The configuration the client was made with.
    public let configuration: KVClientConfiguration
    let tls: TLSContext
    let hello: Hello
    /// The version source of every operation of this client (KVCore's ``ClientClock``).
    let clock: Mutex<ClientClock>
    let topology = Mutex<Topology?>(nil)
    let seeds: [RPCClient]
    /// Each node's recent response times and their p99 (speculative reads).
    let latencies = Mutex<[String: NodeLatencies]>([:])
    /// Each node's recent response time, which orders the replicas a read asks first.
    let responseTimes = Mutex(ReplicaResponseTimes())
    /// The event loops of the client's connections and timers (`KVClientConfiguration.eventLoopGroup`).
    let group: any EventLoopGroup
    /// The timers of every operation (deadlines, hand-off, speculation), on one event loop.
    let operationTimers: OperationTimers
    let repairsSent = Atomic<Int>(0)
    /// Requests sent to nodes for reads and writes (a batch counts once; the pinger's probes not):
    /// what a batch operation saves is counted here (tests).
    let requestsSent = Atomic<Int>(0)
    let hintsSent = Atomic<Int>(0)
    /// Operations still handing off after they answered; ``close()`` waits for them.
    let handingOff = Mutex(HandingOff())
    /// One failure detector per node, fed by every answer and by the pinger.
    let health: PeerHealthTable
    /// Pings every node every `healthCheckInterval`, from the first operation until ``close()``.
    let pinger = Mutex<BackgroundWork.Handle?>(nil)
    /// Everything the client goes on with after answering (hand-offs, map fetches, the pinger,
    /// retired connections): children of one task group, which ``close()`` ends.
    let background = BackgroundWork()
    let closed = Atomic<Bool>(false)
    /// Connections of nodes a newer map moved or removed, closed a request timeout later (or by
    /// ``close()``), so requests still using the older map can finish.
    let retired = Mutex<[RPCClient]>([])
    /// Fetches newer cluster maps, one at a time.
    let follower: MapFollower
    /// The versions this client speaks, and each node's highest from the client's handshakes with it.
    let protocols: MemberProtocols
    /// The map check before the first request of a client made from a cluster file (which may be
    /// older than the cluster): nil once done, or when the map came from a node.
    let startCheck = Mutex<StartCheck?>(nil)
    let metrics: ClientMetrics
    /// Each node's batch requests in flight from this client, bounded; the sends past the bound wait.
    let batchWindows: BatchWindows

    enum StartCheck {
        case due
        case running(BackgroundWork.Handle)
    }

    /// Requests this client has sent to nodes for reads and writes (`requestsSent`; tests).
    package var dataRequestsSent: Int { requestsSent.load(ordering: .relaxed) }

    /// Hints this client handed to fallback nodes for replicas that did not acknowledge a write.
    public var hintsHandedOff: Int { hintsSent.load(ordering: .relaxed) }

    /// Repair writes this client has sent to stale replicas.
    public var readRepairsSent: Int { repairsSent.load(ordering: .relaxed) }
    /// The id that breaks ties between equal timestamps of different writers.
    public let writerID: UInt64

    /// The identity in this client's certificate.
    package var identity: PeerIdentity { tls.localIdentity }

    /// The ring and one connection per node, built from one cluster map.
    final class Topology: Sendable {
        let map: ClusterMap
        let ring: Ring
        /// The ring once the membership change in progress is done; nil when nothing is changing.
        /// Writes go to the replicas of both rings meanwhile.
        let next: Ring?
        let nodes: [String: RPCClient]
        /// Every keyspace part of the map not dropped, by id (`default` included): its rings and
        /// defaults, or why it cannot be used.
        let routes: [UInt32: Result<KeyspaceRoute, KVClientError>]
        /// The map's keyspaces' parts by name (`ClusterMap.partsByName`), looked up at every operation.
        let parts: [String: [Keyspace]]

        init(map: ClusterMap, routes: [UInt32: Result<KeyspaceRoute, KVClientError>], nodes: [String: RPCClient]) {
            self.map = map
            self.routes = routes
            self.parts = map.partsByName
            // The default keyspace's route always builds: `install` refuses a map whose ring does not.
            guard case .success(let defaultRoute)? = routes[Keyspace.defaultID] else {
                preconditionFailure("a topology without the default keyspace's route")
            }
            self.ring = defaultRoute.ring
            self.next = defaultRoute.next
            self.nodes = nodes
        }
    }

    /// A client of the cluster `configuration` names. It connects to the nodes at its first request.
    ///
    /// Call ``close()`` when done with it (or run it as a `Service`, or use ``withKVClient(configuration:isolation:_:)``).
    ///
    /// - Throws: ``KVClientError`` when the configuration names no cluster or an address is not
    ///   `HOST:PORT`; a TLS error when the certificate files cannot be read or do not match.
    public init(configuration: KVClientConfiguration) throws {
        guard configuration.cluster != nil || !configuration.endpoints.isEmpty else {
            throw KVClientError.invalidArgument(
                "no cluster: give a cluster map (cluster.yaml) or at least one node address (host:port)")
        }
        guard (1...1_000_000).contains(configuration.batchKeysInFlightPerNode) else {
            throw KVClientError.invalidArgument(
                "batchKeysInFlightPerNode must be 1...1000000, got \(configuration.batchKeysInFlightPerNode)")
        }
        self.configuration = configuration
        self.group = configuration.eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton
        self.operationTimers = OperationTimers(eventLoop: group.next())
        self.metrics = ClientMetrics(factory: configuration.metricsFactory ?? MetricsSystem.factory)
        let metrics = self.metrics
        self.batchWindows = BatchWindows(keysMax: configuration.batchKeysInFlightPerNode) {
            metrics.batchKeysWaiting.record($0)
        }
        self.follower = MapFollower(background: background)
        self.protocols = MemberProtocols(nodeID: nil, versions: configuration.protocolVersions)
        self.health = PeerHealthTable(
            configuration: configuration.failureDetector, wallMillis: configuration.wallClockMillis)
        self.tls = try TLSContext(configuration: configuration.tls.settings, side: .client)
        self.writerID = UInt64.random(in: 1...UInt64.max)
        self.clock = Mutex(
            ClientClock(
                writer: writerID,
                bound: ClientClock.Bound(
                    maxOffset: configuration.maxClockOffset,
                    wallMillis: configuration.wallClockMillis)))
        let identity = tls.localIdentity
        let clusterID = configuration.cluster?.clusterID ?? configuration.clusterID
        self.hello = Hello(
            protocolVersion: WireProtocol.version,
            clusterId: clusterID,
            senderId: identity.name,
            role: identity.role,
            epoch: configuration.cluster?.epoch ?? 0
        )
        var seeds: [RPCClient] = []
        for endpoint in configuration.endpoints {
            let (host, port) = try Self.parse(endpoint)
            seeds.append(
                RPCClient(
                    host: host, port: port, tls: tls, hello: hello, policy: configuration.reconnect,
                    versions: protocols.versions, peerVersions: protocols.peers, group: group))
        }
        self.seeds = seeds
        if let map = configuration.cluster {
            try install(map)
            startCheck.withLock { $0 = .due }
        }
    }

    // MARK: - Reads and writes

    /// The largest key, in bytes (64 KiB); a key must have at least one byte.
    public static let keyBytesMax = Limits.keyBytesMax
    /// The largest value, in bytes: a request frame (16 MiB) less room for the key and the other fields.
    public static let valueBytesMax = Limits.valueBytesMax
    /// The longest time to live a write may carry (10 years).
    public static let timeToLiveMax = Limits.timeToLiveMax

    /// The `default` keyspace, which the client's own reads and writes use.
    var defaultKeyspace: KVKeyspace { keyspace(Keyspace.defaultName) }

    /// Writes `value` under `key`, acknowledged by `consistency` replicas (default: the configuration's
    /// ``KVClientConfiguration/writeConsistency``).
    ///
    /// With `timeToLive`, the key reads as absent from the version's time plus the TTL on, on every
    /// replica at once (the expiry travels with the version), and is purged as deletes are. Writes go
    /// to the `default` keyspace; ``keyspace(_:)`` opens another.
    ///
    /// - Parameters:
    ///   - key: the key, 1 to ``keyBytesMax`` bytes; see ``KVBytes`` for what each type costs in copies.
    ///   - value: the value, at most ``valueBytesMax`` bytes.
    ///   - consistency: how many replicas must acknowledge; nil: the configuration's level.
    ///   - timeToLive: how long the value lives, at most ``timeToLiveMax``; nil: forever.
    /// - Returns: the version the write was stored with.
    /// - Throws: ``KVClientError``: `isInvalidArgument` for a bad key, value, TTL or level (nothing was
    ///   sent), `isUnavailable` when too few replicas acknowledged in time.
    @discardableResult
    public func put(
        _ key: some KVBytes, value: some KVBytes, consistency: KVConsistency? = nil, timeToLive: Duration? = nil
    ) async throws -> KVVersion {
        try await defaultKeyspace.put(key, value: value, consistency: consistency, timeToLive: timeToLive)
    }

    /// Deletes `key` by writing a tombstone, acknowledged by `consistency` replicas (default: the
    /// configuration's ``KVClientConfiguration/writeConsistency``).
    ///
    /// - Returns: the version of the tombstone.
    /// - Throws: ``KVClientError``, as ``put(_:value:consistency:timeToLive:)``.
    @discardableResult
    public func delete(_ key: some KVBytes, consistency: KVConsistency? = nil) async throws -> KVVersion {
        try await defaultKeyspace.delete(key, consistency: consistency)
    }

    /// Reads `key` from `consistency` replicas (default: the configuration's
    /// ``KVClientConfiguration/readConsistency``) and returns the newest version they hold.
    ///
    /// Replicas that answered with an older version are repaired: the newest version is written back
    /// to them, in the background or, with `repair: .blocking`, before the read answers (default: the
    /// configuration's ``KVClientConfiguration/readRepair``).
    ///
    /// - Returns: the value and its version, or nil when the key does not exist, was deleted or expired.
    /// - Throws: ``KVClientError``: `isInvalidArgument` for a bad key or level, `isUnavailable` when too
    ///   few replicas answered in time.
    public func get(_ key: some KVBytes, consistency: KVConsistency? = nil, repair: KVReadRepair? = nil)
        async throws -> KVValue?
    {
        try await defaultKeyspace.get(key, consistency: consistency, repair: repair)
    }

    /// Reads many keys of the `default` keyspace at once, each with its own quorum and version, for
    /// the round trips of a few (``KVKeyspace/get(keys:consistency:repair:)``).
    ///
    /// - Returns: each key's value and version, in the order of `keys` (nil: absent).
    /// - Throws: ``KVClientError``, as ``KVKeyspace/get(keys:consistency:repair:)``.
    public func get<Key: KVBytes>(keys: [Key], consistency: KVConsistency? = nil, repair: KVReadRepair? = nil)
        async throws -> [KVValue?]
    {
        try await defaultKeyspace.get(keys: keys, consistency: consistency, repair: repair)
    }

    /// Writes many keys of the `default` keyspace at once, each with its own version and quorum, for
    /// the round trips of a few (``KVKeyspace/put(_:consistency:timeToLive:)``).
    ///
    /// - Returns: the version of each write, in the order of `entries`.
    /// - Throws: ``KVClientError``, as ``KVKeyspace/put(_:consistency:timeToLive:)``.
    @discardableResult
    public func put<Key: KVBytes, Value: KVBytes>(
        _ entries: [(key: Key, value: Value)], consistency: KVConsistency? = nil, timeToLive: Duration? = nil
    ) async throws -> [KVVersion] {
        try await defaultKeyspace.put(entries, consistency: consistency, timeToLive: timeToLive)
    }

    /// Waits for the hints of earlier writes to be handed off (at most one request timeout), then
    /// closes every connection. Requests after it fail with `isUnavailable`; calling it again returns at
    /// once.
    public func close() async {
        // A `Service` run and an explicit close may both close the client: the first one does it.
        guard !closed.exchange(true, ordering: .relaxed) else { return }
        // Batch requests waiting for room fail now: their batches answer instead of waiting for it.
        batchWindows.close()
        await handOffsEnded()
        // The pinger, map fetches and retire timers are cancelled; every child has returned after.
        await background.shutdown()
        let nodes = topology.withLock { $0?.nodes.values.map { $0 } ?? [] }
        for node in nodes {
            await node.close()
        }
        for seed in seeds {
            await seed.close()
        }
        for client in retired.withLock({ $0 }) {
            await client.close()
        }
    }

    static func parse(_ endpoint: String) throws -> (String, Int) {
        guard let address = HostPort(parsing: endpoint) else {
            throw KVClientError.invalidArgument("address '\(endpoint)' is not HOST:PORT with a valid port")
        }
        return (address.host, address.port)
    }
}
