package import KVCore
import KVStorage
import Logging
import NIOPosix
import Synchronization

/// A node's anti-entropy over every keyspace: the default keyspace's `AntiEntropy`, and one for each
/// other keyspace of the map (`AntiEntropy.serving`), made the first time it is needed, sharing the
/// configuration, the counters and the byte budget.
public final class AntiEntropies: Sendable {
    /// The default keyspace's.
    let root: AntiEntropy
    private let keyspaces: NodeKeyspaces
    private let membership: Membership
    private let pool: NIOThreadPool
    /// A peer's replica for a keyspace's requests.
    private let makePeer: @Sendable (String, UInt32) -> any AntiEntropyReplica
    private let logger: Logger
    private let instances = Mutex<[UInt32: AntiEntropy]>([:])

    init(
        root: AntiEntropy, keyspaces: NodeKeyspaces, membership: Membership, pool: NIOThreadPool,
        logger: Logger, makePeer: @escaping @Sendable (String, UInt32) -> any AntiEntropyReplica
    ) {
        self.root = root
        self.keyspaces = keyspaces
        self.membership = membership
        self.pool = pool
        self.logger = logger
        self.makePeer = makePeer
    }

    /// The anti-entropy of keyspace `id` in the current map; nil when the map does not have it, or its
    /// store cannot be opened (logged).
    func of(_ id: UInt32) async -> AntiEntropy? {
        if id == Keyspace.defaultID { return root }
        if let made = instances.withLock({ $0[id] }) { return made }
        let (keyspaces, map) = (self.keyspaces, membership.current)
        let served: NodeKeyspaces.Served?
        do {
            served = try await keyspaces.served(id, in: map, on: pool)
        } catch {
            logger.warning(
                "cannot open a keyspace for anti-entropy", metadata: ["keyspace.id": "\(id)", "error": "\(error)"])
            return nil
        }
        guard let served else { return nil }
        let makePeer = self.makePeer
        let made = root.serving(
            id, local: LocalAntiEntropyReplica(replica: served.replica, merkle: served.store, pool: pool),
            store: served.store, makePeer: { makePeer($0, id) })
        return instances.withLock { instances in
            if let other = instances[id] { return other }
            instances[id] = made
            return made
        }
    }

    /// Every keyspace's anti-entropy in the current map, the default first.
    func all() async -> [AntiEntropy] {
        var all = [root]
        for keyspace in membership.current.keyspaces where !keyspace.dropped {
            if let made = await of(keyspace.id) { all.append(made) }
        }
        return all
    }

    /// When each vnode range was last compared with every co-replica (nil: never), over the keyspaces
    /// `live` (ids: the current map's keyspaces not dropped), merged by `oldestComparisons`.
    /// `complete` is false when one of them has no anti-entropy made yet, whose ranges are then
    /// missing (and never compared by this node).
    func rangeComparisons(of live: some Collection<UInt32>) -> (
        ranges: [(range: TokenRangeSpan, millis: UInt64?)], complete: Bool
    ) {
        let made = instances.withLock { $0 }.merging([Keyspace.defaultID: root]) { $1 }
        let lists = live.sorted().compactMap { made[$0]?.rangeComparisons() }
        return (Self.oldestComparisons(lists), lists.count == live.count)
    }

    /// Several keyspaces' range comparison times as one list, in first-seen order: a range more than
    /// one of them replicates takes the oldest of their times, and nil (never) while one of them never
    /// compared it.
    package static func oldestComparisons(_ lists: [[(range: TokenRangeSpan, millis: UInt64?)]]) -> [(
        range: TokenRangeSpan, millis: UInt64?
    )] {
        var merged: [(range: TokenRangeSpan, millis: UInt64?)] = []
        var index: [TokenRangeSpan: Int] = [:]
        for (range, millis) in lists.joined() {
            guard let at = index[range] else {
                index[range] = merged.count
                merged.append((range, millis))
                continue
            }
            merged[at].millis = merged[at].millis.flatMap { seen in millis.map { min(seen, $0) } }
        }
        return merged
    }

    /// Runs the periodic passes of every keyspace until cancelled: each keyspace its own loop, started
    /// when the map has it and ended when the map drops it.
    func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.root.run() }
            var started: Set<UInt32> = []
            while !Task.isCancelled {
                for keyspace in membership.current.keyspaces where !keyspace.dropped && !started.contains(keyspace.id) {
                    guard let made = await of(keyspace.id) else { continue }
                    started.insert(keyspace.id)
                    group.addTask { await made.run() }
                }
                try? await Task.sleep(for: .seconds(1))
            }
            group.cancelAll()
        }
    }

    /// One pass now over every keyspace (`Admin` repair), the reports summed.
    func pass(within range: TokenRangeSpan?) async -> AntiEntropyReport {
        var report = AntiEntropyReport()
        for antiEntropy in await all() {
            report.add(await antiEntropy.pass(within: range))
        }
        return report
    }
}
