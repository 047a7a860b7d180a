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

    /// One hint offered to ``admit(_:hints:)``, with what its keyspace gives.
    public struct Offer: Sendable {
        public var target: String
        public var key: [UInt8]
        public var record: StoredRecord
        /// The key's keyspace; `map`, `ring`, `replica` and `marks` are that keyspace's.
        public var keyspace: UInt32
        /// The cluster map this node holds; `target` must be one of its members.
        public var map: ClusterMap
        /// The ring in use, whose range containing the key is marked; nil when the map has none (the
        /// mark then fails and says so).
        public var ring: Ring?
        /// This node's replica, whose clock bounds the hint's version and sees it.
        public var replica: Replica
        public var marks: any RepairMarkStore
        /// This node's wall clock, the hint's stored time and a mark's first time.
        public var nowMillis: UInt64

        public init(
            target: String, key: [UInt8], record: StoredRecord, keyspace: UInt32 = 0, map: ClusterMap, ring: Ring?,
            replica: Replica, marks: any RepairMarkStore, nowMillis: UInt64
        ) {
            self.target = target
            self.key = key
            self.record = record
            self.keyspace = keyspace
            self.map = map
            self.ring = ring
            self.replica = replica
            self.marks = marks
            self.nowMillis = nowMillis
        }
    }

    /// What became of one offered hint, and the replica's clock after seeing its version.
    public typealias Admitted = Result<(outcome: Outcome, clock: UInt64), HintAdmissionError>

    /// Checks a hint of `key` for `target`, stores it in `hints`, and marks its range in `marks` when
    /// it is refused for lack of room (``admit(_:hints:)`` of one hint).
    ///
    /// - Returns: the outcome and the replica's clock after seeing the hint's version.
    public func admit(
        target: String, key: [UInt8], record: StoredRecord, keyspace: UInt32 = 0,
        map: ClusterMap, ring: Ring?, replica: Replica,
        hints: any HintStore, marks: any RepairMarkStore, nowMillis: UInt64
    ) throws(HintAdmissionError) -> (outcome: Outcome, clock: UInt64) {
        let offer = Offer(
            target: target, key: key, record: record, keyspace: keyspace, map: map, ring: ring, replica: replica,
            marks: marks, nowMillis: nowMillis)
        return try admit([offer], hints: hints)[0].get()
    }

    /// Admits each of `offers` as it would have been alone, in order, with the ones that pass the
    /// checks stored in one `storeHints` call (one store write, one fsync, for all of them): the node's
    /// hint group commit hands over the hints that arrived together. Unless `synced`, the write is
    /// `storeHintsUnsynced`, and what it stored is durable only once `whenHintsDurable` says so.
    public func admit(_ offers: [Offer], hints: any HintStore, synced: Bool = true) -> [Admitted] {
        var admitted = [Admitted?](repeating: nil, count: offers.count)
        var storing: [Int] = []
        for (index, offer) in offers.enumerated() {
            do throws(HintAdmissionError) {
                try check(offer)
                storing.append(index)
            } catch {
                admitted[index] = .failure(error)
            }
        }
        let stored: [Result<HintStoreOutcome, StorageError>]
        do {
            let storedHints = storing.map {
                let offer = offers[$0]
                return StoredHint(
                    target: offer.target, key: offer.key, record: offer.record, storedAtMillis: offer.nowMillis,
                    keyspace: offer.keyspace)
            }
            stored =
                synced
                ? try hints.storeHints(storedHints, queueMax: queueMax, bytesMax: bytesMax)
                : try hints.storeHintsUnsynced(storedHints, queueMax: queueMax, bytesMax: bytesMax)
        } catch {
            stored = storing.map { _ in .failure(error) }
        }
        let answered =
            stored.count == storing.count
            ? stored
            : storing.map { _ in
                .failure(.corruption("the hint store answered \(stored.count) outcomes for \(storing.count) hints"))
            }
        for (index, outcome) in zip(storing, answered) {
            let offer = offers[index]
            admitted[index] = outcome.mapError { .replica(.storage($0)) }.map { outcome in
                let clock = offer.replica.tick(observing: offer.record.version.hlc)
                guard outcome != .stored else { return (.stored, clock) }
                let mark =
                    marksNothing
                    ? RepairMarking.Result.failed("mutation: a refused hint marks nothing")
                    : RepairMarking.markDue(
                        target: offer.target, key: offer.key, ring: offer.ring, in: offer.marks,
                        atMillis: offer.nowMillis)
                return (.refused(outcome, mark: mark), clock)
            }
        }
        return admitted.map { $0! }
    }

    /// The checks before the store: a member target, not this node, a version within the clock bound.
    private func check(_ offer: Offer) throws(HintAdmissionError) {
        guard offer.map.node(offer.target) != nil else { throw .unknownTarget(offer.target) }
        guard offer.target != nodeID else { throw .forSelf(nodeID) }
        do {
            try offer.replica.checkClock(offer.record.version.hlc, what: "the hint's version")
        } catch {
            throw .replica(error)
        }
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
