import Foundation
import KVCore
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
    /// The cluster map and this node's vote on the next one.
    private let membership: Membership
    private let store: any ReplicaStore
    private let replica: Replica
    /// Where every store call of a request waits for the pool (bounded: `storageQueueMax`).
    private let storageQueue: StorageQueue
    private let startedAt = ContinuousClock.now

    private let hints: (any HintStore)?
    private let merkle: (any MerkleStore)?
    private let streaming: (any RangeStreaming)?
    /// The ranges this node replicates (merged) in the map of an epoch, which bound the ranges
    /// `MerkleExchange` may ask about; recomputed when the epoch changes.
    private let replicatedRanges = Mutex<(epoch: UInt64, ranges: [TokenRangeSpan])?>(nil)
    private let antiEntropy: AntiEntropy?
    /// The node's view of its peers, for `Admin` stats (`peer_phi.ID`); nil: not reported.
    private let health: PeerHealth?
    /// The ranges this node is receiving in a membership change, for `Admin` stats. Given, the node also
    /// refuses the client requests its map does not admit (`ReplicaAdmission`); nil (a replica outside
    /// any cluster, in tests): neither.
    private let transfers: TransferBoard?
    /// Which client requests this node serves, for the map of one epoch (recomputed when it changes).
    private let admissions = Mutex<ReplicaAdmission?>(nil)
    private let repairMarker: RepairMarker?
    private let hintQueueMax: Int
    private let hintBytesMax: Int
    /// When the node's certificate expires (seconds since the Unix epoch), for `Admin` stats.
    private let certificateNotAfterSeconds: UInt64?
    /// The node's TLS material, for `Admin` reloadCertificates (and its expiry, once reloaded, for
    /// stats); nil refuses the command.
    private let certificates: NodeCertificates?
    private let wallMillis: @Sendable () -> UInt64
    private let statistics: NodeStatistics

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
        certificates: NodeCertificates? = nil,
        storageQueueMax: Int = NodeConfiguration.storageQueueMaxDefault,
        wallMillis: @escaping @Sendable () -> UInt64 = ReplicaService.systemMillis
    ) {
        self.certificateNotAfterSeconds = certificateNotAfterSeconds
        self.certificates = certificates
        self.health = health
        self.transfers = transfers
        precondition(replica.map { $0.store === store } ?? true, "the replica must run over the service's store")
        precondition(hints == nil || repairMarker != nil, "a node that holds hints must mark the ranges it refuses")
        self.statistics = statistics
        self.repairMarker = repairMarker
        self.nodeID = nodeID
        self.membership = membership
        self.store = store
        self.hints = hints
        self.hintQueueMax = hintQueueMax
        self.hintBytesMax = hintBytesMax
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
        case .putRequest(let put):
            guard RPCAuthorization.permits(peer.role, toSend: put.origin) else {
                throw RPCError.remote(
                    .notAuthorized, message: "a \(peer.role) certificate may not send a Put of origin \(put.origin)")
            }
            return try await apply(put)
        case .getRequest(let get):
            return try await read(get)
        case .pingRequest(let ping):
            try checkClock(ping.clock, what: "the ping's clock")
            let keys = store.approximateKeyCount()
            let queues = recordQueues()
            let epoch = membership.current.epoch
            if peer.role == .node {
                // A peer that pings us is up: stop treating it as down (its connections' backoff).
                health?.resumeDialling(peer.name)
            }
            if ping.epoch > epoch, peer.role == .node {
                // A peer is ahead: fetch its map (gossip in both directions of a ping).
                health?.gossip(from: peer.name)
            }
            return .pingResponse(
                PingResponse(
                    epoch: epoch, clock: tick(observing: ping.clock), keys: keys,
                    hintsQueued: UInt64(queues.hintQueueSizes.values.reduce(0, +)), requestsInFlight: 0))
        case .hintRequest(let hint):
            return try await storeHint(hint)
        case .clusterMapRequest(let request):
            let kept = try await onMembership { (membership) throws(StorageError) in
                try membership.map(atEpoch: request.epoch)
            }
            guard let (map, proof) = kept else {
                throw RPCError.remote(.invalidRequest, message: "epoch \(request.epoch) is not kept here")
            }
            return .clusterMapResponse(ClusterMapResponse(map, proof: proof))
        case .mapPrepareRequest(let prepare):
            let (vote, epoch) = try await onMembership { (membership) throws(StorageError) in
                try membership.prepare(epoch: prepare.epoch, ballot: prepare.ballot)
            }
            return .mapPrepareResponse(MapPrepareResponse(vote, epoch: epoch))
        case .mapAcceptRequest(let request):
            let proposal = MapProposal(ballot: request.ballot, map: request.map.map)
            let ((vote, signature), epoch) = try await onMembership { (membership) throws(StorageError) in
                try membership.accept(proposal)
            }
            return .mapAcceptResponse(MapAcceptResponse(vote, epoch: epoch, signature: signature))
        case .mapCommitRequest(let commit):
            let (map, proof) = (commit.map.map, commit.proof.mapProof)
            let (learning, epoch) = try await onMembership { (membership) throws(StorageError) in
                (try membership.learn(map, proof: proof), membership.current.epoch)
            }
            switch learning {
            case .adopted, .notNewer:
                break
            case .gap:
                // Behind by more than one epoch: fetch the maps in between from the committer.
                if peer.role == .node { health?.gossip(from: peer.name) }
            case .refused(let reason):
                statistics.mapsRefused.add(1, ordering: .relaxed)
                throw RPCError.remote(.invalidRequest, message: reason)
            }
            return .mapCommitResponse(MapCommitResponse(epoch: epoch))
        case .merkleExchangeRequest(let exchange):
            return try await answer(exchange)
        case .merkleFetchRequest(let fetch):
            return try await answer(fetch)
        case .merkleApplyRequest(let request):
            return try await applyBatch(request)
        case .streamRequest(let request):
            return try await stream(request)
        case .adminRequest(let admin) where admin.command == .reloadCertificates:
            guard let certificates else {
                throw RPCError.remote(.invalidRequest, message: "this node has no certificates to reload")
            }
            return .adminResponse(AdminResponse(results: await certificates.reload(trigger: "admin").adminResults))
        case .adminRequest(let admin) where admin.command == .repair:
            return try await repair(admin.arguments)
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
                        + [
                            Pair(name: "anti_entropy_ranges_due", value: "\(queues.rangesDue)"),
                            Pair(name: "hints_bytes", value: "\(hints?.hintBytesHeld() ?? 0)"),
                        ]
                        + ((certificates?.certificateNotAfterSeconds ?? certificateNotAfterSeconds).map {
                            [Pair(name: "certificate_not_after", value: "\($0)")]
                        } ?? [])
                        + queues.hintQueueSizes.sorted { $0.key < $1.key }.map {
                            Pair(name: "hints_queued.\($0.key)", value: "\($0.value)")
                        }
                        + rangeComparisonPairs()
                        + peerHealthPairs()
                        + membershipPairs()))
        default:
            throw RPCError.remote(.invalidRequest, message: "\(request.type) is not served by this version of kvd")
        }
    }

    /// Each peer's phi (`peer_phi.ID`) and the peers the failure detector suspects (`peers_suspected`,
    /// comma-separated, empty when none).
    /// The map's epoch and change in progress, and each range this node is receiving:
    /// `stream_range.START:END` = `TransferBoard.RangeProgress.summary`.
    private func membershipPairs() -> [Pair] {
        let map = membership.current
        var pairs = [
            Pair(name: "cluster_epoch", value: "\(map.epoch)"),
            Pair(name: "cluster_change", value: map.changeSummary),
        ]
        for range in transfers?.current ?? [] {
            pairs.append(Pair(name: "stream_range.\(range.start):\(range.end)", value: range.summary))
        }
        return pairs
    }

    private func peerHealthPairs() -> [Pair] {
        guard let health else { return [] }
        let phis = health.phi().sorted { $0.key < $1.key }.map {
            Pair(name: "peer_phi.\($0.key)", value: Self.format(phi: $0.value))
        }
        return phis + [Pair(name: "peers_suspected", value: health.suspected().sorted().joined(separator: ","))]
    }

    /// Phi with one decimal (as `Admin` stats carries it).
    static func format(phi: Double) -> String {
        let tenths = (min(phi, 1e9) * 10).rounded()
        return "\(Int(tenths) / 10).\(Int(tenths) % 10)"
    }

    /// When each vnode range was last compared with every co-replica (0: never), and the oldest of
    /// those times (0 while a range was never compared): `Admin` stats' anti-entropy age.
    private func rangeComparisonPairs() -> [Pair] {
        guard let antiEntropy else { return [] }
        let comparisons = antiEntropy.rangeComparisons()
        let oldest = comparisons.contains { $0.millis == nil } ? 0 : comparisons.compactMap(\.millis).min() ?? 0
        return [Pair(name: "anti_entropy_oldest_range_compared_millis", value: "\(oldest)")]
            + comparisons.map {
                Pair(name: "anti_entropy_range_compared.\($0.range.start):\($0.range.end)", value: "\($0.millis ?? 0)")
            }
    }

    /// Hints queued per target and ranges due for anti-entropy (both from memory), also set as gauges.
    private func recordQueues() -> (hintQueueSizes: [String: Int], rangesDue: Int) {
        let sizes = hints?.hintQueueSizes() ?? [:]
        let due = repairMarker?.rangesDueCount ?? 0
        statistics.recordQueues(hintQueueSizes: sizes, rangesDue: due)
        return (sizes, due)
    }

    /// Refuses a client's request for a key this node does not serve in its map: one it does not keep,
    /// a read of a range it is still receiving, a write made with a map older than the change in
    /// progress (`ReplicaAdmission`, the rule the simulator's nodes apply too).
    private func checkAdmitted(_ key: [UInt8], write: Bool, writeEpoch: UInt64 = 0) throws {
        guard transfers != nil else { return }
        let map = membership.current
        let admission = admissions.withLock { cached -> ReplicaAdmission? in
            if let cached, cached.epoch == map.epoch { return cached }
            cached = try? ReplicaAdmission(node: nodeID, map: map)
            return cached
        }
        guard let admission, let reason = admission.refusal(Token(key: key), write: write, writeEpoch: writeEpoch)
        else { return }
        throw RPCError.remote(.notReplica, message: reason)
    }

    private func apply(_ put: PutRequest) async throws -> Message {
        let key = Array(put.key.readableBytesView)
        // Every origin writes only where this node keeps the key. A hint whose target lost the key in
        // a change since is refused here (`notReplica`), and its holder hands it to the key's replicas.
        try checkAdmitted(key, write: true, writeEpoch: put.origin == .client ? put.epoch : 0)
        let repair = put.origin == .readRepair
        if repair {
            statistics.readRepairsReceived.add(1, ordering: .relaxed)
        }
        if put.origin == .antiEntropy {
            statistics.antiEntropyWritesReceived.add(1, ordering: .relaxed)
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

    /// The Merkle store and the asked range, if this node replicates the whole range; else the refusal.
    private func merkleRange(_ wire: TokenRange) throws -> (any MerkleStore, TokenRangeSpan) {
        guard let merkle else {
            throw RPCError.remote(.invalidRequest, message: "this node takes no part in anti-entropy")
        }
        let range = TokenRangeSpan(start: wire.start, end: wire.end)
        guard ranges().contains(where: { $0.contains(range) }) else {
            throw RPCError.remote(.invalidRequest, message: "\(nodeID) does not replicate the whole range \(range)")
        }
        return (merkle, range)
    }

    /// The ranges this node replicates in the current map.
    private func ranges() -> [TokenRangeSpan] {
        let map = membership.current
        return replicatedRanges.withLock { cached in
            if let cached, cached.epoch == map.epoch { return cached.ranges }
            let ranges = (try? map.ring())?.ranges(replicatedBy: nodeID) ?? []
            cached = (map.epoch, ranges)
            return ranges
        }
    }

    /// Answers one question of a co-replica's Merkle comparison (`proto-spec/MERKLE.md`).
    ///
    /// Refused with `invalidRequest`: a range this node does not replicate (whole), more than
    /// `Limits.merkleNodesPerQueryMax` nodes, a node the range's tree does not have, the children of a
    /// leaf; and a listing whose answer would not fit one frame (over `Limits.listCountMax` entries or
    /// `Limits.frameBytesMax` bytes): the answer is never truncated, since a partial listing would read
    /// as missing keys. A leaf is one segment (about keys / 2^20 records), so only a store of billions
    /// of keys, or of thousands of maximum-size keys in one segment, meets that limit.
    private func answer(_ request: MerkleExchangeRequest) async throws -> Message {
        let (merkle, range) = try merkleRange(request.range)
        guard let nodes = MerkleNodeList.decode(request.nodes.readableBytesView) else {
            throw RPCError.remote(
                .invalidRequest,
                message: "the node list is malformed or names more than \(Limits.merkleNodesPerQueryMax) nodes")
        }
        let kind: KVCore.MerkleQuery.Kind
        switch request.query {
        case .root: kind = .root
        case .children: kind = .children
        case .listing, .entryHashes: kind = .listing
        }
        let query = KVCore.MerkleQuery(kind: kind, level: Int(request.level), nodes: nodes)
        let tree = MerkleTree(range: range)
        guard tree.isValid(query) else {
            throw RPCError.remote(
                .invalidRequest, message: "the tree of \(range) (depth \(tree.depth)) cannot answer \(query)")
        }
        let answer = try await runOnPool { () throws(ReplicaError) -> MerkleAnswer in
            do throws(StorageError) {
                // isValid was checked: the store answers every valid query.
                return try merkle.merkleAnswer(to: query, in: tree) ?? MerkleAnswer()
            } catch {
                throw ReplicaError.storage(error)
            }
        }
        if request.query == .entryHashes {
            guard answer.entries.count <= Limits.listCountMax else {
                throw RPCError.remote(
                    .invalidRequest,
                    message:
                        "the leaves of \(query) hold \(answer.entries.count) entries, more than one frame carries; "
                        + "ask fewer nodes")
            }
            return .merkleExchangeResponse(MerkleExchangeResponse(hashes: answer.entries.map(\.hash), entries: []))
        }
        let entryBytes = answer.entries.reduce(0) { $0 + 4 + $1.key.count + 17 }
        let frameBytes = 4 + 10 + 4 + 8 * answer.hashes.count + 4 + entryBytes
        guard answer.entries.count <= Limits.listCountMax, frameBytes <= Limits.frameBytesMax else {
            throw RPCError.remote(
                .invalidRequest,
                message: "the listing of \(query) holds \(answer.entries.count) entries (\(frameBytes) bytes), "
                    + "more than one frame carries; ask fewer nodes")
        }
        return .merkleExchangeResponse(
            MerkleExchangeResponse(
                hashes: answer.hashes,
                entries: answer.entries.map {
                    KeyVersion(key: ByteBuffer(bytes: $0.key), version: $0.version, tombstone: $0.tombstone)
                }))
    }

    /// The second half of a listing by entry hashes (`proto-spec/MERKLE.md`): the records of the named
    /// leaves whose entry hashes were asked for: as version only (`older`) when their hlc is not above
    /// their leaf's guard (a guard of 0 asks for every record whole), else whole when their value fits
    /// `Limits.merkleRecordBytesPerFrameMax` (the first always does), else as key and version. Refused like a `MerkleExchange`: a range not replicated whole, more than
    /// `Limits.merkleLeavesPerListingMax` leaves, a leaf the tree does not have.
    private func answer(_ request: MerkleFetchRequest) async throws -> Message {
        let (merkle, range) = try merkleRange(request.range)
        let tree = MerkleTree(range: range)
        guard
            let leaves = MerkleNodeList.decode(
                request.leaves.readableBytesView, countMax: Limits.merkleLeavesPerListingMax),
            leaves.count == request.valueAboveHlc.count,
            leaves.allSatisfy({ tree.contains(level: tree.depth, index: $0) })
        else {
            throw RPCError.remote(
                .invalidRequest,
                message: "a fetch's leaf list is malformed, names more than \(Limits.merkleLeavesPerListingMax) "
                    + "leaves or one the tree of \(range) (depth \(tree.depth)) does not have, or does not match "
                    + "its \(request.valueAboveHlc.count) guards")
        }
        var positions: [UInt64: Int] = [:]
        for (index, hash) in request.hashes.enumerated() where index <= Int(UInt16.max) {
            positions[hash] = positions[hash] ?? index
        }
        let wanted = positions
        let store = self.store
        let found = try await runOnPool {
            () throws(ReplicaError) -> (records: [Record], entries: [KeyVersion], older: [OlderEntry]) in
            var records: [Record] = []
            var entries: [KeyVersion] = []
            var older: [OlderEntry] = []
            var valueBytes = 0
            do throws(StorageError) {
                for (leaf, valueAboveHlc) in zip(leaves, request.valueAboveHlc) {
                    let span = tree.span(level: tree.depth, index: leaf)
                    for entry in try merkle.merkleListing(of: span) {
                        guard let index = wanted[entry.hash] else { continue }
                        // Read after listing: skipped if it changed meanwhile, as if listed a moment later.
                        guard let record = try store.get(key: entry.key),
                            MerkleEntry(key: entry.key, record: record).hash == entry.hash
                        else { continue }
                        guard valueAboveHlc == 0 || entry.version.hlc > valueAboveHlc else {
                            older.append(
                                OlderEntry(index: UInt16(index), version: record.version, tombstone: record.tombstone))
                            continue
                        }
                        let size = entry.key.count + record.value.count
                        let key = ByteBuffer(bytes: entry.key)
                        if valueBytes == 0 || valueBytes + size <= Limits.merkleRecordBytesPerFrameMax {
                            valueBytes += size
                            records.append(Record(key: entry.key, record))
                        } else {
                            entries.append(KeyVersion(key: key, version: record.version, tombstone: record.tombstone))
                        }
                    }
                }
            } catch {
                throw ReplicaError.storage(error)
            }
            return (records, entries, older)
        }
        return .merkleFetchResponse(
            MerkleFetchResponse(records: found.records, entries: found.entries, older: found.older))
    }

    /// Records in one `StreamResponse` at most.
    static let streamPageRecordsMax = min(Limits.listCountMax, 4096)
    /// Key and value bytes in one `StreamResponse` at most, whatever the request asks: half a frame
    /// leaves room for the records' other fields (a lone larger record still goes, and fits a frame).
    static let streamPageBytesMax = Limits.frameBytesMax / 2
    /// A bound on what a `StreamResponse` frame holds besides its keys and values (headers, lengths,
    /// versions, flags) when it carries one record.
    static let streamRecordOverhead = 1024
    /// Key and value bytes a `StreamResponse` may hold at least, whatever the request asks, so that a
    /// tiny `pageBytesMax` cannot make a stream take one round trip per small record.
    static let streamPageBytesMin = 1 << 10

    /// One page of a range this node replicates, for a node taking it over (`StreamRequest`): the
    /// records after `after`, in the order of the store (`RangeStreaming.streamPage`), with `next` the
    /// last one's key until `done`.
    ///
    /// Refused with `invalidRequest`: a node without a streaming store, a range not within one this
    /// node replicates in its current map, a resume key outside the range.
    private func stream(_ request: StreamRequest) async throws -> Message {
        guard let streaming else {
            throw RPCError.remote(.invalidRequest, message: "this node does not stream ranges")
        }
        let range = TokenRangeSpan(start: request.range.start, end: request.range.end)
        guard ranges().contains(where: { $0.contains(range) }) else {
            throw RPCError.remote(.invalidRequest, message: "\(nodeID) does not replicate the whole range \(range)")
        }
        let after = request.after.map { Array($0.readableBytesView) }
        if let after, !range.contains(Token(key: after)) {
            throw RPCError.remote(
                .invalidRequest,
                message: "the resume key's token \(Token(key: after)) lies outside the streamed range \(range)")
        }
        let bytesMax = max(Self.streamPageBytesMin, min(Int(request.pageBytesMax), Self.streamPageBytesMax))
        let page = try await runOnPool { () throws(ReplicaError) -> StreamPage in
            do throws(StorageError) {
                return try streaming.streamPage(
                    in: range, after: after, recordsMax: Self.streamPageRecordsMax, bytesMax: bytesMax)
            } catch {
                throw ReplicaError.storage(error)
            }
        }
        // `next` repeats the last record's key. A lone record of a large key and a value near the limit
        // leaves no room for it in a frame: it is left out, and the receiver resumes after the last
        // record's key, as it always can.
        var next = page.done ? nil : page.records.last?.key
        if let key = next, page.records.count == 1,
            page.records[0].key.count + page.records[0].record.value.count + key.count + Self.streamRecordOverhead
                > Limits.frameBytesMax
        {
            next = nil
        }
        return .streamResponse(
            StreamResponse(
                records: page.records.map { Record(key: $0.key, $0.record) },
                next: next.map { ByteBuffer(bytes: $0) },
                done: page.done))
    }

    /// Applies an anti-entropy session's records, each through the apply rule as a `Put` with origin
    /// `antiEntropy` would be; answers how many it applied.
    private func applyBatch(_ request: MerkleApplyRequest) async throws -> Message {
        var records: [StreamedRecord] = []
        records.reserveCapacity(request.records.count)
        for record in request.records {
            let checked = try Self.checked(record)
            // An anti-entropy batch writes only where this node keeps every key.
            try checkAdmitted(checked.key, write: true)
            records.append(checked)
        }
        statistics.antiEntropyWritesReceived.add(records.count, ordering: .relaxed)
        let replica = self.replica
        let batch = records
        let (applied, clock) = try await runOnPool { () throws(ReplicaError) -> (Int, UInt64) in
            let (outcomes, clock) = try replica.put(batch)
            return (outcomes.count { $0 == .applied }, clock)
        }
        return .merkleApplyResponse(MerkleApplyResponse(applied: UInt32(applied), clock: clock))
    }

    /// `Admin` repair: one anti-entropy pass now, over every vnode range this node replicates, or those
    /// overlapping the argument `range` (`START:END`, decimal tokens, start exclusive). Answers the
    /// pass's summary (`AntiEntropyReport.pairs`).
    private func repair(_ arguments: [Pair]) async throws -> Message {
        guard let antiEntropy else {
            throw RPCError.remote(.invalidRequest, message: "anti-entropy is not running on this node")
        }
        var range: TokenRangeSpan?
        for argument in arguments {
            switch argument.name {
            case "range":
                guard let parsed = Self.parseRange(argument.value) else {
                    throw RPCError.remote(
                        .invalidRequest, message: "range '\(argument.value)' is not START:END (decimal tokens)")
                }
                range = parsed
            default:
                throw RPCError.remote(.invalidRequest, message: "repair takes no argument '\(argument.name)'")
            }
        }
        let report = await antiEntropy.pass(within: range)
        return .adminResponse(
            AdminResponse(
                results: [Pair(name: "node", value: nodeID)] + report.pairs.map { Pair(name: $0.name, value: $0.value) }
            ))
    }

    /// `START:END`, two decimal `u64` tokens.
    static func parseRange(_ text: String) -> TokenRangeSpan? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let start = UInt64(parts[0]), let end = UInt64(parts[1]) else { return nil }
        return TokenRangeSpan(start: start, end: end)
    }

    /// Keeps a write for a replica that did not acknowledge it, until hint replay hands it over.
    private func storeHint(_ request: HintRequest) async throws -> Message {
        guard let hints else {
            throw RPCError.remote(.invalidRequest, message: "this node does not hold hints")
        }
        guard membership.current.node(request.target) != nil else {
            throw RPCError.remote(.unknownNode, message: "no node '\(request.target)' in the cluster")
        }
        guard request.target != nodeID else {
            // A hint for ourselves would never be replayed (no node replays to itself) and would sit
            // in the hint log for good: the sender must write to us directly.
            statistics.hintsRefused.add(1, ordering: .relaxed)
            throw RPCError.remote(.invalidRequest, message: "\(nodeID) does not hold hints for itself")
        }
        let checked = try Self.checked(request.record)
        let (key, record) = (checked.key, checked.record)
        try checkClock(record.version.hlc, what: "the hint's version")
        let hint = StoredHint(target: request.target, key: key, record: record, storedAtMillis: wallMillis())
        let queueMax = hintQueueMax
        let bytesMax = hintBytesMax
        let outcome = try await runOnPool { () throws(ReplicaError) -> HintStoreOutcome in
            do throws(StorageError) {
                return try hints.storeHint(hint, queueMax: queueMax, bytesMax: bytesMax)
            } catch {
                throw ReplicaError.storage(error)
            }
        }
        if outcome != .stored {
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
        try checkAdmitted(key, write: false)
        let replica = self.replica
        let (stored, clock) = try await runOnPool { () throws(ReplicaError) in
            try replica.get(key: key)
        }
        return .getResponse(GetResponse(record: stored.map { Record(key: key, $0) }, clock: clock))
    }

    /// `Replica.checked` for a peer's record, refusing bad input with the wire's error.
    private static func checked(_ record: Record) throws -> StreamedRecord {
        do {
            return try Replica.checked(record)
        } catch {
            throw remote(error)
        }
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
        case .clockAhead(let message):
            RPCError.remote(.invalidRequest, message: message)
        }
    }

    /// Runs a vote or commit on the thread pool: it fsyncs before answering.
    private func onMembership<T: Sendable>(
        _ body: @escaping @Sendable (Membership) throws(StorageError) -> T
    ) async throws -> T {
        let membership = self.membership
        return try await runOnPool { () throws(ReplicaError) -> T in
            do throws(StorageError) {
                return try body(membership)
            } catch {
                throw ReplicaError.storage(error)
            }
        }
    }

    /// Runs a blocking replica call on the thread pool, through the bounded storage queue (the one
    /// place a request's store calls enter the pool), turning its failures into wire errors.
    private func runOnPool<T: Sendable>(_ body: @escaping @Sendable () throws(ReplicaError) -> T) async throws -> T {
        do {
            return try await storageQueue.run { try body() }
        } catch let error as ReplicaError {
            if case .clockAhead = error { statistics.clockAheadRefused.add(1, ordering: .relaxed) }
            throw Self.remote(error)
        } catch let error as RPCError {
            // The queue is full: `overloaded`, already counted.
            throw error
        } catch {
            throw RPCError.remote(.shuttingDown, message: "the node is shutting down")
        }
    }

    private func tick(observing remote: UInt64) -> UInt64 {
        replica.tick(observing: remote)
    }

    /// Refuses (counted) a clock or version from a peer further ahead than the maximum clock offset.
    private func checkClock(_ remote: UInt64, what: String) throws {
        do {
            try replica.checkClock(remote, what: what)
        } catch {
            statistics.clockAheadRefused.add(1, ordering: .relaxed)
            throw Self.remote(error)
        }
    }
}
