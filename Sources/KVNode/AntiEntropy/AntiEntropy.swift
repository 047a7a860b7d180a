package import KVCore
package import KVStorage
package import Logging
import Synchronization

/// A node's anti-entropy: compares every vnode range it replicates with each co-replica of that range,
/// and copies what differs (`AntiEntropySession`), periodically and on demand (`Admin` repair).
///
/// One pass:
/// 1. Ranges marked due (`RepairMarkStore`, a hint refused or expired) come first. A marked range this
///    node replicates is compared with all its co-replicas; one it does not replicate (the mark was
///    left by a hint this node held as a fallback) is compared between the marked replica and another
///    replica of the range, both over RPC. A mark is cleared only after its range was compared without
///    error with every co-replica.
/// 2. Then every vnode range the node replicates (`Ring.vnodeRanges(replicatedBy:)`: unmerged, so that
///    both sides of a session replicate exactly the compared span) with each co-replica (the range's
///    preference list minus this node), one co-replica after the other. If a later co-replica gave
///    this node newer records, the earlier co-replicas are compared again, so that a pass leaves every
///    replica of the range with the newest version this node saw. That order, and 3's condition, are
///    KVCore's `RangeRepair`, which the simulator's nodes drive too.
/// 3. A range compared without error with every co-replica has its tombstones older than the
///    tombstone grace period purged (`TombstonePurging`): every replica then held them or something
///    newer, or held nothing for the key (it purged it already). While any co-replica is down its
///    sessions fail, so nothing of its ranges is purged until it is back and has the tombstone.
///    During the comparison, a tombstone older than the grace period is not copied to a replica that
///    holds nothing for its key, only over an older value (`MerkleComparison.purgeHorizon`).
///
/// A node's passes never overlap, over all its keyspaces (`serving` shares one `PassGate`): an
/// on-demand pass, or another keyspace's, waits for a running one to end. Sessions of different
/// ranges run `sessionsInParallel` at a time; all of them share one `ByteRateLimiter`.
public final class AntiEntropy: Sendable {
    package struct Configuration: Sendable {
        /// Between periodic passes (jittered ±`jitter`); nil: no periodic passes.
        package var interval: Duration? = .seconds(NodeConfiguration.antiEntropyIntervalSecondsDefault)
        package var jitter = 0.2
        /// Bytes per second over all sessions (`ByteRateLimit`).
        package var bytesPerSecond = NodeConfiguration.antiEntropyRateDefault
        /// Sessions (ranges) compared at once.
        package var sessionsInParallel = 2
        /// Records copied at once within a session.
        package var copiesInParallel = 8
        /// How old a tombstone must be before a pass may purge it; nil: never purged. Longer than the
        /// hint window and any client's request timeout (`NodeConfiguration.tombstoneGrace`).
        package var tombstoneGrace: Duration? = nil

        package init() {}
    }

    private let nodeID: String
    /// The keyspace whose ranges the passes compare (0: the default).
    package let keyspace: UInt32
    /// The ring passes work on: the one given, or the current map's when the node follows its map.
    private let initialRing: Ring
    private let membership: Membership?
    private let local: LocalAntiEntropyReplica
    private let peers: [String: any AntiEntropyReplica]
    /// Makes the replica of a peer not in `peers` (one that joined the map since the start).
    private let makePeer: (@Sendable (String) -> any AntiEntropyReplica)?
    private let marks: any RepairMarkStore
    private let configuration: Configuration
    private let limiter: ByteRateLimiter
    private let statistics: NodeStatistics
    private let wallMillis: @Sendable () -> UInt64
    private let logger: Logger
    /// Held by the pass running now, of this keyspace or another (shared by `serving`).
    private let gate: PassGate
    /// When each vnode range (by its end) was last compared without error with every co-replica, in
    /// ms since the Unix epoch; kept in `checkpoint` under `comparedName`.
    private let lastCompared: Mutex<[UInt64: UInt64]>
    /// When each range (by its end) was last scanned for tombstones to purge (ms, this run only).
    private let lastPurged = Mutex<[UInt64: UInt64]>([:])
    /// Where a whole pass records the ranges it finished, so that a pass cut short by a crash resumes
    /// after them; nil keeps no checkpoint.
    private let checkpoint: (any ReplicaStore)?
    /// The metadata name of the checkpoint: the ends of the vnode ranges the unfinished pass
    /// compared without error, 8 bytes each, big-endian.
    package static let checkpointName = "antientropy.pass"
    /// The metadata name of the last-compared times: (range end, ms) pairs, 16 bytes each, big-endian.
    package static let comparedName = "antientropy.compared"

    package init(
        nodeID: String,
        ring: Ring,
        local: LocalAntiEntropyReplica,
        peers: [String: any AntiEntropyReplica],
        marks: any RepairMarkStore,
        configuration: Configuration,
        statistics: NodeStatistics,
        wallMillis: @escaping @Sendable () -> UInt64,
        logger: Logger,
        checkpoint: (any ReplicaStore)? = nil,
        membership: Membership? = nil,
        makePeer: (@Sendable (String) -> any AntiEntropyReplica)? = nil,
        keyspace: UInt32 = 0,
        limiter: ByteRateLimiter? = nil,
        gate: PassGate? = nil
    ) {
        self.keyspace = keyspace
        self.checkpoint = checkpoint
        self.nodeID = nodeID
        self.initialRing = ring
        self.membership = membership
        self.makePeer = makePeer
        self.local = local
        self.peers = peers
        self.marks = marks
        self.configuration = configuration
        self.limiter = limiter ?? ByteRateLimiter(bytesPerSecond: configuration.bytesPerSecond)
        self.gate = gate ?? PassGate()
        self.statistics = statistics
        self.wallMillis = wallMillis
        self.logger = logger
        var compared: [UInt64: UInt64] = [:]
        if let bytes = try? checkpoint?.metadata(Self.comparedName), bytes.count % 16 == 0 {
            let numbers = StorageBytes.decodeNumbers(bytes)
            for index in stride(from: 0, to: numbers.count, by: 2) {
                compared[numbers[index]] = numbers[index + 1]
            }
        }
        lastCompared = Mutex(compared)
    }

    /// The keyspace's ring in the current map when following one (`membership`), else the one given.
    private var ring: Ring {
        guard let membership, case let map = membership.current, let keyspace = map.keyspace(id: keyspace),
            let ring = try? map.ring(of: keyspace)
        else { return initialRing }
        return ring
    }

    /// The keyspace's label in the node's map, for the counters by keyspace.
    private var keyspaceLabel: String {
        KeyspaceLabel.label(of: keyspace, in: membership?.current)
    }

    /// The same anti-entropy for another keyspace: its store (`local`, the checkpoint and marks), its
    /// ring, its peers' requests naming it; the configuration, counters, byte budget and pass gate
    /// shared.
    package func serving(
        _ keyspace: UInt32, local: LocalAntiEntropyReplica, store: any ReplicaStore & RepairMarkStore,
        makePeer: @escaping @Sendable (String) -> any AntiEntropyReplica
    ) -> AntiEntropy {
        AntiEntropy(
            nodeID: nodeID, ring: initialRing, local: local, peers: [:], marks: store, configuration: configuration,
            statistics: statistics, wallMillis: wallMillis, logger: logger, checkpoint: store, membership: membership,
            makePeer: makePeer, keyspace: keyspace, limiter: limiter, gate: gate)
    }

    /// The replica of peer `id`.
    private func peer(_ id: String) -> (any AntiEntropyReplica)? {
        peers[id] ?? makePeer?(id)
    }

    /// Each vnode range this node replicates, with when it was last compared without error with every
    /// co-replica (ms since the Unix epoch; nil: never, since this node's data began).
    package func rangeComparisons() -> [(range: TokenRangeSpan, millis: UInt64?)] {
        let compared = lastCompared.withLock { $0 }
        return ring.vnodeRanges(replicatedBy: nodeID).map { ($0, compared[$0.end]) }
    }

    /// Records that `range` was compared with every co-replica now, durably (a failure is logged).
    private func recordCompared(_ range: TokenRangeSpan) {
        let now = wallMillis()
        let numbers = lastCompared.withLock { compared -> [UInt64] in
            compared[range.end] = now
            return compared.sorted { $0.key < $1.key }.flatMap { [$0.key, $0.value] }
        }
        do {
            try checkpoint?.setMetadata(Self.comparedName, StorageBytes.encode(numbers))
        } catch {
            logger.warning("cannot save when ranges were compared", metadata: ["error": "\(error)"])
        }
    }

    /// Runs a pass every `interval` (jittered) until the task is cancelled; returns at once when
    /// periodic passes are off.
    package func run() async {
        guard let interval = configuration.interval else { return }
        while !Task.isCancelled, membership?.current.hasDropped(keyspace: keyspace) != true {
            let factor = 1 + Double.random(in: -configuration.jitter...configuration.jitter)
            do {
                try await Task.sleep(for: interval * factor)
            } catch {
                return
            }
            let report = await pass(within: nil)
            logger.info(
                "anti-entropy pass",
                metadata: [
                    "repair.ranges": "\(report.rangesCompared)", "repair.keys_sent": "\(report.keysSent)",
                    "repair.keys_received": "\(report.keysReceived)", "repair.bytes": "\(report.bytes)",
                    "repair.errors": "\(report.errors)",
                ])
        }
    }

    /// Runs one pass now, over the vnode ranges that overlap `range` (all when nil), after any pass
    /// already running on this node.
    package func pass(within range: TokenRangeSpan?) async -> AntiEntropyReport {
        while !gate.running.withLock({ running in
            defer { running = true }
            return !running
        }) {
            do {
                try await Task.sleep(for: .milliseconds(100))
            } catch {
                var report = AntiEntropyReport()
                report.record(failure: "cancelled while waiting for the running pass")
                return report
            }
        }
        defer { gate.running.withLock { $0 = false } }
        let started = ContinuousClock.now
        var report = await runPass(within: range)
        report.duration = ContinuousClock.now - started
        if range == nil && report.errors == 0 {
            statistics.recordFullPass(keyspace: keyspace, atMillis: wallMillis())
        }
        return report
    }

    private func runPass(within filter: TokenRangeSpan?) async -> AntiEntropyReport {
        func wanted(_ span: TokenRangeSpan) -> Bool { filter.map { $0.overlaps(span) } ?? true }
        let mine = ring.vnodeRanges(replicatedBy: nodeID).filter(wanted)
        let mineSet = Set(mine)
        let due = marks.rangesDue().filter { wanted($0.range) }
        // A whole pass goes on after the ranges an unfinished one (cut short by a crash) finished.
        let wholePass = filter == nil && checkpoint != nil
        var finished = wholePass ? loadCheckpoint() : []
        var report = AntiEntropyReport()
        var work: [Work] = []
        // Marked ranges first: this node's own, then the ones it only held hints for.
        let dueRanges = Set(due.map(\.range))
        work += mine.filter { dueRanges.contains($0) }.map { .replicated($0) }
        for mark in due where !mineSet.contains(mark.range) {
            work.append(.foreign(mark))
        }
        for range in mine where !dueRanges.contains(range) {
            if finished.contains(range.end) {
                report.rangesResumed += 1
            } else {
                work.append(.replicated(range))
            }
        }
        if report.rangesResumed > 0 {
            logger.notice(
                "anti-entropy pass resumes after a crash",
                metadata: ["repair.ranges_done": "\(report.rangesResumed)", "repair.ranges_left": "\(work.count)"])
        }

        await withTaskGroup(of: (Work, AntiEntropyReport).self) { group in
            var next = 0
            while next < min(configuration.sessionsInParallel, work.count) {
                let item = work[next]
                next += 1
                group.addTask { (item, await self.repair(item)) }
            }
            while let (item, partial) = await group.next() {
                report.add(partial)
                if wholePass, case .replicated(let range) = item, partial.errors == 0 {
                    finished.insert(range.end)
                    saveCheckpoint(finished)
                }
                // Counted once checkpointed: a crash after the count never redoes a range it counted.
                statistics.antiEntropyRangesCompared.add(partial.rangesCompared, ordering: .relaxed)
                if next < work.count && !Task.isCancelled {
                    let item = work[next]
                    next += 1
                    group.addTask { (item, await self.repair(item)) }
                }
            }
        }
        // The pass is over (ranges that failed are counted): the next one starts from the beginning.
        if wholePass && !Task.isCancelled {
            saveCheckpoint([])
        }
        return report
    }

    private func loadCheckpoint() -> Set<UInt64> {
        guard let checkpoint, let bytes = try? checkpoint.metadata(Self.checkpointName), bytes.count % 8 == 0 else {
            return []
        }
        return Set(StorageBytes.decodeNumbers(bytes))
    }

    /// Writes the checkpoint; a failure only means a crash would redo more, so it is logged, not fatal.
    private func saveCheckpoint(_ finished: Set<UInt64>) {
        guard let checkpoint else { return }
        do {
            try checkpoint.setMetadata(Self.checkpointName, StorageBytes.encode(finished.sorted()))
        } catch {
            logger.warning("cannot save the anti-entropy checkpoint", metadata: ["error": "\(error)"])
        }
    }

    private enum Work: Sendable {
        /// A vnode range this node replicates: compared with each co-replica.
        case replicated(TokenRangeSpan)
        /// A mark for a range that is not one of this node's vnode ranges (the node does not replicate
        /// it, or the ring changed since the mark): compared between the marked replica and another
        /// replica, piece by piece of today's ring.
        case foreign(RepairMark)
    }

    private func repair(_ work: Work) async -> AntiEntropyReport {
        var report = AntiEntropyReport()
        switch work {
        case .replicated(let range):
            // Which co-replica next, whether the range is confirmed and may be purged: KVCore's rule.
            var repair = RangeRepair(
                range: range, coReplicas: ring.preferenceList(for: Token(range.end)).filter { $0 != nodeID },
                purgeHorizon: purgeHorizon(), policy: tombstonePolicy)
            repairing: while true {
                switch repair.step {
                case .compare(let id):
                    let session = await session(range: range, local: local, peer: id, purgeHorizon: repair.purgeHorizon)
                    report.add(session)
                    repair.compared(with: id, keysReceived: session.keysReceived, failed: session.failure != nil)
                case .finished(let outcome):
                    if outcome.confirmed {
                        report.rangesCompared += 1
                        recordCompared(range)
                        for mark in marks.rangesDue() where mark.range == range {
                            clear(mark)
                        }
                    }
                    if let horizon = outcome.purgeBefore {
                        report.tombstonesPurged += await purge(range, before: horizon)
                    }
                    break repairing
                }
            }
        case .foreign(let mark):
            // The mark was made on the ring of its day: cut it at the vnodes of today's, so that each
            // piece has one list of replicas. A piece the marked replica no longer holds (it moved away
            // through a membership change, whose transfer compared it) needs nothing.
            let ring = self.ring
            var complete = true
            for piece in ring.pieces(of: mark.range) {
                let replicas = ring.preferenceList(for: Token(piece.end))
                guard replicas.contains(mark.replica) else { continue }
                let source: (any AntiEntropyReplica)?
                if replicas.contains(nodeID) && mark.replica != nodeID {
                    source = local
                } else {
                    source = replicas.first { $0 != mark.replica && $0 != nodeID }.flatMap(peer)
                }
                guard let source else {
                    report.record(failure: "mark \(mark): no other replica of \(piece) to compare it with")
                    complete = false
                    continue
                }
                let session = await session(
                    range: piece, local: source, peer: mark.replica, purgeHorizon: purgeHorizon())
                report.add(session)
                complete = complete && session.failure == nil
            }
            if complete {
                report.rangesCompared += 1
                clear(mark)
            }
        }
        return report
    }

    /// When tombstones may be purged (KVCore's rule, which the simulator's nodes apply too).
    private var tombstonePolicy: TombstonePolicy { TombstonePolicy(grace: configuration.tombstoneGrace) }

    /// Tombstones older than this may be purged, and are not copied where their key is absent (nil when
    /// tombstones are never purged, and while ranges move).
    private func purgeHorizon() -> Version? {
        tombstonePolicy.horizon(nowMillis: wallMillis(), rangesMoving: membership?.current.isChanging == true)
    }

    /// Purges `range`'s tombstones older than `horizon` from this node's store, after the range was
    /// compared without error with every co-replica. A failure is logged: the next pass tries again.
    ///
    /// A purge scans the range's records, so a range is scanned at most once per tenth of the grace
    /// period (and at most hourly): a tombstone waits the whole grace period anyway, and passes run
    /// back to back (`kvctl repair` in a loop) then cost no scan each.
    private func purge(_ range: TokenRangeSpan, before horizon: Version) async -> Int {
        let now = wallMillis()
        let every = min((configuration.tombstoneGrace?.wholeMillisecondsClamped ?? 0) / 10, 3_600_000)
        let due = lastPurged.withLock { last in
            guard now >= (last[range.end] ?? 0) &+ every || now < (last[range.end] ?? 0) else { return false }
            last[range.end] = now
            return true
        }
        guard due else { return 0 }
        do {
            let purged = try await local.purgeTombstones(in: range, before: horizon)
            if purged > 0 {
                statistics.tombstonesPurged.add(purged, keyspace: keyspaceLabel)
                logger.info(
                    "purged tombstones", metadata: ["ring.range": "\(range)", "repair.tombstones": "\(purged)"])
            }
            return purged
        } catch {
            logger.warning("cannot purge tombstones", metadata: ["ring.range": "\(range)", "error": "\(error)"])
            return 0
        }
    }

    /// Compares `range` with peer `id` now and copies what differs both ways (no purge): how a node
    /// that received a range checks it against its source before ownership switches, and how an old
    /// owner makes sure a new owner holds a range before dropping it.
    func compare(_ range: TokenRangeSpan, with id: String) async -> AntiEntropySession.Report {
        await session(range: range, local: local, peer: id, purgeHorizon: nil)
    }

    private func session(
        range: TokenRangeSpan, local: any AntiEntropyReplica, peer id: String, purgeHorizon: Version?
    ) async -> AntiEntropySession.Report {
        guard let peer = peer(id) else {
            var report = AntiEntropySession.Report(range: range, peer: id)
            report.failure = "no connection to \(id)"
            return report
        }
        let report = await AntiEntropySession(
            range: range, local: local, peer: peer, limiter: limiter, concurrency: configuration.copiesInParallel,
            purgeHorizon: purgeHorizon
        ).run()
        let label = keyspaceLabel
        statistics.antiEntropyKeysSent.add(report.keysSent, keyspace: label)
        statistics.antiEntropyKeysReceived.add(report.keysReceived, keyspace: label)
        statistics.antiEntropyBytes.add(report.bytes, ordering: .relaxed)
        if let failure = report.failure {
            statistics.antiEntropySessionFailures.add(1, ordering: .relaxed)
            logger.warning(
                "anti-entropy session failed",
                metadata: ["peer.node_id": "\(id)", "ring.range": "\(range)", "error": "\(failure)"])
        } else if report.keysSent + report.keysReceived > 0 {
            logger.info(
                "anti-entropy repaired range",
                metadata: [
                    "peer.node_id": "\(id)", "ring.range": "\(range)", "repair.keys_sent": "\(report.keysSent)",
                    "repair.keys_received": "\(report.keysReceived)",
                ])
        }
        return report
    }

    private func clear(_ mark: RepairMark) {
        do {
            try marks.clearDue(replica: mark.replica, range: mark.range)
        } catch {
            logger.warning(
                "cannot clear anti-entropy mark",
                metadata: ["peer.node_id": "\(mark.replica)", "ring.range": "\(mark.range)", "error": "\(error)"])
        }
    }

}

/// What an anti-entropy pass did, summed over its sessions: `Admin` repair's answer.
public struct AntiEntropyReport: Sendable, Hashable {
    /// Ranges compared without error with every co-replica (or, for a foreign mark, between its two replicas).
    public var rangesCompared = 0
    /// Ranges skipped because the pass a crash cut short had already compared them.
    public var rangesResumed = 0
    /// Sessions run (one range, two replicas).
    public var sessions = 0
    /// Merkle queries asked.
    public var queries = 0
    /// Records co-replicas applied from this node (or from the source replica of a foreign mark).
    public var keysSent = 0
    /// Records this node applied from its co-replicas.
    public var keysReceived = 0
    /// Bytes over the network: request and response frames of every RPC.
    public var bytes = 0
    /// Tombstones purged from this node's store after their range was compared with every co-replica.
    public var tombstonesPurged = 0
    /// Sessions that failed.
    public var errors = 0
    /// The first failure's reason.
    public var firstError: String?
    public var duration: Duration = .zero

    public init() {}

    mutating func add(_ session: AntiEntropySession.Report) {
        sessions += 1
        queries += session.queries
        keysSent += session.keysSent
        keysReceived += session.keysReceived
        bytes += session.bytes
        if let failure = session.failure { record(failure: "\(session.range) with \(session.peer): \(failure)") }
    }

    mutating func add(_ other: AntiEntropyReport) {
        rangesCompared += other.rangesCompared
        rangesResumed += other.rangesResumed
        sessions += other.sessions
        queries += other.queries
        keysSent += other.keysSent
        keysReceived += other.keysReceived
        bytes += other.bytes
        tombstonesPurged += other.tombstonesPurged
        errors += other.errors
        firstError = firstError ?? other.firstError
        // Keyspaces' passes run one after another (`PassGate`): the whole took their sum.
        duration += other.duration
    }

    mutating func record(failure: String) {
        errors += 1
        firstError = firstError ?? failure
    }

    /// The `Admin` repair answer's pairs (names as `kvctl repair` and `KVClient.repair` read them).
    public var pairs: [(name: String, value: String)] {
        var pairs: [(String, String)] = [
            ("ranges_compared", "\(rangesCompared)"), ("ranges_resumed", "\(rangesResumed)"),
            ("sessions", "\(sessions)"), ("queries", "\(queries)"),
            ("keys_sent", "\(keysSent)"), ("keys_received", "\(keysReceived)"), ("bytes", "\(bytes)"),
            ("tombstones_purged", "\(tombstonesPurged)"), ("errors", "\(errors)"),
            ("duration_ms", "\(Int(duration / .milliseconds(1)))"),
        ]
        if let firstError { pairs.append(("first_error", String(firstError.prefix(Limits.errorMessageBytesMax / 2)))) }
        return pairs.map { (name: $0.0, value: $0.1) }
    }
}

/// Whether one of a node's anti-entropy passes runs now, whatever its keyspace: one pass at a time
/// keeps a node's background comparisons, and the load they put on its peers, those of one keyspace.
package final class PassGate: Sendable {
    let running = Mutex(false)

    package init() {}
}
