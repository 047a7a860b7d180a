public import KVCore
import Synchronization

/// The crash layer: what a killed process keeps. With `Durability.sync` every applied write is
/// durable before `apply` returns, as RocksDB's WAL fsync makes it; with the other modes applies stay
/// volatile until `sync()`, and `crash()` throws them away. Purges and range drops are durable at
/// once, as `RocksDBStore`'s synced batches are. Metadata and hints are not touched by a crash.
extension InMemoryStore {
    /// Makes every applied write durable (a WAL fsync).
    public func sync() {
        state.withLock { $0.unsynced.removeAll() }
        for view in views.withLock({ Array($0.values) }) { view.sync() }
    }

    /// Loses everything not yet synced, as a killed process with an unsynced WAL does, and reopens.
    public func crash() {
        state.withLock { state in
            for (key, durable) in state.unsynced {
                state.set(key, durable.record, durably: true)
            }
            state.closed = false
        }
        for view in views.withLock({ Array($0.values) }) { view.crash() }
    }

    /// What a crash now would leave for `key`.
    public func durableRecord(_ key: [UInt8]) -> StoredRecord? {
        state.withLock { state in
            if let durable = state.unsynced[key] { return durable.record }
            return state.records[key]
        }
    }
}
