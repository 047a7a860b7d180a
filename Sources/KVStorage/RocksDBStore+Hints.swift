import CRocksDB
import KVCore
import Synchronization

/// The durable hint log in the `hints` column family (layout: `HintCodec`), shared by every keyspace:
/// each hint names its keyspace, and every view answers for all of them, even a dropped keyspace's.
///
/// Writes and deletes of one target run under that target's stripe of `hintStripes`: the existence
/// check, the bound check, the RocksDB write and the count update happen together, so concurrent
/// calls cannot overshoot `queueMax` or miscount a replaced hint. Different targets proceed in
/// parallel and share RocksDB's group commit; the hints of one `storeHints` call are one write batch
/// (one fsync), which the node's hint group commit fills with the hints that arrive together.
extension RocksDBStore: HintStore {
    public func storeHints(_ hints: [StoredHint], queueMax: Int, bytesMax: Int) throws(StorageError)
        -> [Result<HintStoreOutcome, StorageError>]
    {
        try storeHints(hints, queueMax: queueMax, bytesMax: bytesMax, options: writeOptions)
    }

    /// `storeHints` written without a sync: the WAL syncer's next fsync, which the data writes share,
    /// makes them durable (`whenHintsDurable`).
    public func storeHintsUnsynced(_ hints: [StoredHint], queueMax: Int, bytesMax: Int) throws(StorageError)
        -> [Result<HintStoreOutcome, StorageError>]
    {
        try storeHints(hints, queueMax: queueMax, bytesMax: bytesMax, options: unsyncedWriteOptions)
    }

    /// `whenDurable`: hints and data share one log.
    public func whenHintsDurable(_ completion: @escaping @Sendable (StorageError?) -> Void) {
        whenDurable(completion)
    }

    /// The two `storeHints`' one rule, written with `options`.
    private func storeHints(_ hints: [StoredHint], queueMax: Int, bytesMax: Int, options: OpaquePointer)
        throws(StorageError) -> [Result<HintStoreOutcome, StorageError>]
    {
        if !hints.isEmpty { try engine.room.check() }
        var outcomes = [Result<HintStoreOutcome, StorageError>](repeating: .success(.stored), count: hints.count)
        var valid: [(index: Int, target: [UInt8], storageKey: [UInt8], value: [UInt8], bytes: Int)] = []
        for (index, hint) in hints.enumerated() {
            do throws(StorageError) {
                try validate(hint: hint)
                let storageKey = HintCodec.storageKey(hint)
                let value = HintCodec.encodeValue(hint)
                let bytes = HintCodec.storedBytes(keyBytes: storageKey.count, valueBytes: value.count)
                valid.append((index, Array(hint.target.utf8), storageKey, value, bytes))
            } catch {
                outcomes[index] = .failure(error)
            }
        }
        guard !valid.isEmpty else { return outcomes }
        try engine.withOpenHandles(view: nil) { () throws(StorageError) in
            try engine.hintStripes.withLocks(forTokens: valid.map { Token(key: $0.target) }) {
                () throws(StorageError) in
                // Each hint's check and count update in order, under the counts' lock against other
                // targets' writers (these targets' stripes keep their writers out until the write); a
                // hint replacing one earlier in the batch replaces what that one stored.
                var inBatch: [[UInt8]: Int] = [:]
                var counted: [(target: [UInt8], hints: Int, bytes: Int)] = []
                var writes: [(storageKey: [UInt8], value: [UInt8])] = []
                do throws(StorageError) {
                    for hint in valid {
                        var replaced = inBatch[hint.storageKey]
                        if replaced == nil {
                            try failIfTestAsks()
                            replaced = try read(hintsFamily, hint.storageKey) { old in
                                HintCodec.storedBytes(keyBytes: hint.storageKey.count, valueBytes: old.count)
                            }
                        }
                        let refusal = engine.hintCounts.withLock { counts -> HintStoreOutcome? in
                            if replaced == nil, counts[hint.target] >= queueMax { return .refusedQueueFull }
                            let growth = hint.bytes - (replaced ?? 0)
                            if growth > 0, counts.bytes > bytesMax - growth { return .refusedStorageFull }
                            counts.add(replaced == nil ? 1 : 0, bytes: growth, for: hint.target)
                            return nil
                        }
                        if let refusal {
                            outcomes[hint.index] = .success(refusal)
                            continue
                        }
                        counted.append((hint.target, replaced == nil ? 1 : 0, hint.bytes - (replaced ?? 0)))
                        inBatch[hint.storageKey] = hint.bytes
                        writes.append((hint.storageKey, hint.value))
                    }
                    guard !writes.isEmpty else { return }
                    try writeBatch(options: options) { batch in
                        for write in writes { Self.put(batch, hintsFamily, write.storageKey, write.value) }
                    }
                } catch {
                    // Nothing was written (a read or the write failed): the counts go back.
                    engine.hintCounts.withLock { counts in
                        for count in counted { counts.add(-count.hints, bytes: -count.bytes, for: count.target) }
                    }
                    throw error
                }
            }
        }
        return outcomes
    }

    /// Makes the `storeHints` read after the next `reads` fail with an I/O error, once: for tests of
    /// what a failure partway through a batch leaves.
    package func failHintRead(after reads: Int) {
        engine.hintReadsBeforeFailure.store(max(0, reads), ordering: .relaxed)
    }

    /// Throws the failure `failHintRead(after:)` asked for when its turn has come.
    private func failIfTestAsks() throws(StorageError) {
        guard engine.hintReadsBeforeFailure.load(ordering: .relaxed) >= 0,
            engine.hintReadsBeforeFailure.wrappingSubtract(1, ordering: .relaxed).oldValue == 0
        else { return }
        throw .ioError("a read failed on purpose (failHintRead)")
    }

    public func hints(for target: String, after: HintID?, limit: Int) throws(StorageError) -> [(
        id: HintID, hint: StoredHint
    )] {
        guard limit > 0 else { return [] }
        let prefix = HintCodec.prefix(target: Array(target.utf8))
        // The smallest key past `after`: its bytes followed by a zero byte.
        let start = after.flatMap { $0.bytes.starts(with: prefix) ? $0.bytes + [0] : nil }
        return try engine.withOpenHandles(view: nil) { () throws(StorageError) -> [(id: HintID, hint: StoredHint)] in
            var found: [(id: HintID, hint: StoredHint)] = []
            try scan(hintsFamily, prefix: prefix, from: start) { (key, value) throws(StorageError) -> Bool in
                let hint = try HintCodec.decode(key: key, value: value)
                found.append((HintID(bytes: Array(key)), hint))
                return found.count < limit
            }
            return found
        }
    }

    public func deleteHint(_ id: HintID) throws(StorageError) {
        // An id that does not parse was never handed out by a store: there is nothing to delete.
        guard let target = try? HintCodec.decodeKey(id.bytes).target else { return }
        try engine.withOpenHandles(view: nil) { () throws(StorageError) in
            try engine.hintStripes.withLock(for: Token(key: target)) { () throws(StorageError) in
                guard let valueBytes = try read(hintsFamily, id.bytes, { $0.count }) else { return }
                // No fsync of its own: a delete lost in a power cut only replays the hint once more.
                try delete(hintsFamily, id.bytes, synced: false)
                let bytes = HintCodec.storedBytes(keyBytes: id.bytes.count, valueBytes: valueBytes)
                engine.hintCounts.withLock { $0.add(-1, bytes: -bytes, for: target) }
            }
        }
    }

    public func hintQueueSizes() -> [String: Int] {
        let sizes = try? engine.withOpenHandles(view: nil) { () throws(StorageError) -> [String: Int] in
            engine.hintCounts.withLock { $0.sizes }
        }
        return sizes ?? [:]
    }

    public func hintBytesHeld() -> Int {
        let bytes = try? engine.withOpenHandles(view: nil) { () throws(StorageError) -> Int in
            engine.hintCounts.withLock { $0.bytes }
        }
        return bytes ?? 0
    }

    /// Writes raw bytes into the `hints` family, bypassing the codec and the counts: for tests that
    /// need a damaged hint on disk.
    package func writeRawHintForTesting(key: [UInt8], value: [UInt8]) throws(StorageError) {
        try engine.withOpenHandles(view: nil) { () throws(StorageError) in
            try write(hintsFamily, key, value)
        }
    }

    // MARK: Helpers

    /// Counts the hints of every target with one scan of the column family: called once, by `init`.
    /// A key that does not parse makes the open fail with `.corruption`.
    func loadHintCounts() throws(StorageError) {
        var counts = HintCounts()
        try engine.withOpenHandles(view: nil) { () throws(StorageError) in
            try scan(hintsFamily, prefix: []) { (key, value) throws(StorageError) -> Bool in
                let bytes = HintCodec.storedBytes(keyBytes: key.count, valueBytes: value.count)
                counts.add(1, bytes: bytes, for: try HintCodec.decodeKey(key).target)
                return true
            }
        }
        engine.hintCounts.withLock { $0 = counts }
    }
}
