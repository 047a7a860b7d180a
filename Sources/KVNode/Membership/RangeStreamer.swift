import Foundation
import KVCluster
import KVCore
import KVRPC
import KVStorage
import KVTLS
import KVWire
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The data side of membership changes on one node.
///
/// **Receiving** (this node is in the map's `streaming` list): for each range it must take over
/// (`ClusterMap.transfers(to:)`), it pulls the records page by page (`Stream`) from one of the range's
/// old replicas, applies them like any write (a newer version always wins, so the writes the clients
/// send to both old and new replicas meanwhile are never undone). A page and the checkpoint that says
/// it is in are one RocksDB write batch (one fsync a page), and the next page is asked for while one is
/// applied: a node killed mid-transfer resumes right after the last page it applied, and re-receives
/// only the page it had in hand (counted as resent). A source that fails, or sends nothing for `stallTimeout`, is dropped for the
/// next one, the reason reported (`Admin` stats, `kvctl status`) and the range retried. When every
/// range is in, each is compared with its source through a Merkle exchange (which copies whatever a
/// page missed, both ways), and only then does the node propose `ClusterChange.streamed(node:)` to the
/// voters: the last receiver's proposal switches ownership.
///
/// **Dropping** (after a switch): ranges this node held but no longer replicates, in the current ring
/// or the next, are compared with each of their current replicas (Merkle exchange, copying anything
/// they lack), and deleted only when every comparison completed.
///
/// **Keyspaces**: each keyspace of the map moves its own ranges on its own ring (a *lane*: the
/// keyspace's view of the map, store, replica and anti-entropy, its checkpoints under its own metadata
/// names), one keyspace after the other; the node reports its ranges streamed once every keyspace's
/// are in and verified.
final class RangeStreamer: Sendable {
    struct Configuration: Sendable {
        /// Bytes per second pulled, over all ranges.
        var bytesPerSecond = NodeConfiguration.streamRateDefault
        /// A page that takes longer than this ends the attempt with that source.
        var stallTimeout: Duration = .seconds(NodeConfiguration.streamStallTimeoutSecondsDefault)
        /// Bytes asked per page.
        var pageBytes = 256 << 10
        /// How often the map is looked at when nothing is happening.
        var interval: Duration = .milliseconds(500)
    }

    typealias RangeProgress = RangeTransfer.Progress
    private typealias Checkpoint = RangeTransfer.Checkpoint

    private let nodeID: String
    private let membership: Membership
    private let directory: PeerDirectory
    /// The default keyspace's lane.
    private let root: Lane
    /// The other keyspaces' stores and anti-entropy; nil: the default keyspace only.
    private let keyspaces: (NodeKeyspaces, AntiEntropies)?
    private let pool: NIOThreadPool
    private let health: PeerHealth?
    private let statistics: NodeStatistics
    private let configuration: Configuration
    private let limiter: ByteRateLimiter
    private let logger: Logger
    /// Sends a request to this node itself (its vote on the map).
    private let local: ClusterChangeDriver.Call
    private let board: TransferBoard

    static let checkpointName = "stream.progress"
    static let heldName = "stream.held"

    init(
        nodeID: String, membership: Membership, directory: PeerDirectory, replica: Replica,
        store: any ReplicaStore & RangeStreaming, pool: NIOThreadPool, antiEntropy: AntiEntropy, health: PeerHealth?,
        statistics: NodeStatistics, configuration: Configuration, logger: Logger, board: TransferBoard,
        keyspaces: (NodeKeyspaces, AntiEntropies)? = nil, local: @escaping ClusterChangeDriver.Call
    ) {
        self.root = Lane(id: Keyspace.defaultID, replica: replica, store: store, antiEntropy: antiEntropy)
        self.keyspaces = keyspaces
        self.board = board
        self.nodeID = nodeID
        self.membership = membership
        self.directory = directory
        self.pool = pool
        self.health = health
        self.statistics = statistics
        self.configuration = configuration
        self.limiter = ByteRateLimiter(bytesPerSecond: configuration.bytesPerSecond)
        self.logger = logger
        self.local = local
    }

    /// Receives and drops ranges as the map asks, until cancelled.
    func run() async {
        // Whether the stored checkpoint is on the board since the last transfer (read once, not
        // every round).
        var published = false
        while !Task.isCancelled {
            let map = membership.current
            let lanes = await self.lanes(map)
            if map.streaming.contains(nodeID) {
                await receive(lanes, map)
                published = false
            } else {
                // The last change's transfers stay on view (all done) until the next one.
                if !published {
                    board.publishFinished(lanes.flatMap { loadCheckpoint($0)?.ranges ?? [] })
                    published = true
                }
                for lane in lanes { await dropRangesNoLongerHeld(map, lane) }
            }
            try? await Task.sleep(for: configuration.interval)
        }
    }

    /// One keyspace's side of the transfers.
    private struct Lane: Sendable {
        let id: UInt32
        let replica: Replica
        let store: any ReplicaStore & RangeStreaming
        let antiEntropy: AntiEntropy

        /// The map as the keyspace sees it; nil when the map does not have the keyspace.
        func view(_ map: ClusterMap) -> ClusterMap? {
            map.keyspace(id: id).map { map.viewed(as: $0) }
        }
    }

    /// The lanes of the keyspaces of `map`, the default first (a keyspace that cannot be opened is
    /// left out this round, and logged).
    private func lanes(_ map: ClusterMap) async -> [Lane] {
        var lanes = [root]
        guard let (keyspaces, antiEntropies) = self.keyspaces else { return lanes }
        for keyspace in map.keyspaces where !keyspace.dropped {
            do {
                guard let served = try await keyspaces.served(keyspace.id, in: map, on: pool),
                    let antiEntropy = await antiEntropies.of(keyspace.id)
                else { continue }
                lanes.append(
                    Lane(id: served.id, replica: served.replica, store: served.store, antiEntropy: antiEntropy))
            } catch {
                logger.warning(
                    "cannot open a keyspace for range transfers",
                    metadata: ["keyspace.id": "\(keyspace.id)", "error": "\(error)"])
            }
        }
        return lanes
    }

    // MARK: - Receiving

    /// Receives every keyspace's ranges for the change in progress, one keyspace after the other, then
    /// reports them streamed (KVCore's `KeyspaceTransfers` says which, in what order, and when).
    private func receive(_ lanes: [Lane], _ map: ClusterMap) async {
        var transfers = KeyspaceTransfers(map: map)
        while case .receive(let keyspace) = transfers.step {
            // A keyspace whose store could not be opened this round (logged) is waited for: reporting
            // without its ranges would switch ownership to a node that lacks them.
            guard let lane = lanes.first(where: { $0.id == keyspace.id }), await receive(lane) else { return }
            transfers.received(keyspace.id)
        }
        await reportStreamed()
    }

    /// Drives KVCore's `RangeTransfer` for one keyspace in the change in progress: pulls the ranges and
    /// verifies them against enough of their old replicas to meet every quorum write. True once all
    /// are in and verified.
    private func receive(_ lane: Lane) async -> Bool {
        guard let map = lane.view(membership.current) else { return true }
        var transfer = RangeTransfer(node: nodeID, map: map, resuming: loadCheckpoint(lane))
        if transfer.isNew {
            save(transfer.checkpoint, lane)
            if !transfer.checkpoint.ranges.isEmpty {
                logger.notice(
                    "receiving ranges for a membership change",
                    metadata: [
                        "cluster.change": "\(map.changeSummary)", "keyspace.id": "\(lane.id)",
                        "stream.ranges": "\(transfer.checkpoint.ranges.count)",
                    ])
            }
        }
        let change = transfer.checkpoint.change
        board.publish(transfer.checkpoint.ranges, receiving: change)
        while !Task.isCancelled, let now = lane.view(membership.current), RangeTransfer.changeID(now) == change {
            switch transfer.step {
            case .pull(let index, let sources):
                await pull(index: index, sources: sources, transfer: &transfer, lane)
                guard transfer.checkpoint.ranges[index].done else { return false }  // retried on the next round
            case .verify:
                // Whatever the source lacked (a write it missed) or a page missed (a write between two
                // pages) is copied now, from the range's old replicas.
                var compared: [TokenRangeSpan: Int] = [:]
                var failures: [String] = []
                for progress in transfer.checkpoint.ranges {
                    for replica in transfer.sources(of: progress.range) {
                        let report = await lane.antiEntropy.compare(progress.range, with: replica)
                        if let failure = report.failure {
                            failures.append("\(replica): \(failure)")
                        } else {
                            compared[progress.range, default: 0] += 1
                        }
                    }
                }
                if let range = transfer.verified(compared: compared) {
                    logger.warning(
                        "cannot compare a received range with enough of its old replicas (N − N/2) to meet every quorum write",
                        metadata: ["ring.range": "\(range)", "error": "\(failures.joined(separator: "; "))"])
                    return false
                }
                save(transfer.checkpoint, lane)
            case .report:
                return true
            }
        }
        return false
    }

    /// Pulls one range, page after page, from the first of `sources` that serves it; records the
    /// progress after every page.
    private func pull(index: Int, sources: [String], transfer: inout RangeTransfer, _ lane: Lane) async {
        let range = transfer.checkpoint.ranges[index].range
        let ordered = health?.table.healthyFirst(sources) ?? sources
        guard !ordered.isEmpty else {
            transfer.checkpoint.ranges[index].lastError = "no old replica to receive it from"
            save(transfer.checkpoint, lane)
            return
        }
        // After a crash the page that was being applied comes again: count it as resent.
        if transfer.checkpoint.ranges[index].pending > 0 {
            statistics.streamKeysResent.add(transfer.checkpoint.ranges[index].pending, ordering: .relaxed)
            transfer.checkpoint.ranges[index].pending = 0
        }
        for source in ordered {
            guard let client = directory.client(source) else { continue }
            transfer.checkpoint.ranges[index].source = source
            // The next page is asked for while this one is applied.
            var next: Task<StreamResponse, any Error>?
            defer { next?.cancel() }
            do {
                next = fetch(range, after: transfer.checkpoint.ranges[index].after, from: source, client, lane)
                while !transfer.checkpoint.ranges[index].done, let fetching = next {
                    let page = try await withTaskCancellationHandler {
                        try await fetching.value
                    } onCancel: {
                        fetching.cancel()
                    }
                    var bytes = 0
                    let records = try page.records.map { record in
                        bytes += record.key.readableBytes + record.value.readableBytes
                        return try Replica.checked(record)
                    }
                    guard page.done || !records.isEmpty else {
                        throw RPCError.remote(.invalidRequest, message: "\(source) sent an empty page before the end")
                    }
                    limiter.spend(bytes)
                    statistics.streamBytes.add(bytes, ordering: .relaxed)
                    next = page.done ? nil : fetch(range, after: records.last?.key, from: source, client, lane)
                    // Noted without an fsync: a process killed before the page is in counts it as resent.
                    transfer.checkpoint.ranges[index].pending = records.count
                    save(transfer.checkpoint, lane, lazily: true)
                    transfer.applied(
                        index: index, count: records.count, lastKey: records.last?.key, done: page.done, from: source)
                    // The page and the checkpoint that says it is in commit together.
                    try await apply(records, checkpoint: transfer.checkpoint, lane)
                    statistics.streamKeysReceived.add(
                        records.count, keyspace: KeyspaceLabel.label(of: lane.id, in: membership.current))
                    board.publish(transfer.checkpoint.ranges, receiving: transfer.checkpoint.change)
                }
                return
            } catch is CancellationError {
                return
            } catch {
                // Back to what the last page committed (a failed apply left this copy ahead).
                if let stored = loadCheckpoint(lane), stored.change == transfer.checkpoint.change {
                    transfer.checkpoint = stored
                }
                statistics.streamKeysResent.add(transfer.checkpoint.ranges[index].pending, ordering: .relaxed)
                transfer.failed(index: index, source: source, reason: "\(error)")
                save(transfer.checkpoint, lane)
                board.publish(transfer.checkpoint.ranges, receiving: transfer.checkpoint.change)
                statistics.streamRetries.add(1, ordering: .relaxed)
                logger.warning(
                    "range transfer failed; trying another source",
                    metadata: ["ring.range": "\(range)", "peer.node_id": "\(source)", "error": "\(error)"])
            }
        }
    }

    /// Asks `source` for the page of `range` after `after`, once the rate allows.
    private func fetch(
        _ range: TokenRangeSpan, after: [UInt8]?, from source: String, _ client: RPCClient, _ lane: Lane
    ) -> Task<StreamResponse, any Error> {
        let limiter = self.limiter
        let request = Message.streamRequest(
            StreamRequest(
                range: TokenRange(start: range.start, end: range.end),
                after: after.map { ByteBuffer(bytes: $0) },
                pageBytesMax: UInt32(configuration.pageBytes), keyspace: lane.id))
        let timeout = configuration.stallTimeout
        return Task {
            try await limiter.waitForCredit()
            let answer = try await client.call(request, timeout: timeout)
            guard case .streamResponse(let page) = answer else {
                throw RPCError.remote(.invalidRequest, message: "\(source) answered Stream with \(answer.type)")
            }
            return page
        }
    }

    /// Applies a page and records `checkpoint` in one store write, on the thread pool: one fsync for
    /// the page, and a crash keeps both or neither.
    private func apply(_ records: [StreamedRecord], checkpoint: Checkpoint, _ lane: Lane) async throws {
        let replica = lane.replica
        let entry = MetadataEntry(name: Self.checkpointName, value: Array(try JSONEncoder().encode(checkpoint)))
        try await pool.runIfActive { _ = try replica.put(records, setting: entry) }
    }

    /// Proposes that this node received its ranges, until the map no longer lists it (a conflict
    /// with another receiver's proposal is retried on the newer map).
    private func reportStreamed() async {
        while !Task.isCancelled {
            let base = membership.current
            guard base.streaming.contains(nodeID) else { return }
            do {
                let proposed = try base.applying(.streamed(node: nodeID))
                let ballot = Ballot(
                    round: ReplicaService.systemMillis(), proposer: "\(nodeID)#\(UInt32.random(in: 0...UInt32.max))")
                let nodeID = self.nodeID
                let directory = self.directory
                let local = self.local
                let chosen = try await ClusterChangeDriver.decide(
                    base: base, proposed: proposed, ballot: ballot, verifier: membership.votes
                ) { node, request in
                    if node == nodeID { return try await local(node, request) }
                    guard let client = directory.client(node) else {
                        throw RPCError.remote(.unknownNode, message: "no connection to \(node)")
                    }
                    return try await client.call(request, timeout: .seconds(5))
                }
                logger.notice(
                    "received every range of the membership change",
                    metadata: ["cluster.epoch": "\(chosen.epoch)", "cluster.change": "\(chosen.changeSummary)"])
                return
            } catch {
                logger.info("cannot report the received ranges yet; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func loadCheckpoint(_ lane: Lane) -> Checkpoint? {
        guard let bytes = try? lane.store.metadata(Self.checkpointName) else { return nil }
        return try? JSONDecoder().decode(Checkpoint.self, from: Data(bytes))
    }

    /// Records the progress (`lazily`: without waiting for the disk); a failure only means a crash
    /// would redo more, so it is logged.
    private func save(_ checkpoint: Checkpoint, _ lane: Lane, lazily: Bool = false) {
        do {
            let bytes = Array(try JSONEncoder().encode(checkpoint))
            if lazily {
                try lane.store.setMetadataLazily(Self.checkpointName, bytes)
            } else {
                try lane.store.setMetadata(Self.checkpointName, bytes)
            }
        } catch {
            logger.warning("cannot record the transfer's progress", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - Dropping

    /// Drops the pieces KVCore's `RangeTransfer.drops` lists, each once every owner compared it.
    private func dropRangesNoLongerHeld(_ whole: ClusterMap, _ lane: Lane) async {
        guard let map = lane.view(whole), let kept = RangeTransfer.kept(by: nodeID, in: map) else { return }
        guard let held = loadHeld(lane) else {
            saveHeld(kept, lane)
            return
        }
        guard let ring = try? map.ring(),
            case let drops = RangeTransfer.drops(held: held, kept: kept, node: nodeID, ring: ring),
            !drops.isEmpty
        else {
            if Set(held) != Set(kept) { saveHeld(kept, lane) }
            return
        }
        var remaining = held
        for drop in drops {
            let piece = drop.piece
            for owner in drop.owners {
                let report = await lane.antiEntropy.compare(piece, with: owner)
                if let failure = report.failure {
                    logger.info(
                        "keeping a range until its new replica holds it",
                        metadata: ["ring.range": "\(piece)", "peer.node_id": "\(owner)", "error": "\(failure)"])
                    return
                }
            }
            let store = lane.store
            do {
                let deleted = try await pool.runIfActive { try store.deleteRange(piece) }
                statistics.handoffKeysDeleted.add(deleted, ordering: .relaxed)
                logger.notice(
                    "dropped a range this node no longer replicates",
                    metadata: ["ring.range": "\(piece)", "keyspace.id": "\(lane.id)", "stream.keys": "\(deleted)"])
            } catch {
                logger.warning("cannot drop a range", metadata: ["ring.range": "\(piece)", "error": "\(error)"])
                return
            }
            remaining = TokenRangeSpan.subtracting([piece], from: remaining)
            saveHeld(remaining, lane)
        }
        saveHeld(kept, lane)
    }

    private func loadHeld(_ lane: Lane) -> [TokenRangeSpan]? {
        guard let bytes = try? lane.store.metadata(Self.heldName), bytes.count % 16 == 0 else { return nil }
        let numbers = StorageBytes.decodeNumbers(bytes)
        return stride(from: 0, to: numbers.count, by: 2).map {
            TokenRangeSpan(start: numbers[$0], end: numbers[$0 + 1])
        }
    }

    private func saveHeld(_ spans: [TokenRangeSpan], _ lane: Lane) {
        do {
            try lane.store.setMetadata(Self.heldName, StorageBytes.encode(spans.flatMap { [$0.start, $0.end] }))
        } catch {
            logger.warning("cannot record the ranges this node holds", metadata: ["error": "\(error)"])
        }
    }
}

/// The progress of the ranges this node is receiving, as the transfer publishes it for `Admin` stats,
/// with when this process began receiving them and the share it had then (for the ETA).
public final class TransferBoard: Sendable {
    typealias RangeProgress = RangeTransfer.Progress

    private struct State {
        var ranges: [RangeProgress] = []
        /// The change being received, when this process began receiving it, and the share then; nil
        /// when it receives nothing.
        var receiving: (change: String, since: ContinuousClock.Instant, shareAtStart: Double)?
    }

    private let state = Mutex(State())

    package init() {}

    /// The progress of the ranges of `change`, being received; a new change restarts the clock.
    func publish(_ progress: [RangeProgress], receiving change: String) {
        state.withLock { state in
            state.ranges = progress
            if state.receiving?.change != change {
                state.receiving = (change, .now, TransferProgress.share(of: progress))
            }
        }
    }

    /// The ranges of the last change, received (or nothing being received).
    func publishFinished(_ progress: [RangeProgress]) {
        state.withLock { state in
            state.ranges = progress
            state.receiving = nil
        }
    }

    var current: [RangeProgress] { state.withLock { $0.ranges } }

    /// The share received, the share at the start and the time since, while receiving.
    var rate: (share: Double, shareAtStart: Double, elapsed: Duration)? {
        state.withLock { state in
            guard let receiving = state.receiving else { return nil }
            return (TransferProgress.share(of: state.ranges), receiving.shareAtStart, .now - receiving.since)
        }
    }
}
