import Synchronization

/// Values a node derives from the cluster map, one per keyspace, kept for the map of one epoch and
/// forgotten when a map of another epoch asks: the replica service's rings, replicated ranges, key
/// ranges and admissions, each of which costs a sort of the cluster's vnodes or more to build.
final class EpochCache<Value: Sendable>: Sendable {
    private let state = Mutex<(epoch: UInt64, byKeyspace: [UInt32: Value])>((0, [:]))

    /// Keyspace `keyspace`'s value for the map of `epoch`: the cached one, or `make()`'s, kept. `make`
    /// runs under this cache's lock; it may read other caches, never this one.
    func value(epoch: UInt64, keyspace: UInt32, _ make: () -> Value) -> Value {
        state.withLock { cached in
            if cached.epoch != epoch { cached = (epoch, [:]) }
            if let value = cached.byKeyspace[keyspace] { return value }
            let value = make()
            cached.byKeyspace[keyspace] = value
            return value
        }
    }
}
