public import KVCore

/// A replica's durable store.
///
/// Calls block (RocksDB does I/O): callers run them on a thread pool, never on an event loop.
/// Implementations are thread-safe. The simulator provides its own in-memory implementation with
/// injected faults; `InMemoryStore` is the plain one for unit tests of other modules.
public protocol ReplicaStore: AnyObject, Sendable {
    /// Applies `record` only if its version is greater than the stored one.
    ///
    /// Atomic per key: the read, the comparison and the write happen under one per-key lock, so two
    /// concurrent writers of the same key cannot both win. An equal version answers `.applied`
    /// (an idempotent retry) and writes nothing new; an older one answers `.superseded(current:)`
    /// with the stored version and writes nothing.
    func apply(key: [UInt8], record: StoredRecord) throws(StorageError) -> ApplyOutcome

    /// The record stored for `key`, tombstones included; `nil` if the key was never written.
    func get(key: [UInt8]) throws(StorageError) -> StoredRecord?

    /// A small named metadata value (node id, cluster map...) from the `meta` column family.
    func metadata(_ name: String) throws(StorageError) -> [UInt8]?

    /// Stores a small named metadata value, with the store's durability.
    func setMetadata(_ name: String, _ value: [UInt8]) throws(StorageError)

    /// Stores a small named metadata value on stable storage before returning (fsync), whatever the
    /// store's durability: for votes and decisions a node must never forget (the cluster map).
    func setMetadataDurably(_ name: String, _ value: [UInt8]) throws(StorageError)

    /// Approximate number of keys in the data set (RocksDB's estimate; exact for `InMemoryStore`).
    /// Zero once closed.
    func approximateKeyCount() -> UInt64

    /// Releases the store. Idempotent; every later call throws `StorageError.closed`.
    func close()
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
