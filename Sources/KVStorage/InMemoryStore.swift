public import KVCore
import Synchronization

/// A `ReplicaStore` in memory with the same semantics as `RocksDBStore`, for unit tests of other
/// modules. Nothing survives the process. One mutex guards everything: simple, and atomic per key.
public final class InMemoryStore: ReplicaStore {
    struct State {
        var records: [[UInt8]: StoredRecord] = [:]
        var metadata: [String: [UInt8]] = [:]
        /// Per target (UTF-8 bytes), its hints sorted by storage key: see `InMemoryStore+Hints.swift`.
        var hints: [[UInt8]: [(storageKey: [UInt8], hint: StoredHint)]] = [:]
        /// The bytes of all hints (`HintCodec.storedBytes`).
        var hintBytes = 0
        /// Token ranges due for anti-entropy: see `InMemoryStore+RepairMarks.swift`.
        var repairMarks = RepairMarks()
        /// Kept by `apply`, like `RocksDBStore`'s: see `InMemoryStore+Merkle.swift`.
        var merkle = MerkleSegments()
        var closed = false
    }

    let state = Mutex(State())

    public init() {}

    public func apply(key: [UInt8], record: StoredRecord) throws(StorageError) -> ApplyOutcome {
        try validate(key: key, record: record)
        return try state.withLock { (state) throws(StorageError) -> ApplyOutcome in
            guard !state.closed else { throw .closed }
            if let current = state.records[key]?.version {
                if current > record.version {
                    return .superseded(current: current)
                }
                if current == record.version {
                    return .applied
                }
            }
            state.merkle.update(
                old: state.records[key].map { MerkleEntry(key: key, record: $0) },
                new: MerkleEntry(key: key, record: record))
            state.records[key] = record
            return .applied
        }
    }

    public func get(key: [UInt8]) throws(StorageError) -> StoredRecord? {
        try state.withLock { (state) throws(StorageError) -> StoredRecord? in
            guard !state.closed else { throw .closed }
            return state.records[key]
        }
    }

    public func metadata(_ name: String) throws(StorageError) -> [UInt8]? {
        try state.withLock { (state) throws(StorageError) -> [UInt8]? in
            guard !state.closed else { throw .closed }
            return state.metadata[name]
        }
    }

    public func setMetadata(_ name: String, _ value: [UInt8]) throws(StorageError) {
        try validateMetadata(name: name)
        try state.withLock { (state) throws(StorageError) in
            guard !state.closed else { throw .closed }
            state.metadata[name] = value
        }
    }

    public func setMetadataDurably(_ name: String, _ value: [UInt8]) throws(StorageError) {
        try setMetadata(name, value)
    }

    public func approximateKeyCount() -> UInt64 {
        state.withLock { $0.closed ? 0 : UInt64($0.records.count) }
    }

    public func close() {
        state.withLock { $0.closed = true }
    }
}
