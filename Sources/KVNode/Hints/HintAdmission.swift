public import KVCore
public import KVStorage

/// The one rule for a hint arriving at a fallback: whom it may be for, where it goes, and what a
/// refused one leaves behind. Sans-I/O: its calls block on the stores and nothing else.
///
/// `ReplicaService` runs it on the node's thread pool for every `Hint` request; the simulator runs it
/// for every simulated one. A hint is refused when
/// - its target is not a member of the cluster map this node holds (`unknownTarget`): it could never
///   be replayed;
/// - its target is this node (`forSelf`): no node replays to itself, so it would sit in the log for
///   good, and the sender must write to us directly;
/// - its version is further ahead of this node's clock than the replica accepts (`replica`);
/// - the target's queue, or all hints together, are full (``Outcome/refused(_:mark:)``): then the key's
///   range on the ring in use is marked due for anti-entropy on the target (``RepairMarking``), so the
///   write the target missed is never forgotten.
public struct HintAdmission: Sendable {
    /// What became of a hint that passed the checks.
    public enum Outcome: Sendable, Equatable {
        /// Kept until replay hands it over.
        case stored
        /// The store had no room (`refusedQueueFull` or `refusedStorageFull`); `mark` says what was
        /// marked for anti-entropy instead.
        case refused(HintStoreOutcome, mark: RepairMarking.Result)
    }

    /// This node's id.
    public let nodeID: String
    /// Hints held per target before new ones are refused.
    public let queueMax: Int
    /// Bytes all targets' hints may take together before new ones are refused.
    public let bytesMax: Int
    /// Mutation switch (tests only): a refused hint marks nothing, so the write its target missed is
    /// left to a full anti-entropy pass, if one ever comes.
    package var marksNothing = false

    public init(nodeID: String, queueMax: Int, bytesMax: Int = .max) {
        self.nodeID = nodeID
        self.queueMax = queueMax
        self.bytesMax = bytesMax
    }

    /// Checks a hint of `key` for `target`, stores it in `hints`, and marks its range in `marks` when
    /// it is refused for lack of room.
    ///
    /// - Parameters:
    ///   - keyspace: the key's keyspace; `map`, `ring`, `replica` and `marks` are that keyspace's.
    ///   - map: the cluster map this node holds; `target` must be one of its members.
    ///   - ring: the ring in use, whose range containing the key is marked; nil when the map has none
    ///     (the mark then fails and says so).
    ///   - replica: this node's replica, whose clock bounds the hint's version and sees it.
    ///   - nowMillis: this node's wall clock, the hint's stored time and a mark's first time.
    /// - Returns: the outcome and the replica's clock after seeing the hint's version.
    public func admit(
        target: String, key: [UInt8], record: StoredRecord, keyspace: UInt32 = 0,
        map: ClusterMap, ring: Ring?, replica: Replica,
        hints: any HintStore, marks: any RepairMarkStore, nowMillis: UInt64
    ) throws(HintAdmissionError) -> (outcome: Outcome, clock: UInt64) {
        guard map.node(target) != nil else { throw .unknownTarget(target) }
        guard target != nodeID else { throw .forSelf(nodeID) }
        do {
            try replica.checkClock(record.version.hlc, what: "the hint's version")
        } catch {
            throw .replica(error)
        }
        let hint = StoredHint(
            target: target, key: key, record: record, storedAtMillis: nowMillis, keyspace: keyspace)
        let stored: HintStoreOutcome
        do {
            stored = try hints.storeHint(hint, queueMax: queueMax, bytesMax: bytesMax)
        } catch {
            throw .replica(.storage(error))
        }
        let clock = replica.tick(observing: record.version.hlc)
        guard stored != .stored else { return (.stored, clock) }
        let mark =
            marksNothing
            ? RepairMarking.Result.failed("mutation: a refused hint marks nothing")
            : RepairMarking.markDue(target: target, key: key, ring: ring, in: marks, atMillis: nowMillis)
        return (.refused(stored, mark: mark), clock)
    }
}

/// Why ``HintAdmission`` refused a hint before storing it.
public enum HintAdmissionError: Error, Hashable, CustomStringConvertible {
    /// The target is not a member of this node's cluster map.
    case unknownTarget(String)
    /// The target is this node (the associated value).
    case forSelf(String)
    /// The replica refused the version, or the store failed.
    case replica(ReplicaError)

    public var description: String {
        switch self {
        case .unknownTarget(let target): "no node '\(target)' in the cluster"
        case .forSelf(let node): "\(node) does not hold hints for itself"
        case .replica(let error): "\(error)"
        }
    }
}

/// The one rule for marking a key's range due for anti-entropy on a replica that missed its write:
/// the range of the ring in use that contains the key's token, one durable mark per replica and range.
/// Sans-I/O: it blocks on the store only. `RepairMarker` runs it on the node's pool and reports it;
/// the simulator runs it directly.
public enum RepairMarking {
    /// What a mark did.
    public enum Result: Sendable, Hashable {
        /// `range` is due on the replica; `isNew` when it was not already.
        case marked(TokenRangeSpan, isNew: Bool)
        /// Nothing was marked, for the reason given (no ring, a storage failure).
        case failed(String)
    }

    /// Marks the range of `ring` that contains `key` due on `target` in `marks`.
    public static func markDue(
        target: String, key: [UInt8], ring: Ring?, in marks: any RepairMarkStore, atMillis: UInt64
    ) -> Result {
        guard let ring else { return .failed("the cluster map has no valid ring") }
        let range = ring.range(containing: Token(key: key))
        do {
            return .marked(range, isNew: try marks.markDue(replica: target, range: range, atMillis: atMillis))
        } catch {
            return .failed("\(error)")
        }
    }
}
