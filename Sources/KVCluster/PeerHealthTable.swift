public import KVCore
import Synchronization

/// What this process knows of the health of the nodes it talks to: one phi-accrual failure detector
/// (`PhiAccrualDetector`) per node, fed by every answer. The SDK (which replicas a request asks
/// first, which ones a write hands off at once) and a node (which peers hint replay waits for, which
/// sources a receiver streams from first, the `peer_phi` statistics) both keep one.
public final class PeerHealthTable: Sendable {
    private let configuration: PhiAccrualDetector.Configuration
    private let wallMillis: @Sendable () -> UInt64
    private let detectors = Mutex<[String: PhiAccrualDetector]>([:])

    /// - Parameter wallMillis: the wall clock, in milliseconds (tests pass their own).
    public init(configuration: PhiAccrualDetector.Configuration, wallMillis: @escaping @Sendable () -> UInt64) {
        self.configuration = configuration
        self.wallMillis = wallMillis
    }

    /// Starts watching the nodes of `ids` not watched yet, as if each had just answered (one that
    /// never does is suspected); with `forgettingOthers`, forgets the nodes not in `ids` (they left
    /// the map).
    public func watch(_ ids: some Collection<String>, forgettingOthers: Bool = false) {
        let now = wallMillis()
        let configuration = self.configuration
        detectors.withLock { detectors in
            for id in ids where detectors[id] == nil {
                detectors[id] = PhiAccrualDetector(configuration: configuration, watchingFrom: now)
            }
            if forgettingOthers {
                let kept = Set(ids)
                detectors = detectors.filter { kept.contains($0.key) }
            }
        }
    }

    /// Records an answer from `id` (any answer, errors included: the node is alive); a node not
    /// watched yet is watched from now.
    public func heartbeat(_ id: String) {
        let now = wallMillis()
        let configuration = self.configuration
        detectors.withLock {
            $0[id, default: PhiAccrualDetector(configuration: configuration)].heartbeat(atMillis: now)
        }
    }

    /// Whether the detector suspects `id` now (false for a node it does not watch).
    public func isSuspected(_ id: String) -> Bool {
        let now = wallMillis()
        return detectors.withLock { $0[id]?.isSuspected(atMillis: now) ?? false }
    }

    /// The nodes suspected now.
    public func suspected() -> Set<String> {
        let now = wallMillis()
        // No dictionary built on the way (every write asks): nothing allocated while all are well.
        return detectors.withLock { detectors in
            var suspected: Set<String> = []
            for (id, detector) in detectors where detector.isSuspected(atMillis: now) { suspected.insert(id) }
            return suspected
        }
    }

    /// Each watched node's phi now: how unlikely its silence is.
    public func phi() -> [String: Double] {
        let now = wallMillis()
        return detectors.withLock { $0.mapValues { $0.phi(atMillis: now) } }
    }

    /// `ids` with the suspected ones, and those `unreachable` names, moved to the end, the others in
    /// their order: the order in which to ask replicas or sources. `unreachable` is for what the
    /// caller knows before the detector does: a node whose connection was just refused (in its
    /// backoff window) answers nothing, seconds before enough missed pings make it suspected.
    public func healthyFirst(_ ids: [String], unreachable: (String) -> Bool = { _ in false }) -> [String] {
        let suspected = suspected()
        let last = ids.map { suspected.contains($0) || unreachable($0) }
        guard last.contains(true) else { return ids }
        return zip(ids, last).filter { !$0.1 }.map(\.0) + zip(ids, last).filter { $0.1 }.map(\.0)
    }
}
