public import KVCore
public import KVStorage
public import Logging
public import NIOPosix
import Synchronization

/// Marks the token ranges whose writes a replica is known to have missed, so that anti-entropy
/// repairs them first: a write that no hint will deliver is never forgotten.
///
/// Two events lose a write for a replica here: a hint for it is refused because the replica's queue is
/// full (`HintAdmission`, which marks on the node's pool), or a hint for it expires before it comes back
/// (the hint replayer, which asks this marker). Either marks the key's range of the ring in use at that
/// moment due for that replica (`RepairMarking`: durable, one mark per replica and range); this marker
/// counts the new mark in `NodeStatistics` and logs it at `notice`, once per range until anti-entropy
/// clears it. A mark that cannot be written (storage failure, shutdown) is logged at `warning` and
/// counted as a failure.
///
/// A refused hint may still reach its replica through another fallback node: the mark is then
/// conservative, costing anti-entropy a comparison of one range.
public final class RepairMarker: Sendable {
    /// Why a range was marked: the `reason` dimension of the marks counter.
    private enum Reason: String {
        case hintRefused = "hint_refused"
        case hintExpired = "hint_expired"
    }

    private let ring: @Sendable () -> Ring?
    private let store: any RepairMarkStore
    /// The ring and the marks of a keyspace besides the default (blocking: it may open the keyspace's
    /// view); nil for a keyspace the map does not have.
    private let keyspace: (@Sendable (UInt32) -> (ring: Ring?, marks: any RepairMarkStore)?)?
    private let pool: NIOThreadPool
    private let statistics: NodeStatistics
    private let wallMillis: @Sendable () -> UInt64
    private let logger: Logger

    /// - Parameters:
    ///   - ring: the cluster's current ring (it changes with membership), whose vnode ranges are the unit
    ///     of marking.
    ///   - store: where marks are kept (the node's `RocksDBStore`).
    ///   - pool: where the store's blocking writes run.
    ///   - wallMillis: the wall clock, in milliseconds since the Unix epoch, for a mark's first time.
    ///   - keyspace: the ring and marks of a keyspace other than the default; nil: only the default's.
    public init(
        ring: @escaping @Sendable () -> Ring?,
        store: any RepairMarkStore,
        keyspace: (@Sendable (UInt32) -> (ring: Ring?, marks: any RepairMarkStore)?)? = nil,
        pool: NIOThreadPool,
        statistics: NodeStatistics,
        wallMillis: @escaping @Sendable () -> UInt64,
        logger: Logger
    ) {
        self.ring = ring
        self.store = store
        self.keyspace = keyspace
        self.pool = pool
        self.statistics = statistics
        self.wallMillis = wallMillis
        self.logger = logger
    }

    /// Where the marks are kept.
    public var marks: any RepairMarkStore { store }

    /// The ring in use now, whose ranges are marked.
    public var currentRing: Ring? { ring() }

    /// A hint of `key` for `target` expired (outlived the hint window) and was dropped: marks the key's
    /// range due on `target` (`RepairMarking`). Returns once the mark is durable (or failed, which is
    /// logged and counted).
    public func hintExpired(target: String, key: [UInt8], keyspace id: UInt32 = 0) async {
        let (store, ring, millis, keyspace) = (self.store, ring(), wallMillis(), self.keyspace)
        let result: RepairMarking.Result
        do {
            result = try await pool.runIfActive {
                guard id != 0 else {
                    return RepairMarking.markDue(target: target, key: key, ring: ring, in: store, atMillis: millis)
                }
                guard let (ring, marks) = keyspace?(id) else {
                    return .failed("keyspace \(id) is not in the cluster map")
                }
                return RepairMarking.markDue(target: target, key: key, ring: ring, in: marks, atMillis: millis)
            }
        } catch {
            result = .failed("\(error)")
        }
        report(result, target: target, reason: .hintExpired)
    }

    /// Counts and logs the mark `HintAdmission` made for a hint of `target` it refused.
    public func reportRefusedHint(_ result: RepairMarking.Result, target: String) {
        report(result, target: target, reason: .hintRefused)
    }

    /// The number of ranges due for anti-entropy, over all replicas (from memory: no I/O).
    public var rangesDueCount: Int {
        store.rangesDue().count
    }

    private func report(_ result: RepairMarking.Result, target: String, reason: Reason) {
        switch result {
        case .failed(let why):
            statistics.markFailures.add(1, ordering: .relaxed)
            logger.warning(
                "cannot mark range for anti-entropy",
                metadata: ["peer.node_id": "\(target)", "repair.reason": "\(reason.rawValue)", "error": "\(why)"])
        case .marked(_, isNew: false):
            break
        case .marked(let range, isNew: true):
            switch reason {
            case .hintRefused: statistics.rangesMarkedForRefusedHints.add(1, ordering: .relaxed)
            case .hintExpired: statistics.rangesMarkedForExpiredHints.add(1, ordering: .relaxed)
            }
            logger.notice(
                "range marked for anti-entropy",
                metadata: [
                    "peer.node_id": "\(target)", "ring.range": "\(range)", "repair.reason": "\(reason.rawValue)",
                ])
        }
    }
}
