import Foundation
import KVCore
public import KVRPC
public import KVStorage
public import KVTLS
public import KVWire
import Logging
import NIOCore
public import NIOPosix

/// The replica side of the protocol: applies writes to the local store and answers reads.
///
/// A replica never coordinates: clients decide which replicas hold a key and how many must answer.
/// Store calls block, so they run on a thread pool; many concurrent writers then share RocksDB's
/// group commit.
public final class ReplicaService: RPCService {
    let nodeID: String
    /// The cluster map and this node's vote on the next one.
    let membership: Membership
    let store: any ReplicaStore
    let replica: Replica
    /// Where every store call of a request waits for the pool (bounded: `storageQueueMax`).
    package let storageQueue: StorageQueue
    let startedAt = ContinuousClock.now

    let hints: (any HintStore)?
    /// The group commit the hints this node keeps go through; nil when it keeps none.
    let hintGroup: HintGroup?
    let merkle: (any MerkleStore)?
    let streaming: (any RangeStreaming)?
    /// The ranges this node replicates (merged) in the map of an epoch, which bound the ranges
    /// `MerkleExchange` may ask about; recomputed when the epoch changes.
    let replicatedRanges = EpochCache<[TokenRangeSpan]>()
    let antiEntropy: AntiEntropy?
    /// The node's view of its peers, for `Admin` stats (`peer_phi.ID`); nil: not reported.
    let health: PeerHealth?
    /// The ranges this node is receiving in a membership change, for `Admin` stats. Given, the node also
    /// refuses the client requests its map does not admit (`ReplicaAdmission`); nil (a replica outside
    /// any cluster, in tests): neither.
    let transfers: TransferBoard?
    /// Which client requests this node serves, for the map of one epoch (recomputed when it changes).
    let admissions = EpochCache<ReplicaAdmission?>()
    /// The keys of each part of a split keyspace, for the map of one epoch.
    let keyRanges = EpochCache<KeyRange>()
    /// Each keyspace's ring (nil: its map has none), for the map of one epoch.
    let rings = EpochCache<Ring?>()
    /// The keyspaces besides the default this node serves; nil: the default only.
    let keyspaces: NodeKeyspaces?
    /// Every keyspace's anti-entropy, for `Admin` repair; nil: `antiEntropy`'s (the default keyspace) only.
    let antiEntropies: AntiEntropies?
    let repairMarker: RepairMarker?
    /// When the node's certificate expires (seconds since the Unix epoch), for `Admin` stats.
    let certificateNotAfterSeconds: UInt64?
    /// The node's `--disk-reserve-bytes`, for `Admin` stats (nil: not said).
    let diskReserveBytes: UInt64?
    /// The node's TLS material, for `Admin` reloadCertificates (and its expiry, once reloaded, for
    /// stats); nil refuses the command.
    let certificates: NodeCertificates?
    let wallMillis: @Sendable () -> UInt64
    let statistics: NodeStatistics
    /// Refuses new requests while the node drains before a restart.
    let drainGate = DrainGate()
    let logger: Logger

    /// - Parameters:
    ///   - hints: where hints for other replicas are kept; nil for a node that refuses them.
    ///   - repairMarker: marks the range of every refused hint due for anti-entropy on its target;
    ///     required when `hints` is given, so that a refused hint is never lost silently.
    ///   - hintQueueMax: hints held per target before new ones are refused (counted and marked).
    ///   - statistics: the node's counters (Admin stats and swift-metrics).
    ///   - merkle: the store's Merkle side (the same store), which answers `MerkleExchange`; nil for a
    ///     node that takes no part in anti-entropy.
    ///   - streaming: the store's range streaming side (the same store), which answers `Stream`; nil
    ///     for a node that hands no range over.
    ///   - replica: the replica logic over `store`, when it is shared with anti-entropy (one clock); a
    ///     new one when nil.
    ///   - antiEntropy: runs `Admin` repair; nil refuses it.
    ///   - keyspaces: the keyspaces the node serves besides the default (over `store`); nil refuses
    ///     requests of any other keyspace.
    ///   - storageQueueMax: store calls that may wait for or run on `pool` at once; past it a request is
    ///     answered `overloaded` at once (counted as `queue_full`).
    public init(
        nodeID: String,
        membership: Membership,
        store: any ReplicaStore,
        hints: (any HintStore)? = nil,
        repairMarker: RepairMarker? = nil,
        hintQueueMax: Int = NodeConfiguration.hintQueueMaxDefault,
        hintBytesMax: Int = NodeConfiguration.hintBytesMaxDefault,
        pool: NIOThreadPool,
        statistics: NodeStatistics,
        merkle: (any MerkleStore)? = nil,
        streaming: (any RangeStreaming)? = nil,
        replica: Replica? = nil,
        antiEntropy: AntiEntropy? = nil,
        health: PeerHealth? = nil,
        transfers: TransferBoard? = nil,
        certificateNotAfterSeconds: UInt64? = nil,
        diskReserveBytes: UInt64? = nil,
        certificates: NodeCertificates? = nil,
        storageQueueMax: Int = NodeConfiguration.storageQueueMaxDefault,
        keyspaces: NodeKeyspaces? = nil,
        antiEntropies: AntiEntropies? = nil,
        wallMillis: @escaping @Sendable () -> UInt64 = ReplicaService.systemMillis
    ) {
        self.keyspaces = keyspaces
        self.antiEntropies = antiEntropies
        self.certificateNotAfterSeconds = certificateNotAfterSeconds
        self.diskReserveBytes = diskReserveBytes
        self.certificates = certificates
        self.health = health
        self.transfers = transfers
        precondition(replica.map { $0.store === store } ?? true, "the replica must run over the service's store")
        precondition(hints == nil || repairMarker != nil, "a node that holds hints must mark the ranges it refuses")
        self.statistics = statistics
        self.repairMarker = repairMarker
        self.nodeID = nodeID
        var logger = Logger(label: "kvd.replica")
        logger[metadataKey: "node.id"] = "\(nodeID)"
        self.logger = logger
        self.membership = membership
        self.store = store
        self.hints = hints
        self.hintGroup = hints.map { hints in
            HintGroup(
                admission: HintAdmission(nodeID: nodeID, queueMax: hintQueueMax, bytesMax: hintBytesMax), hints: hints,
                pool: pool)
        }
        self.wallMillis = wallMillis
        self.replica = replica ?? Replica(nodeID: nodeID, store: store, wallMillis: wallMillis)
        self.merkle = merkle
        self.streaming = streaming
        self.antiEntropy = antiEntropy
        self.storageQueue = StorageQueue(pool: pool, jobsMax: storageQueueMax, statistics: statistics)
    }

    /// Milliseconds since the Unix epoch, from the system's real-time clock.
    @Sendable public static func systemMillis() -> UInt64 {
        UInt64(max(0, Date().timeIntervalSince1970 * 1000))
    }

    public func handshakeState() -> (epoch: UInt64, clock: UInt64) {
        (membership.current.epoch, tick(observing: 0))
    }

    public func handle(_ request: Message, from peer: PeerIdentity) async throws -> Message {
        switch request {
        case .adminRequest(let admin):
            return try await handle(admin)
        case .backupCheckpointRequest, .backupChangesRequest, .backupReadRequest, .backupReleaseRequest:
            // Admin requests too: a draining node can still be backed up.
            return try await serveBackup(request)
        case .clusterMapRequest(let request):
            // Served while draining too: a client, `kvctl` above all, learns the map from any node.
            return try await answer(request)
        default:
            break
        }
        try drainGate.enter()
        defer { drainGate.leave() }
        switch request {
        case .putRequest(let put):
            await untilMap(ofClientWrite: put.origin == .client ? put.epoch : 0)
            return try await apply(put, from: peer, in: try await context(put.keyspace))
        case .getRequest(let get):
            return try await read(get, in: try await context(get.keyspace))
        case .pingRequest(let ping):
            return try pong(ping, from: peer)
        case .heartbeatRequest(let heartbeat):
            return try answer(heartbeat, from: peer)
        case .hintRequest(let hint):
            return try await storeHint(hint, in: try await context(hint.keyspace))
        case .getBatchRequest(let batch):
            return try await readBatch(batch, in: try await context(batch.keyspace))
        case .putBatchRequest(let batch):
            await untilMap(ofClientWrite: batch.epoch)
            return await writeBatch(batch, from: peer, in: try await context(batch.keyspace))
        case .hintBatchRequest(let batch):
            return await storeHints(batch, in: try await context(batch.keyspace))
        case .mapPrepareRequest(let prepare):
            return try await answer(prepare, from: peer)
        case .mapAcceptRequest(let request):
            return try await answer(request, from: peer)
        case .mapCommitRequest(let commit):
            return try await answer(commit, from: peer)
        case .merkleExchangeRequest(let exchange):
            return try await answer(exchange, in: try await context(exchange.keyspace))
        case .merkleFetchRequest(let fetch):
            return try await answer(fetch, in: try await context(fetch.keyspace))
        case .merkleApplyRequest(let request):
            return try await applyBatch(request, in: try await context(request.keyspace))
        case .streamRequest(let request):
            return try await stream(request, in: try await context(request.keyspace))
        default:
            throw RPCError.remote(.invalidRequest, message: "\(request.type) is not served by this version of kvd")
        }
    }

    /// A client's write made with the map of `epoch` (0: not stated) when this node's is older: waits
    /// until this node learns it (the change's commit, or a peer's newer epoch at the next ping), at
    /// most `mapWaitMax`, so that the write is admitted by the map it was made with. A node that has
    /// not learnt a change yet would refuse a new replica's share of it (`notReplica`), and a client
    /// whose map is as new as any gets no newer one to retry with (`NewerMapRetry`): during a ring
    /// change under load, such writes failed while the commit reached the last nodes. Past the wait,
    /// the write is admitted or refused by the map the node has then.
    func untilMap(ofClientWrite epoch: UInt64) async {
        _ = await membership.untilEpoch(epoch, atMost: Self.mapWaitMax)
    }

    /// How long a client's write made with a later map waits for it (`untilMap`): three ping intervals,
    /// in which a node that missed the commit hears the newer epoch from a peer and fetches the map.
    package static let mapWaitMax: Duration = .seconds(3)

    public func mayAnswerWithoutTask(_ type: MessageType) -> Bool {
        type == .getRequest || type == .putRequest || type == .hintRequest || type == .getBatchRequest
            || type == .putBatchRequest || type == .hintBatchRequest
    }

    /// Takes, on the connection's event loop (`InlineAnswerHandler`), a `Get` or `GetBatch` of an open
    /// keyspace that RocksDB answers from memory (answered at once), a `Put` or `PutBatch` (answered
    /// once its group commit wrote it, on the loop or the pool) and a `Hint` or `HintBatch` (answered
    /// from the pool once admitted): no task, no hop but the write's. Refused as `handle` refuses them.
    public func answerWithoutTask(
        _ request: Message, from peer: PeerIdentity,
        reply: @escaping @Sendable (Result<Message, any Error>) -> Void
    ) -> Bool {
        do {
            switch request {
            case .getRequest(let get):
                guard let context = try openedContext(get.keyspace, in: membership.current) else { return false }
                try drainGate.enter()
                defer { drainGate.leave() }
                guard let answer = try readFromMemory(get, in: context) else { return false }
                reply(.success(answer))
                return true
            case .getBatchRequest(let batch):
                guard let context = try openedContext(batch.keyspace, in: membership.current) else { return false }
                try drainGate.enter()
                defer { drainGate.leave() }
                guard let answer = readBatchFromMemory(batch, in: context) else { return false }
                reply(.success(answer))
                return true
            case .putRequest(let put):
                // A client's write made with a later map than this node's waits for it, in `handle`.
                guard put.origin != .readRepair, put.origin != .client || put.epoch <= membership.current.epoch,
                    let context = try openedContext(put.keyspace, in: membership.current)
                else {
                    return false
                }
                try inFlight(reply) { try write(put, from: peer, in: context, completion: $0) }
                return true
            case .putBatchRequest(let batch):
                guard batch.epoch <= membership.current.epoch,
                    let context = try openedContext(batch.keyspace, in: membership.current)
                else {
                    return false
                }
                try inFlight(reply) { done in writeBatch(batch, from: peer, in: context) { done(.success($0)) } }
                return true
            case .hintRequest(let hint):
                guard let context = try openedContext(hint.keyspace, in: membership.current) else { return false }
                try inFlight(reply) { try storeHint(hint, in: context, completion: $0) }
                return true
            case .hintBatchRequest(let batch):
                guard let context = try openedContext(batch.keyspace, in: membership.current) else { return false }
                try inFlight(reply) { done in storeHints(batch, in: context) { done(.success($0)) } }
                return true
            default:
                return false
            }
        } catch {
            reply(.failure(error))
            return true
        }
    }

    /// Starts a request answered later (`start` hands its answer to the completion it is given),
    /// counted in flight from now until that answer goes to `reply`, or until `start` throws.
    private func inFlight(
        _ reply: @escaping @Sendable (Result<Message, any Error>) -> Void,
        _ start: (@escaping @Sendable (Result<Message, any Error>) -> Void) throws -> Void
    ) throws {
        try drainGate.enter()
        do {
            try start { result in
                self.drainGate.leave()
                reply(result)
            }
        } catch {
            drainGate.leave()
            throw error
        }
    }

    /// The `Admin` commands: served while the node drains, and not counted as requests in flight.
    private func handle(_ admin: AdminRequest) async throws -> Message {
        switch admin.command {
        case .reloadCertificates:
            guard let certificates else {
                throw RPCError.remote(.invalidRequest, message: "this node has no certificates to reload")
            }
            return .adminResponse(AdminResponse(results: await certificates.reload(trigger: "admin").adminResults))
        case .repair:
            return try await repair(admin.arguments)
        case .stats:
            return adminStatistics()
        case .drain:
            return try await drain(admin.arguments)
        default:
            throw RPCError.remote(
                .invalidRequest, message: "Admin \(admin.command) is not served by this version of kvd")
        }
    }
}
