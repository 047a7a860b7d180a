import Foundation
public import KVCore
public import KVRPC
public import KVStorage
public import KVTLS
public import KVWire
import Logging
import NIOCore
public import NIOPosix
import Synchronization

/// The replica side of the protocol: applies writes to the local store and answers reads.
///
/// A replica never coordinates: clients decide which replicas hold a key and how many must answer.
/// Store calls block, so they run on a thread pool; many concurrent writers then share RocksDB's
/// group commit.
public final class ReplicaService: RPCService {
    private let nodeID: String
    private let cluster: ClusterMap
    private let store: any ReplicaStore
    private let replica: Replica
    private let pool: NIOThreadPool
    private let startedAt = ContinuousClock.now

    private let hints: (any HintStore)?
    private let repairMarker: RepairMarker?
    private let hintQueueMax: Int
    private let wallMillis: @Sendable () -> UInt64
    private let statistics: NodeStatistics

    /// - Parameters:
    ///   - hints: where hints for other replicas are kept; nil for a node that refuses them.
    ///   - repairMarker: marks the range of every refused hint due for anti-entropy on its target;
    ///     required when `hints` is given, so that a refused hint is never lost silently.
    ///   - hintQueueMax: hints held per target before new ones are refused (counted and marked).
    ///   - statistics: the node's counters (Admin stats and swift-metrics).
    public init(
        nodeID: String,
        cluster: ClusterMap,
        store: any ReplicaStore,
        hints: (any HintStore)? = nil,
        repairMarker: RepairMarker? = nil,
        hintQueueMax: Int = NodeConfiguration.hintQueueMaxDefault,
        pool: NIOThreadPool,
        statistics: NodeStatistics,
        wallMillis: @escaping @Sendable () -> UInt64 = ReplicaService.systemMillis
    ) {
        precondition(hints == nil || repairMarker != nil, "a node that holds hints must mark the ranges it refuses")
        self.statistics = statistics
        self.repairMarker = repairMarker
        self.nodeID = nodeID
        self.cluster = cluster
        self.store = store
        self.hints = hints
        self.hintQueueMax = hintQueueMax
        self.wallMillis = wallMillis
        self.replica = Replica(nodeID: nodeID, store: store, wallMillis: wallMillis)
        self.pool = pool
    }

    /// Milliseconds since the Unix epoch, from the system's real-time clock.
    @Sendable public static func systemMillis() -> UInt64 {
        UInt64(max(0, Date().timeIntervalSince1970 * 1000))
    }

    public func handshakeState() -> (epoch: UInt64, clock: UInt64) {
        (cluster.epoch, tick(observing: 0))
    }

    public func handle(_ request: Message, from peer: PeerIdentity) async throws -> Message {
        switch request {
        case .putRequest(let put):
            return try await apply(put)
        case .getRequest(let get):
            return try await read(get)
        case .pingRequest(let ping):
            let keys = store.approximateKeyCount()
            let queues = recordQueues()
            return .pingResponse(
                PingResponse(
                    epoch: cluster.epoch, clock: tick(observing: ping.clock), keys: keys,
                    hintsQueued: UInt64(queues.hintQueueSizes.values.reduce(0, +)), requestsInFlight: 0))
        case .hintRequest(let hint):
            return try await storeHint(hint)
        case .clusterMapRequest:
            return .clusterMapResponse(
                ClusterMapResponse(
                    clusterId: cluster.clusterID, epoch: cluster.epoch,
                    replicationFactor: UInt8(clamping: cluster.replicationFactor),
                    nodes: cluster.nodes.map { node in
                        NodeEntry(id: node.id, address: node.address, tokens: node.tokens, state: .normal)
                    }))
        case .adminRequest(let admin) where admin.command == .stats:
            let uptime = ContinuousClock.now - startedAt
            let queues = recordQueues()
            return .adminResponse(
                AdminResponse(
                    results: [
                        Pair(name: "node", value: nodeID),
                        Pair(name: "keys", value: "\(store.approximateKeyCount())"),
                        Pair(name: "uptime_seconds", value: "\(uptime.components.seconds)"),
                    ]
                        + statistics.snapshot.map { Pair(name: $0.name, value: "\($0.value)") }
                        + [Pair(name: "anti_entropy_ranges_due", value: "\(queues.rangesDue)")]
                        + queues.hintQueueSizes.sorted { $0.key < $1.key }.map {
                            Pair(name: "hints_queued.\($0.key)", value: "\($0.value)")
                        }))
        default:
            throw RPCError.remote(.invalidRequest, message: "\(request.type) is not served by this version of kvd")
        }
    }

    /// Hints queued per target and ranges due for anti-entropy (both from memory), also set as gauges.
    private func recordQueues() -> (hintQueueSizes: [String: Int], rangesDue: Int) {
        let sizes = hints?.hintQueueSizes() ?? [:]
        let due = repairMarker?.rangesDueCount ?? 0
        statistics.recordQueues(hintQueueSizes: sizes, rangesDue: due)
        return (sizes, due)
    }

    private func apply(_ put: PutRequest) async throws -> Message {
        let key = Array(put.key.readableBytesView)
        let repair = put.origin == .readRepair
        if repair {
            statistics.readRepairsReceived.add(1, ordering: .relaxed)
        }
        let record = try Self.record(
            key: key, version: put.version, tombstone: put.tombstone, value: put.value)
        let replica = self.replica
        let (outcome, clock, changed) = try await runOnPool {
            () throws(ReplicaError) -> (ApplyOutcome, UInt64, Bool) in
            // Only for a repair: was what the replica held older? (`apply` answers `.applied` for an
            // equal version too.) A concurrent write may slip in between; this only feeds a counter.
            var older = false
            if repair {
                do throws(StorageError) {
                    older = try replica.store.get(key: key).map { $0.version < record.version } ?? true
                } catch {
                    throw ReplicaError.storage(error)
                }
            }
            let (outcome, clock) = try replica.put(key: key, record: record)
            return (outcome, clock, older && outcome == .applied)
        }
        if changed {
            statistics.readRepairsApplied.add(1, ordering: .relaxed)
        }
        switch outcome {
        case .applied:
            return .putResponse(PutResponse(outcome: .applied, current: put.version, clock: clock))
        case .superseded(let current):
            return .putResponse(PutResponse(outcome: .superseded, current: current, clock: clock))
        }
    }

    /// Keeps a write for a replica that did not acknowledge it, until hint replay hands it over.
    private func storeHint(_ request: HintRequest) async throws -> Message {
        guard let hints else {
            throw RPCError.remote(.invalidRequest, message: "this node does not hold hints")
        }
        guard cluster.node(request.target) != nil else {
            throw RPCError.remote(.unknownNode, message: "no node '\(request.target)' in the cluster")
        }
        let key = Array(request.record.key.readableBytesView)
        let record = try Self.record(
            key: key, version: request.record.version, tombstone: request.record.tombstone,
            value: request.record.value)
        let hint = StoredHint(target: request.target, key: key, record: record, storedAtMillis: wallMillis())
        let queueMax = hintQueueMax
        let outcome = try await runOnPool { () throws(ReplicaError) -> HintStoreOutcome in
            do throws(StorageError) {
                return try hints.storeHint(hint, queueMax: queueMax)
            } catch {
                throw ReplicaError.storage(error)
            }
        }
        if outcome == .refusedQueueFull {
            statistics.hintsRefused.add(1, ordering: .relaxed)
            // Never lost silently: anti-entropy will compare the key's range with the target.
            await repairMarker?.hintRefused(target: request.target, key: key)
        } else {
            statistics.hintsStored.add(1, ordering: .relaxed)
        }
        return .hintResponse(
            HintResponse(
                outcome: outcome == .stored ? .stored : .refused, clock: tick(observing: record.version.hlc)))
    }

    private func read(_ get: GetRequest) async throws -> Message {
        let key = Array(get.key.readableBytesView)
        let replica = self.replica
        let (stored, clock) = try await runOnPool { () throws(ReplicaError) in
            try replica.get(key: key)
        }
        let record = stored.map { stored in
            Record(
                key: ByteBuffer(bytes: key),
                version: stored.version,
                tombstone: stored.tombstone,
                value: ByteBuffer(bytes: stored.value)
            )
        }
        return .getResponse(GetResponse(record: record, clock: clock))
    }

    /// `Replica.record` for wire fields, refusing bad input with the wire's error.
    private static func record(key: [UInt8], version: Version, tombstone: Bool, value: ByteBuffer) throws
        -> StoredRecord
    {
        do {
            return try Replica.record(
                key: key, version: version, tombstone: tombstone, value: Array(value.readableBytesView))
        } catch {
            throw remote(error)
        }
    }

    /// The `Error` frame that answers a replica failure.
    private static func remote(_ error: ReplicaError) -> RPCError {
        switch error {
        case .invalidRequest(let message):
            RPCError.remote(.invalidRequest, message: message)
        case .storage(let storage):
            RPCError.remote(storage.code == .diskFull ? .diskFull : .storageFailure, message: "\(storage)")
        }
    }

    /// Runs a blocking replica call on the thread pool, turning its failures into wire errors.
    private func runOnPool<T: Sendable>(_ body: @escaping @Sendable () throws(ReplicaError) -> T) async throws -> T {
        do {
            return try await pool.runIfActive { try body() }
        } catch let error as ReplicaError {
            throw Self.remote(error)
        } catch {
            throw RPCError.remote(.shuttingDown, message: "the node is shutting down")
        }
    }

    private func tick(observing remote: UInt64) -> UInt64 {
        replica.tick(observing: remote)
    }
}
