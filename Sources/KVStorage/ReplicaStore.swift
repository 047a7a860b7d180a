public import KVCore

/// A replica's durable store.
///
/// Calls block (RocksDB does I/O): callers run them on a thread pool, never on an event loop; only
/// `getFromMemory` and `applyWithoutBlocking` never wait, and may run anywhere.
/// Implementations are thread-safe. `InMemoryStore` is the in-memory one, for unit tests of other
/// modules and for the simulator (with its crash layer). Every store decides an apply with
/// `ApplyOutcome.withoutWriting`.
public protocol ReplicaStore: AnyObject, Sendable {
    /// Applies `record` only if its version is greater than the stored one.
    ///
    /// Atomic per key: the read, the comparison and the write happen under one per-key lock, so two
    /// concurrent writers of the same key cannot both win. An equal version answers `.applied`
    /// (an idempotent retry) and writes nothing new; an older one answers `.superseded(current:)`
    /// with the stored version and writes nothing.
    func apply(key: [UInt8], record: StoredRecord) throws(StorageError) -> ApplyOutcome

    /// Applies each record as `apply(key:record:)` does, and stores the metadata value `setting` when
    /// given, as one write: a range transfer's page with its checkpoint, or an anti-entropy batch.
    ///
    /// `RocksDBStore` makes it one atomic write batch (one fsync for the lot instead of one a record,
    /// and a crash keeps all of it or none). A record after another of the same key sees the first.
    /// The default, for the in-memory stores, applies the records one by one and then the metadata.
    func apply(_ records: [StreamedRecord], setting metadata: MetadataEntry?) throws(StorageError) -> [ApplyOutcome]

    /// Whether `applyWithoutBlocking` can ever write: false when the store cannot tell.
    var appliesWithoutBlocking: Bool { get }

    /// `apply(_:setting: nil)` when the store can do it without waiting for the disk, a lock another
    /// writer holds, a write stall or an fsync; nil, with nothing written, when it would wait (call
    /// `apply` on a thread pool then). Safe to call on an event loop. Its writes are durable only once
    /// `whenDurable` calls back.
    func applyWithoutBlocking(_ records: [StreamedRecord]) throws(StorageError) -> [ApplyOutcome]?

    /// Calls `completion` once every write that returned before this call is as durable as the store
    /// promises (nil), or with the error that kept it from being so: at once, on the calling thread,
    /// unless the store acknowledges `applyWithoutBlocking`'s writes only after an fsync of its own
    /// (`RocksDBStore` with `sync`), then on another thread after that fsync, or on the calling thread
    /// after it made the fsync itself (`WALSyncMode.caller`).
    func whenDurable(_ completion: @escaping @Sendable (StorageError?) -> Void)

    /// The record stored for `key`, tombstones included; `nil` if the key was never written.
    func get(key: [UInt8]) throws(StorageError) -> StoredRecord?

    /// What `get(key:)` answers, when the store can answer from memory without blocking on the disk;
    /// nil when it would have to read the disk (call `get(key:)` on a thread pool then). Safe to call
    /// on an event loop or a task's thread: it never waits for I/O.
    func getFromMemory(key: [UInt8]) throws(StorageError) -> StoredRecord??

    /// A small named metadata value (node id, cluster map...) from the `meta` column family.
    func metadata(_ name: String) throws(StorageError) -> [UInt8]?

    /// Stores a small named metadata value, with the store's durability.
    func setMetadata(_ name: String, _ value: [UInt8]) throws(StorageError)

    /// Stores a small named metadata value on stable storage before returning (fsync), whatever the
    /// store's durability: for votes and decisions a node must never forget (the cluster map).
    func setMetadataDurably(_ name: String, _ value: [UInt8]) throws(StorageError)

    /// Stores a small named metadata value without waiting for stable storage, whatever the store's
    /// durability: it survives a crash of the process, not always one of the machine. For notes whose
    /// loss costs only accuracy (how many records a transfer had in flight).
    func setMetadataLazily(_ name: String, _ value: [UInt8]) throws(StorageError)

    /// Approximate number of keys in the data set (RocksDB's estimate; exact for `InMemoryStore`).
    /// Zero once closed.
    func approximateKeyCount() -> UInt64

    /// Puts what the store holds in memory on stable storage and waits for it (RocksDB: memtables to
    /// table files), so that a restart replays no log: a drained node's last step before it stops.
    func flush() throws(StorageError)

    /// Releases the store. Idempotent; every later call throws `StorageError.closed`.
    func close()
}

/// A named metadata value written with records (`ReplicaStore.apply(_:setting:)`).
public struct MetadataEntry: Sendable, Hashable {
    public var name: String
    public var value: [UInt8]

    public init(name: String, value: [UInt8]) {
        self.name = name
        self.value = value
    }
}

extension ReplicaStore {
    /// The default: the store cannot tell, so every read goes to the disk path.
    public func getFromMemory(key: [UInt8]) throws(StorageError) -> StoredRecord?? { nil }

    /// The default: the store cannot tell, so every write goes to the thread pool.
    public var appliesWithoutBlocking: Bool { false }

    public func applyWithoutBlocking(_ records: [StreamedRecord]) throws(StorageError) -> [ApplyOutcome]? { nil }

    /// The default: a write is as durable as the store makes it when it returns.
    public func whenDurable(_ completion: @escaping @Sendable (StorageError?) -> Void) { completion(nil) }

    public func apply(_ records: [StreamedRecord], setting metadata: MetadataEntry?) throws(StorageError)
        -> [ApplyOutcome]
    {
        var outcomes: [ApplyOutcome] = []
        outcomes.reserveCapacity(records.count)
        for streamed in records {
            outcomes.append(try apply(key: streamed.key, record: streamed.record))
        }
        if let metadata {
            try setMetadata(metadata.name, metadata.value)
        }
        return outcomes
    }

    /// Nothing to put on disk: the in-memory stores.
    public func flush() throws(StorageError) {}

    public func setMetadataLazily(_ name: String, _ value: [UInt8]) throws(StorageError) {
        try setMetadata(name, value)
    }
}

/// When a write reaches stable storage.
public enum Durability: Sendable, Hashable {
    /// The write-ahead log is fsynced before `apply` returns. RocksDB groups concurrent writers into
    /// one fsync (group commit), so throughput grows with the number of writers.
    case sync
    /// A background thread fsyncs the write-ahead log every interval: a crash of the machine (not of
    /// the process) can lose up to one interval of acknowledged writes.
    case interval(Duration)
    /// The operating system decides when the log reaches the disk.
    case none
}

/// Where `Durability.sync` fsyncs the log for the writes an event loop makes without waiting
/// (`RocksDBStore.applyWithoutBlocking`, then `whenDurable`); the durability is the same either way.
public enum WALSyncMode: String, Sendable, Hashable, CaseIterable {
    /// A thread of the store's fsyncs for every loop waiting, back to back, and hands each loop its
    /// answers: the loops go on reading and writing during each fsync, at the price of two thread
    /// wake-ups an fsync. For several event loops, which share its fsyncs.
    case thread
    /// The loop that wrote a batch fsyncs it itself, then answers it, as Redis does on its one
    /// thread: no wake-ups, but the loop serves nothing during the fsync. For one event loop.
    case caller = "event-loop"
}

/// Checks what every store refuses alike, so `RocksDBStore` and `InMemoryStore` agree.
func validate(key: [UInt8], record: StoredRecord) throws(StorageError) {
    if key.count > Limits.keyBytesMax {
        throw .invalidRecord("key of \(key.count) bytes exceeds Limits.keyBytesMax (\(Limits.keyBytesMax))")
    }
    if record.value.count > Limits.valueBytesMax {
        throw .invalidRecord(
            "value of \(record.value.count) bytes exceeds Limits.valueBytesMax (\(Limits.valueBytesMax))"
        )
    }
}
