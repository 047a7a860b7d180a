import Synchronization

extension InMemoryStore: HintStore {
    public func storeHints(_ hints: [StoredHint], queueMax: Int, bytesMax: Int) throws(StorageError)
        -> [Result<HintStoreOutcome, StorageError>]
    {
        // Every keyspace's hints are kept by keyspace 0's store (each names its keyspace).
        if let root { return try root.storeHints(hints, queueMax: queueMax, bytesMax: bytesMax) }
        return try state.withLock { (state) throws(StorageError) -> [Result<HintStoreOutcome, StorageError>] in
            guard !state.closed else { throw .closed }
            return hints.map { hint in
                Result { () throws(StorageError) -> HintStoreOutcome in
                    try validate(hint: hint)
                    let target = Array(hint.target.utf8)
                    let storageKey = HintCodec.storageKey(hint)
                    let bytes = HintCodec.storedBytes(hint)
                    // Mutated in place through the dictionary, so a long queue is not copied on every call.
                    let (index, found) = Self.search(state.hints[target] ?? [], for: storageKey)
                    let replaced = found ? HintCodec.storedBytes(state.hints[target]![index].hint) : 0
                    if !found, state.hints[target, default: []].count >= queueMax { return .refusedQueueFull }
                    let growth = bytes - replaced
                    if growth > 0, state.hintBytes > bytesMax - growth { return .refusedStorageFull }
                    if found {
                        state.hints[target]![index].hint = hint
                    } else {
                        state.hints[target, default: []].insert((storageKey, hint), at: index)
                    }
                    state.hintBytes += growth
                    return .stored
                }
            }
        }
    }

    public func hints(for target: String, after: HintID?, limit: Int) throws(StorageError) -> [(
        id: HintID, hint: StoredHint
    )] {
        if let root { return try root.hints(for: target, after: after, limit: limit) }
        return try state.withLock { (state) throws(StorageError) -> [(id: HintID, hint: StoredHint)] in
            guard !state.closed else { throw .closed }
            guard limit > 0, let queue = state.hints[Array(target.utf8)] else { return [] }
            var first = 0
            if let after, after.bytes.starts(with: HintCodec.prefix(target: Array(target.utf8))) {
                let (index, found) = Self.search(queue, for: after.bytes)
                first = found ? index + 1 : index
            }
            return queue[first...].prefix(limit).map { (HintID(bytes: $0.storageKey), $0.hint) }
        }
    }

    public func deleteHint(_ id: HintID) throws(StorageError) {
        if let root { return try root.deleteHint(id) }
        // An id that does not parse was never handed out by a store: there is nothing to delete.
        guard let target = try? HintCodec.decodeKey(id.bytes).target else { return }
        try state.withLock { (state) throws(StorageError) in
            guard !state.closed else { throw .closed }
            let (index, found) = Self.search(state.hints[target] ?? [], for: id.bytes)
            guard found else { return }
            state.hintBytes -= HintCodec.storedBytes(state.hints[target]![index].hint)
            state.hints[target]!.remove(at: index)
            if state.hints[target]!.isEmpty {
                state.hints[target] = nil
            }
        }
    }

    public func hintQueueSizes() -> [String: Int] {
        if let root { return root.hintQueueSizes() }
        return state.withLock { state in
            guard !state.closed else { return [:] }
            var counts = HintCounts()
            for (target, queue) in state.hints {
                counts.add(queue.count, for: target)
            }
            return counts.sizes
        }
    }

    public func hintBytesHeld() -> Int {
        if let root { return root.hintBytesHeld() }
        return state.withLock { $0.closed ? 0 : $0.hintBytes }
    }

    /// Binary search by storage key (bytewise, like RocksDB's comparator): the index of `key`, or
    /// where to insert it.
    private static func search(
        _ queue: [(storageKey: [UInt8], hint: StoredHint)],
        for key: [UInt8]
    ) -> (index: Int, found: Bool) {
        var low = 0
        var high = queue.count
        while low < high {
            let middle = (low + high) / 2
            if queue[middle].storageKey.lexicographicallyPrecedes(key) {
                low = middle + 1
            } else {
                high = middle
            }
        }
        return (low, low < queue.count && queue[low].storageKey == key)
    }
}
