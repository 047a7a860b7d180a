import Foundation
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

    typealias RangeProgress = TransferBoard.RangeProgress

    /// The durable record of a transfer: which change it is for, and each range's progress.
    private struct Checkpoint: Codable, Sendable {
        var change: String
        var ranges: [RangeProgress]
        var verified = false
    }

    private let nodeID: String
    private let membership: Membership
    private let directory: PeerDirectory
    private let replica: Replica
    private let store: any ReplicaStore & RangeStreaming
    private let pool: NIOThreadPool
    private let antiEntropy: AntiEntropy
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
        local: @escaping ClusterChangeDriver.Call
    ) {
        self.board = board
        self.nodeID = nodeID
        self.membership = membership
        self.directory = directory
        self.replica = replica
        self.store = store
        self.pool = pool
        self.antiEntropy = antiEntropy
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
            if map.streaming.contains(nodeID) {
                await receive(map)
                published = false
            } else {
                // The last change's transfers stay on view (all done) until the next one.
                if !published {
                    board.publish(loadCheckpoint()?.ranges ?? [])
                    published = true
                }
                await dropRangesNoLongerHeld(map)
            }
            try? await Task.sleep(for: configuration.interval)
        }
    }

    // MARK: - Receiving

    /// What identifies a change: the rings before and after (a node moving its address does not
    /// change it; anything else that changes the rings is another change).
    private static func changeID(_ map: ClusterMap) -> String {
        func describe(_ ring: Ring?) -> String {
            guard let ring else { return "-" }
            return "\(ring.replicationFactor):"
                + ring.nodes.map { "\($0.id)=\($0.tokens.count)" }.joined(separator: ",")
                + ":\(XXH64.hash(ring.tokens.flatMap { withUnsafeBytes(of: $0.bigEndian, Array.init) }, seed: 0))"
        }
        return describe(try? map.ring()) + "→" + describe(try? map.nextRing())
    }

    private func receive(_ map: ClusterMap) async {
        let change = Self.changeID(map)
        var checkpoint = loadCheckpoint()
        if checkpoint?.change != change {
            checkpoint = Checkpoint(
                change: change,
                ranges: map.transfers(to: nodeID).map { RangeProgress(start: $0.range.start, end: $0.range.end) })
            save(checkpoint!)
            logger.notice(
                "receiving ranges for a membership change",
                metadata: ["cluster.change": "\(map.changeSummary)", "stream.ranges": "\(checkpoint!.ranges.count)"])
        }
        guard var checkpoint else { return }
        board.publish(checkpoint.ranges)
        let transfers = Dictionary(
            map.transfers(to: nodeID).map { ($0.range, $0.sources) }, uniquingKeysWith: { first, _ in first })
        for index in checkpoint.ranges.indices where !checkpoint.ranges[index].done {
            guard !Task.isCancelled, Self.changeID(membership.current) == change else { return }
            let range = TokenRangeSpan(start: checkpoint.ranges[index].start, end: checkpoint.ranges[index].end)
            await pull(range, sources: transfers[range] ?? [], index: index, checkpoint: &checkpoint)
            guard checkpoint.ranges[index].done else { return }  // retried on the next round
        }
        if !checkpoint.verified {
            // Whatever the source lacked (a write it missed) or a page missed (a write between two
            // pages) is copied now, from a majority of the range's old replicas: every write a quorum
            // of them acknowledged is on at least one of those (`kvsim --seed 165 --membership` showed
            // one source is not enough).
            for progress in checkpoint.ranges {
                let range = TokenRangeSpan(start: progress.start, end: progress.end)
                let replicas = transfers[range] ?? []
                var compared = 0
                var failures: [String] = []
                for replica in replicas {
                    let report = await antiEntropy.compare(range, with: replica)
                    if let failure = report.failure {
                        failures.append("\(replica): \(failure)")
                    } else {
                        compared += 1
                    }
                }
                guard compared >= replicas.count / 2 + 1 else {
                    logger.warning(
                        "cannot compare a received range with a majority of its old replicas",
                        metadata: ["ring.range": "\(range)", "error": "\(failures.joined(separator: "; "))"])
                    return
                }
            }
            checkpoint.verified = true
            save(checkpoint)
        }
        await reportStreamed()
    }

    /// Pulls one range, page after page, from the first source that serves it; records the
    /// progress after every page.
    private func pull(_ range: TokenRangeSpan, sources: [String], index: Int, checkpoint: inout Checkpoint) async {
        let suspected = health?.suspected() ?? []
        let ordered = sources.filter { !suspected.contains($0) } + sources.filter(suspected.contains)
        guard !ordered.isEmpty else {
            checkpoint.ranges[index].lastError = "no old replica to receive it from"
            save(checkpoint)
            return
        }
        // After a crash the page that was being applied comes again: count it as resent.
        if checkpoint.ranges[index].pending > 0 {
            statistics.streamKeysResent.add(checkpoint.ranges[index].pending, ordering: .relaxed)
            checkpoint.ranges[index].pending = 0
        }
        for source in ordered {
            guard let client = directory.client(source) else { continue }
            checkpoint.ranges[index].source = source
            // The next page is asked for while this one is applied.
            var next: Task<StreamResponse, any Error>?
            defer { next?.cancel() }
            do {
                next = fetch(range, after: checkpoint.ranges[index].after, from: source, client)
                while !checkpoint.ranges[index].done, let fetching = next {
                    let page = try await withTaskCancellationHandler {
                        try await fetching.value
                    } onCancel: {
                        fetching.cancel()
                    }
                    var bytes = 0
                    let records = try page.records.map { record in
                        let key = Array(record.key.readableBytesView)
                        bytes += key.count + record.value.readableBytes
                        return try Replica.checked(record)
                    }
                    guard page.done || !records.isEmpty else {
                        throw RPCError.remote(.invalidRequest, message: "\(source) sent an empty page before the end")
                    }
                    limiter.spend(bytes)
                    statistics.streamBytes.add(bytes, ordering: .relaxed)
                    next = page.done ? nil : fetch(range, after: records.last?.key, from: source, client)
                    // Noted without an fsync: a process killed before the page is in counts it as resent.
                    checkpoint.ranges[index].pending = records.count
                    save(checkpoint, lazily: true)
                    checkpoint.ranges[index].keys += records.count
                    checkpoint.ranges[index].pending = 0
                    if let last = records.last { checkpoint.ranges[index].after = last.key }
                    checkpoint.ranges[index].done = page.done
                    checkpoint.ranges[index].lastError = nil
                    // The page and the checkpoint that says it is in commit together.
                    try await apply(records, checkpoint: checkpoint)
                    statistics.streamKeysReceived.add(records.count, ordering: .relaxed)
                    board.publish(checkpoint.ranges)
                }
                return
            } catch is CancellationError {
                return
            } catch {
                // Back to what the last page committed (a failed apply left this copy ahead).
                if let stored = loadCheckpoint(), stored.change == checkpoint.change {
                    checkpoint = stored
                }
                statistics.streamKeysResent.add(checkpoint.ranges[index].pending, ordering: .relaxed)
                checkpoint.ranges[index].pending = 0
                checkpoint.ranges[index].retries += 1
                checkpoint.ranges[index].lastError = "\(source): \(error)"
                save(checkpoint)
                board.publish(checkpoint.ranges)
                statistics.streamRetries.add(1, ordering: .relaxed)
                logger.warning(
                    "range transfer failed; trying another source",
                    metadata: ["ring.range": "\(range)", "peer.node_id": "\(source)", "error": "\(error)"])
            }
        }
    }

    /// Asks `source` for the page of `range` after `after`, once the rate allows.
    private func fetch(
        _ range: TokenRangeSpan, after: [UInt8]?, from source: String, _ client: RPCClient
    ) -> Task<StreamResponse, any Error> {
        let limiter = self.limiter
        let request = Message.streamRequest(
            StreamRequest(
                range: TokenRange(start: range.start, end: range.end),
                after: after.map { ByteBuffer(bytes: $0) },
                pageBytesMax: UInt32(configuration.pageBytes)))
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
    private func apply(_ records: [StreamedRecord], checkpoint: Checkpoint) async throws {
        let replica = self.replica
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

    private func loadCheckpoint() -> Checkpoint? {
        guard let bytes = try? store.metadata(Self.checkpointName) else { return nil }
        return try? JSONDecoder().decode(Checkpoint.self, from: Data(bytes))
    }

    /// Records the progress (`lazily`: without waiting for the disk); a failure only means a crash
    /// would redo more, so it is logged.
    private func save(_ checkpoint: Checkpoint, lazily: Bool = false) {
        do {
            let bytes = Array(try JSONEncoder().encode(checkpoint))
            if lazily {
                try store.setMetadataLazily(Self.checkpointName, bytes)
            } else {
                try store.setMetadata(Self.checkpointName, bytes)
            }
        } catch {
            logger.warning("cannot record the transfer's progress", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - Dropping

    /// The ranges this node must keep: those it replicates now or will once the change is done.
    private func kept(_ map: ClusterMap) -> [TokenRangeSpan]? {
        guard let ring = try? map.ring(), let next = try? map.nextRing() else { return nil }
        return ring.ranges(replicatedBy: nodeID) + next.ranges(replicatedBy: nodeID)
    }

    private func dropRangesNoLongerHeld(_ map: ClusterMap) async {
        guard let kept = kept(map) else { return }
        let held = loadHeld()
        guard let held else {
            saveHeld(kept)
            return
        }
        let dropped = TokenRangeSpan.subtracting(kept, from: held)
        guard !dropped.isEmpty, let ring = try? map.ring() else {
            if Set(held) != Set(kept) { saveHeld(kept) }
            return
        }
        var remaining = held
        for span in dropped {
            // Cut at the current ring's vnodes, so each piece has one list of replicas.
            for piece in ring.pieces(of: span) {
                let owners = ring.preferenceList(for: Token(piece.end))
                var complete = true
                for owner in owners where owner != nodeID {
                    let report = await antiEntropy.compare(piece, with: owner)
                    if let failure = report.failure {
                        complete = false
                        logger.info(
                            "keeping a range until its new replica holds it",
                            metadata: ["ring.range": "\(piece)", "peer.node_id": "\(owner)", "error": "\(failure)"])
                        break
                    }
                }
                guard complete else { return }
                let store = self.store
                do {
                    let deleted = try await pool.runIfActive { try store.deleteRange(piece) }
                    statistics.handoffKeysDeleted.add(deleted, ordering: .relaxed)
                    logger.notice(
                        "dropped a range this node no longer replicates",
                        metadata: ["ring.range": "\(piece)", "stream.keys": "\(deleted)"])
                } catch {
                    logger.warning("cannot drop a range", metadata: ["ring.range": "\(piece)", "error": "\(error)"])
                    return
                }
                remaining = TokenRangeSpan.subtracting([piece], from: remaining)
                saveHeld(remaining)
            }
        }
        saveHeld(kept)
    }

    private func loadHeld() -> [TokenRangeSpan]? {
        guard let bytes = try? store.metadata(Self.heldName), bytes.count % 16 == 0 else { return nil }
        let numbers = StorageBytes.decodeNumbers(bytes)
        return stride(from: 0, to: numbers.count, by: 2).map {
            TokenRangeSpan(start: numbers[$0], end: numbers[$0 + 1])
        }
    }

    private func saveHeld(_ spans: [TokenRangeSpan]) {
        do {
            try store.setMetadata(Self.heldName, StorageBytes.encode(spans.flatMap { [$0.start, $0.end] }))
        } catch {
            logger.warning("cannot record the ranges this node holds", metadata: ["error": "\(error)"])
        }
    }
}

/// The progress of the ranges this node is receiving, as the transfer publishes it for `Admin` stats.
public final class TransferBoard: Sendable {
    /// One range's state.
    struct RangeProgress: Codable, Sendable, Hashable {
        var start: UInt64
        var end: UInt64
        /// The last key applied (recorded after each page); nil before the first page.
        var after: [UInt8]?
        var done = false
        var keys = 0
        /// Records of the page being applied when this was recorded (re-received if a crash follows).
        var pending = 0
        var retries = 0
        var lastError: String?
        var source: String?

        /// How `Admin` stats carry it: `done|receiving|retrying keys=K retries=R from=S[ error=…]`.
        var summary: String {
            let state = done ? "done" : (lastError == nil ? "receiving" : "retrying")
            return "\(state) keys=\(keys) retries=\(retries) from=\(source ?? "-")"
                + (lastError.map { " error=\($0.prefix(200))" } ?? "")
        }
    }

    private let ranges = Mutex<[RangeProgress]>([])

    init() {}

    func publish(_ progress: [RangeProgress]) {
        ranges.withLock { $0 = progress }
    }

    var current: [RangeProgress] { ranges.withLock { $0 } }
}
