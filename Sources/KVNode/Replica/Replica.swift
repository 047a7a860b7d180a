public import KVCore
public import KVStorage
import KVWire
import NIOCore
import Synchronization

/// A replica's logic with no I/O scheduling of its own: checks a write, applies it to the store if its
/// version is newer, and keeps the node's hybrid logical clock, which every answer carries.
///
/// `ReplicaService` runs it on a thread pool behind the RPC server (`getFromMemory` and
/// `putWithoutBlocking`, which never wait, on the event loops); the deterministic simulator calls it
/// directly, on one thread, with a simulated store and clock. Other calls block while the store works.
public final class Replica: Sendable {
    public let nodeID: String
    public let store: any ReplicaStore
    /// Shared by the replicas of every keyspace of the node (`serving(_:)`): one clock a node.
    private let clock: NodeClock
    private let wallMillis: @Sendable () -> UInt64
    /// How far ahead of this node's wall clock a peer's clock or version may be; nil: unbounded.
    public let maxClockOffset: Duration?

    /// - Parameters:
    ///   - wallMillis: the node's wall clock, in milliseconds since the Unix epoch.
    ///   - maxClockOffset: writes whose version, and clocks from peers, further ahead of
    ///     `wallMillis` than this are refused (`clockAhead`), and a stored version further ahead does
    ///     not move the clock; nil accepts any (the simulator, whose skews are its own business).
    public init(
        nodeID: String, store: any ReplicaStore, maxClockOffset: Duration? = nil,
        wallMillis: @escaping @Sendable () -> UInt64
    ) {
        self.nodeID = nodeID
        self.store = store
        self.clock = NodeClock()
        self.wallMillis = wallMillis
        self.maxClockOffset = maxClockOffset
    }

    private init(nodeID: String, store: any ReplicaStore, sharing other: Replica) {
        self.nodeID = nodeID
        self.store = store
        self.clock = other.clock
        self.wallMillis = other.wallMillis
        self.maxClockOffset = other.maxClockOffset
    }

    /// The same replica logic over `store` (another keyspace's), with this replica's clock.
    public func serving(_ store: any ReplicaStore) -> Replica {
        Replica(nodeID: nodeID, store: store, sharing: self)
    }

    /// Refuses a clock or version `remote` from a peer that is further ahead of this node's wall clock
    /// than `maxClockOffset`.
    public func checkClock(_ remote: UInt64, what: String) throws(ReplicaError) {
        guard let bound = maxClockOffset else { return }
        let physical = wallMillis()
        guard HybridLogicalClock.isWithin(remote, maxOffset: bound, of: physical) else {
            throw ReplicaError.clockAhead(
                "\(what) \(remote >> 16) ms is \((remote >> 16) &- physical) ms ahead of \(nodeID)'s clock; at most \(bound.wholeMillisecondsClamped) ms is accepted (check the clocks' synchronisation)"
            )
        }
    }

    /// Checks what a request asks to write, for `put` or for a hint, and makes the record.
    ///
    /// - Throws: `invalidRequest` for an empty key, version 0, or a tombstone that carries a value or
    ///   an expiry.
    public static func record(
        key: [UInt8], version: Version, tombstone: Bool, value: [UInt8], expiresAtMillis: UInt64 = 0
    ) throws(ReplicaError) -> StoredRecord {
        guard !key.isEmpty else { throw ReplicaError.invalidRequest("the key is empty") }
        guard version != .zero else { throw ReplicaError.invalidRequest("version 0 is reserved") }
        do throws(MalformedRecord) {
            return try StoredRecord.checked(
                version: version, tombstone: tombstone, value: value, expiresAtMillis: expiresAtMillis)
        } catch {
            throw ReplicaError.invalidRequest(error.description)
        }
    }

    /// A record a peer sent, checked as ``record(key:version:tombstone:value:)`` checks a request's.
    static func checked(_ wire: Record) throws(ReplicaError) -> StreamedRecord {
        let key = Array(wire.key.readableBytesView)
        return StreamedRecord(
            key: key,
            record: try record(
                key: key, version: wire.version, tombstone: wire.tombstone, value: Array(wire.value.readableBytesView),
                expiresAtMillis: wire.expiresAtMillis ?? 0))
    }

    /// Applies a write (or tombstone) if its version is newer than what the replica holds.
    ///
    /// - Returns: what the store did, and the replica's clock after seeing the write's version.
    public func put(key: [UInt8], record: StoredRecord) throws(ReplicaError) -> (outcome: ApplyOutcome, clock: UInt64) {
        guard !key.isEmpty else { throw ReplicaError.invalidRequest("the key is empty") }
        guard record.version != .zero else { throw ReplicaError.invalidRequest("version 0 is reserved") }
        try checkClock(record.version.hlc, what: "the write's version")
        let outcome: ApplyOutcome
        do {
            outcome = try store.apply(key: key, record: record)
        } catch {
            throw ReplicaError.storage(error)
        }
        return (outcome, tick(observing: record.version.hlc))
    }

    /// Applies several writes as `put(key:record:)` does, with a metadata value, in one store write
    /// (`ReplicaStore.apply(_:setting:)`): a transfer's page with its checkpoint, an anti-entropy batch.
    ///
    /// - Returns: what the store did with each record, and the replica's clock after seeing them.
    public func put(_ records: [StreamedRecord], setting metadata: MetadataEntry? = nil) throws(ReplicaError)
        -> (outcomes: [ApplyOutcome], clock: UInt64)
    {
        try check(records)
        let outcomes: [ApplyOutcome]
        do {
            outcomes = try store.apply(records, setting: metadata)
        } catch {
            throw ReplicaError.storage(error)
        }
        return (outcomes, tick(observing: records))
    }

    /// Whether `putWithoutBlocking` can ever write (`ReplicaStore.appliesWithoutBlocking`).
    public var putsWithoutBlocking: Bool { store.appliesWithoutBlocking }

    /// `put(_:)` when the store can write without waiting (`ReplicaStore.applyWithoutBlocking`): safe
    /// on an event loop. Nil, with nothing written, when it would wait; call `put(_:)` on a thread pool
    /// then.
    public func putWithoutBlocking(_ records: [StreamedRecord]) throws(ReplicaError)
        -> (outcomes: [ApplyOutcome], clock: UInt64)?
    {
        try check(records)
        let applied: [ApplyOutcome]?
        do {
            applied = try store.applyWithoutBlocking(records)
        } catch {
            throw ReplicaError.storage(error)
        }
        guard let outcomes = applied else { return nil }
        return (outcomes, tick(observing: records))
    }

    /// Calls `completion` once the writes `putWithoutBlocking` made before this call are durable
    /// (`ReplicaStore.whenDurable`): at once on the calling thread, or, with RocksDB and `sync`, on
    /// the WAL syncer's thread after its fsync (on the calling thread after its own fsync with
    /// `WALSyncMode.caller`); with the store's error if that failed.
    public func whenDurable(_ completion: @escaping @Sendable (ReplicaError?) -> Void) {
        store.whenDurable { error in completion(error.map(ReplicaError.storage)) }
    }

    /// The checks of `put(_:setting:)`'s records, as `put(key:record:)` checks one.
    private func check(_ records: [StreamedRecord]) throws(ReplicaError) {
        for streamed in records {
            guard !streamed.key.isEmpty else { throw ReplicaError.invalidRequest("the key is empty") }
            guard streamed.record.version != .zero else { throw ReplicaError.invalidRequest("version 0 is reserved") }
            try checkClock(streamed.record.version.hlc, what: "a record's version")
        }
    }

    /// The clock after seeing the versions of `records`.
    private func tick(observing records: [StreamedRecord]) -> UInt64 {
        tick(observing: records.lazy.map(\.record.version.hlc).max() ?? 0)
    }

    /// `get(key:)`'s answer when the store has it in memory (`ReplicaStore.getFromMemory(key:)`),
    /// without blocking on the disk; nil when it needs the disk.
    public func getFromMemory(key: [UInt8]) throws(ReplicaError) -> (record: StoredRecord?, clock: UInt64)? {
        let found: StoredRecord??
        do {
            found = try store.getFromMemory(key: key)
        } catch {
            throw ReplicaError.storage(error)
        }
        guard let record = found else { return nil }
        return (record, tick(observing: record?.version.hlc ?? 0))
    }

    /// What the replica holds for `key` (a tombstone for a deleted key, nil if it never saw the key).
    public func get(key: [UInt8]) throws(ReplicaError) -> (record: StoredRecord?, clock: UInt64) {
        let record: StoredRecord?
        do {
            record = try store.get(key: key)
        } catch {
            throw ReplicaError.storage(error)
        }
        return (record, tick(observing: record?.version.hlc ?? 0))
    }

    /// Moves the clock past a timestamp from a message and returns a fresh timestamp. A timestamp
    /// further ahead than `maxClockOffset` is not observed (callers refuse the requests that
    /// carry one with `checkClock`; a stored version from the future is damage, and must not drag
    /// the clock along).
    public func tick(observing remote: UInt64) -> UInt64 {
        let physical = wallMillis()
        let plausible =
            maxClockOffset.map { HybridLogicalClock.isWithin(remote, maxOffset: $0, of: physical) } ?? true
        return clock.tick(observing: plausible ? remote : 0, physicalMillis: physical)
    }
}

/// A node's hybrid logical clock, shared by its keyspaces' replicas: `HybridLogicalClock`'s rule
/// applied to one atomic value, without a lock. Every read and write ticks it, on every event loop
/// and pool thread; as a mutex it was contended (perf on a node serving batch gets, a tick per key:
/// 40 % of its CPU in the mutex's slow path).
private final class NodeClock: Sendable {
    private let last = Atomic<UInt64>(0)

    /// Observes `remote` (0: nothing), then returns a fresh timestamp past every one returned before.
    func tick(observing remote: UInt64, physicalMillis: UInt64) -> UInt64 {
        var seen = last.load(ordering: .relaxed)
        while true {
            var clock = HybridLogicalClock(last: seen)
            clock.observe(remote)
            let now = clock.now(physicalMillis: physicalMillis)
            // One atomic value: its modification order alone makes the timestamps unique and increasing.
            let (exchanged, current) = last.compareExchange(expected: seen, desired: now, ordering: .relaxed)
            if exchanged { return now }
            seen = current
        }
    }
}

/// Why a replica refused a request.
public enum ReplicaError: Error, Hashable, CustomStringConvertible {
    /// The request is malformed for this replica (empty key, version 0, a tombstone with a value).
    case invalidRequest(String)
    /// The store failed.
    case storage(StorageError)
    /// A clock or version from a peer is further ahead of this node's clock than the maximum offset.
    case clockAhead(String)

    public var description: String {
        switch self {
        case .invalidRequest(let message), .clockAhead(let message): message
        case .storage(let error): "\(error)"
        }
    }
}
