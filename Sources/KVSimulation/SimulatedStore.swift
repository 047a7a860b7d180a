public import KVCore
public import KVStorage
import Synchronization

/// An in-memory `ReplicaStore` for the simulator: the same apply rule as `RocksDBStore` (a write is
/// kept only if its version is greater), with a crash that loses what was not synced.
///
/// In `sync` mode every apply is durable before it returns, as RocksDB's WAL fsync makes it; in the
/// other modes applies stay volatile until `sync()`, and `crash()` throws them away.
public final class SimulatedStore: ReplicaStore {
    private struct State {
        var durable: [[UInt8]: StoredRecord] = [:]
        var volatile: [[UInt8]: StoredRecord] = [:]
        var metadata: [String: [UInt8]] = [:]
        var closed = false
    }

    public let durability: Durability
    private let state = Mutex(State())

    public init(durability: Durability = .sync) {
        self.durability = durability
    }

    public func apply(key: [UInt8], record: StoredRecord) throws(StorageError) -> ApplyOutcome {
        try state.withLock { state throws(StorageError) -> ApplyOutcome in
            guard !state.closed else { throw StorageError.closed }
            let current = state.volatile[key] ?? state.durable[key]
            if let current, current.version > record.version {
                return .superseded(current: current.version)
            }
            if durability == .sync {
                state.durable[key] = record
            } else {
                state.volatile[key] = record
            }
            return .applied
        }
    }

    public func get(key: [UInt8]) throws(StorageError) -> StoredRecord? {
        try state.withLock { state throws(StorageError) -> StoredRecord? in
            guard !state.closed else { throw StorageError.closed }
            return state.volatile[key] ?? state.durable[key]
        }
    }

    public func metadata(_ name: String) throws(StorageError) -> [UInt8]? {
        state.withLock { $0.metadata[name] }
    }

    public func setMetadata(_ name: String, _ value: [UInt8]) throws(StorageError) {
        state.withLock { $0.metadata[name] = value }
    }

    public func approximateKeyCount() -> UInt64 {
        state.withLock { state in
            UInt64(Set(state.durable.keys).union(state.volatile.keys).count)
        }
    }

    public func close() {
        state.withLock { $0.closed = true }
    }

    /// Makes every applied write durable (a WAL fsync).
    public func sync() {
        state.withLock { state in
            for (key, record) in state.volatile {
                state.durable[key] = record
            }
            state.volatile.removeAll()
        }
    }

    /// Loses everything not yet synced, as a killed process with an unsynced WAL does, and reopens.
    public func crash() {
        state.withLock { state in
            state.volatile.removeAll()
            state.closed = false
        }
    }

    /// What survives a crash now.
    public func durableRecord(_ key: [UInt8]) -> StoredRecord? {
        state.withLock { $0.durable[key] }
    }
}
