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

/// Hands held hints over to their targets: as soon as a target answers again, its hints are replayed
/// as ordinary `Put`s, in version order, throttled, and each is deleted only after the target
/// acknowledged it (applied, or already held something newer). Hints older than the hint window are
/// dropped, counted, and their key's range is marked due for anti-entropy on that replica.
///
/// Hints for a node the cluster map says was removed (decommissioned, or replaced while dead) would
/// wait forever: each goes instead to its key's replicas in today's ring, and is deleted once every
/// one of them acknowledged it. A hint can be the one extra copy of a write (a sloppy quorum counts
/// it), so it is handed over, not dropped.
///
/// A target that is still a member but no longer keeps a hint's key (the key moved in a change since
/// the hint was stored) refuses it with `notReplica`; when this node's map agrees, that hint too goes
/// to the key's replicas in today's map (both rings while a change is in progress).
final class HintReplayer: Sendable {
    struct Configuration: Sendable {
        /// How often queues are looked at.
        var interval: Duration = .milliseconds(200)
        /// Hints replayed per second, over all targets.
        var ratePerSecond = NodeConfiguration.hintReplayRateDefault
        /// Hints older than this are dropped, not replayed.
        var window: Duration = .seconds(3 * 3600)
        /// Replays in flight at once per target.
        var concurrency = 32
    }

    private let configuration: Configuration
    private let hints: any HintStore
    private let pool: NIOThreadPool
    /// Hint replay's own connections to the peers, following the cluster map.
    private let directory: PeerDirectory
    private let wallMillis: @Sendable () -> UInt64
    private let logger: Logger
    private let statistics: NodeStatistics
    /// Per target, the last hint of the run of hints replayed (or expired) without a gap: the next
    /// round reads from there instead of stepping over the deleted ones again. Cleared when nothing
    /// follows it, so that a hint stored behind it (an older version arriving late) is found.
    private let cursors = Mutex<[String: HintID]>([:])
    private let repairMarker: RepairMarker
    /// Hints wait while the failure detector suspects their target (nil: only the connection's state).
    private let health: PeerHealth?
    /// The map that says which targets were removed (and which keyspaces were dropped), and this node's
    /// keyspaces, for the hints of removed targets whose key this node now replicates (nil: such hints
    /// wait).
    private let rehoming: (membership: Membership, keyspaces: NodeKeyspaces)?

    init(
        configuration: Configuration,
        hints: any HintStore,
        pool: NIOThreadPool,
        directory: PeerDirectory,
        wallMillis: @escaping @Sendable () -> UInt64,
        statistics: NodeStatistics,
        repairMarker: RepairMarker,
        health: PeerHealth? = nil,
        rehoming: (membership: Membership, keyspaces: NodeKeyspaces)? = nil,
        logger: Logger
    ) {
        self.health = health
        self.rehoming = rehoming
        self.statistics = statistics
        self.repairMarker = repairMarker
        self.configuration = configuration
        self.hints = hints
        self.pool = pool
        self.wallMillis = wallMillis
        self.logger = logger
        self.directory = directory
    }

    /// Replays until the task is cancelled, at most `ratePerSecond` hints per second on average (a
    /// token bucket refilled by the time that really passed, so slow rounds do not lower the rate),
    /// with bursts of at most two intervals' worth.
    func run() async {
        let rate = Double(configuration.ratePerSecond)
        let burst = max(1, rate * 2 * (configuration.interval / .seconds(1)))
        var tokens = 0.0
        var refilled = ContinuousClock.now
        while !Task.isCancelled {
            let now = ContinuousClock.now
            tokens = min(burst, tokens + rate * ((now - refilled) / .seconds(1)))
            refilled = now
            var spent = 0
            for (target, count) in hints.hintQueueSizes().sorted(by: { $0.key < $1.key }) where count > 0 {
                guard Int(tokens) > spent else { break }
                spent += await replay(target: target, limit: Int(tokens) - spent)
            }
            tokens -= Double(spent)
            try? await Task.sleep(for: configuration.interval)
        }
        await directory.closeAll()
    }

    /// Hands up to `limit` hints of a removed `target` to their keys' replicas in `ring`, one hint at a
    /// time, each to all its replicas at once; stops at the first hint some replica did not acknowledge
    /// (it is tried again next round). Returns how many hints it sent.
    private func rehome(target: String, limit: Int, map: ClusterMap, keyspaces: NodeKeyspaces) async -> Int {
        let hints = self.hints
        let batch: [(id: HintID, hint: StoredHint)]
        do {
            batch = try await pool.runIfActive { try hints.hints(for: target, after: nil, limit: limit) }
        } catch {
            logger.warning("cannot read hints", metadata: ["peer.node_id": "\(target)", "error": "\(error)"])
            return 0
        }
        var sent = 0
        // Each keyspace's ring is built once for the batch, not once a hint.
        var rings: [UInt32: Ring?] = [:]
        for (id, hint) in batch {
            sent += 1
            if rings[hint.keyspace] == nil {
                rings[hint.keyspace] = map.keyspace(id: hint.keyspace).flatMap { try? map.ring(of: $0) }
            }
            guard let ring = rings[hint.keyspace] ?? nil else {
                if map.hasDropped(keyspace: hint.keyspace) {
                    try? await pool.runIfActive { try hints.deleteHint(id) }
                    continue
                }
                break
            }
            let owners = ring.preferenceList(forKey: hint.key)
            let failures = await withTaskGroup(of: String?.self) { group in
                for owner in owners {
                    group.addTask { await self.handOver(hint, to: owner, map: map, keyspaces: keyspaces) }
                }
                return await group.reduce(into: [String]()) { failures, failure in
                    if let failure { failures.append(failure) }
                }
            }
            guard failures.isEmpty else {
                logger.info(
                    "cannot hand a removed node's hint to its key's replicas yet",
                    metadata: ["peer.node_id": "\(target)", "error": "\(failures.joined(separator: "; "))"])
                break
            }
            do {
                try await pool.runIfActive { try hints.deleteHint(id) }
            } catch {
                logger.warning("cannot delete a hint", metadata: ["peer.node_id": "\(target)", "error": "\(error)"])
                break
            }
            statistics.hintsReplayed.add(1, keyspace: KeyspaceLabel.label(of: hint.keyspace, in: map))
        }
        if sent > 0 {
            logger.notice(
                "hints of a removed node handed to their keys' replicas",
                metadata: ["peer.node_id": "\(target)", "hints.count": "\(sent)"])
        }
        return sent
    }

    /// `target` refused `hint` because it no longer keeps the key: when this node's map says so too, the
    /// hint goes to the key's replicas in that map (acknowledged once every one took it); otherwise
    /// this node's map is behind the target's, and the hint waits for the next round.
    private func rehomeMisplaced(
        _ id: HintID, _ hint: StoredHint, target: String, refusal: RPCError
    ) async -> HintReplayRound.Event {
        guard let rehoming, let keyspace = rehoming.membership.current.keyspace(id: hint.keyspace) else {
            return .failed(id, reason: "\(refusal)")
        }
        let whole = rehoming.membership.current
        let map = whole.viewed(as: keyspace)
        let token = Token(key: hint.key)
        guard let admission = try? ReplicaAdmission(node: target, map: map), !admission.access(token).allowsWrites,
            let ring = try? map.ring()
        else { return .failed(id, reason: "\(refusal) (this node's map still places the key there)") }
        let next = (try? map.nextRing())?.preferenceList(forKey: hint.key) ?? []
        let current = ring.preferenceList(forKey: hint.key)
        let owners = current + next.filter { !current.contains($0) }
        let failures = await withTaskGroup(of: String?.self) { group in
            for owner in owners {
                group.addTask { await self.handOver(hint, to: owner, map: whole, keyspaces: rehoming.keyspaces) }
            }
            return await group.reduce(into: [String]()) { failures, failure in
                if let failure { failures.append(failure) }
            }
        }
        guard failures.isEmpty else { return .failed(id, reason: failures.joined(separator: "; ")) }
        statistics.hintsRehomed.add(1, keyspace: KeyspaceLabel.label(of: hint.keyspace, in: whole))
        return .acknowledged(id)
    }

    /// The `Put` that hands `hint`'s write over.
    private static func putRequest(_ hint: StoredHint) -> Message {
        .putRequest(PutRequest(key: hint.key, hint.record, origin: .hintReplay, keyspace: hint.keyspace))
    }

    /// Writes `hint`'s record on `owner` (this node: its replica of the hint's keyspace in `map`); nil
    /// once acknowledged, else why not.
    private func handOver(
        _ hint: StoredHint, to owner: String, map: ClusterMap, keyspaces: NodeKeyspaces
    ) async -> String? {
        if owner == keyspaces.replica.nodeID {
            do {
                _ = try await pool.runIfActive {
                    guard let served = try keyspaces.served(hint.keyspace, in: map) else {
                        throw ReplicaError.invalidRequest("keyspace \(hint.keyspace) is not in the cluster map")
                    }
                    return try served.replica.put(key: hint.key, record: hint.record)
                }
                return nil
            } catch {
                return "\(owner): \(error)"
            }
        }
        guard let client = directory.client(owner) else { return "\(owner): no connection" }
        do {
            guard case .putResponse = try await client.call(Self.putRequest(hint), timeout: .seconds(5)) else {
                return "\(owner) answered Put with something else"
            }
            return nil
        } catch {
            return "\(owner): \(error)"
        }
    }

    /// Replays up to `limit` of one target's hints (one ``HintReplayRound``); returns how many it
    /// expired or sent, which the rate limit counts.
    private func replay(target: String, limit: Int) async -> Int {
        if let rehoming, rehoming.membership.current.node(target)?.state == .removed {
            return await rehome(
                target: target, limit: limit, map: rehoming.membership.current, keyspaces: rehoming.keyspaces)
        }
        guard let client = directory.client(target) else { return 0 }
        let hints = self.hints
        var batch: [(id: HintID, hint: StoredHint)]
        do {
            let after = cursors.withLock { $0[target] }
            batch = try await pool.runIfActive { try hints.hints(for: target, after: after, limit: limit) }
            if batch.isEmpty && after != nil {
                cursors.withLock { $0[target] = nil }
                batch = try await pool.runIfActive { try hints.hints(for: target, after: nil, limit: limit) }
            }
        } catch {
            logger.warning("cannot read hints", metadata: ["peer.node_id": "\(target)", "error": "\(error)"])
            return 0
        }
        var deleted: Set<HintID> = []
        // A dropped keyspace's hints have nowhere to go: dropped with it.
        let map = rehoming?.membership.current
        for (id, hint) in batch where map?.hasDropped(keyspace: hint.keyspace) ?? false {
            try? await pool.runIfActive { try hints.deleteHint(id) }
            deleted.insert(id)
        }
        batch.removeAll { deleted.contains($0.id) }
        // Expired hints are dropped even while the target is down; live ones wait for it.
        var round = HintReplayRound(
            batch: batch, nowMillis: wallMillis(),
            window: configuration.window,
            targetReachable: !client.isBackingOff && !(health?.table.isSuspected(target) ?? false),
            concurrency: configuration.concurrency)
        await withTaskGroup(of: HintReplayRound.Event.self) { group in
            var actions = round.start()
            while true {
                for action in actions {
                    switch action {
                    case .expire(let id, let hint):
                        try? await pool.runIfActive { try hints.deleteHint(id) }
                        deleted.insert(id)
                        statistics.hintsExpired.add(1, keyspace: KeyspaceLabel.label(of: hint.keyspace, in: map))
                        logger.info("hint expired", metadata: ["peer.node_id": "\(target)"])
                        // That replica now needs anti-entropy for the key's range.
                        await repairMarker.hintExpired(target: target, key: hint.key, keyspace: hint.keyspace)
                    case .delete(let id, let hint):
                        try? await pool.runIfActive { try hints.deleteHint(id) }
                        deleted.insert(id)
                        statistics.hintsReplayed.add(1, keyspace: KeyspaceLabel.label(of: hint.keyspace, in: map))
                    case .send(let id, let hint):
                        group.addTask {
                            do {
                                guard
                                    case .putResponse = try await client.call(
                                        Self.putRequest(hint), timeout: .seconds(5))
                                else {
                                    return .failed(id, reason: "the target answered Put with something else")
                                }
                                return .acknowledged(id)
                            } catch let error as RPCError where error.remoteCode == .notReplica {
                                return await self.rehomeMisplaced(id, hint, target: target, refusal: error)
                            } catch {
                                return .failed(id, reason: "\(error)")
                            }
                        }
                    }
                }
                guard let event = await group.next() else { break }
                actions = round.handle(event)
            }
        }
        if let last = batch.prefix(while: { deleted.contains($0.id) }).last {
            cursors.withLock { $0[target] = last.id }
        }
        if round.replayed > 0 || round.failure != nil {
            logger.debug(
                "hints replayed",
                metadata: [
                    "peer.node_id": "\(target)", "hints.count": "\(round.replayed)",
                    "hints.coalesced": "\(round.coalesced)", "error": "\(round.failure ?? "none")",
                ])
        }
        // A hint covered by a newer one of its key was deleted unsent: the rate does not count it.
        return round.expired + round.sent
    }
}
