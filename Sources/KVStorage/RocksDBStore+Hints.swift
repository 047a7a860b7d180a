import CRocksDB
import KVCore
import Synchronization

/// The durable hint log in the `hints` column family (layout: `HintCodec`).
///
/// Writes and deletes of one target run under that target's stripe of `hintStripes`: the existence
/// check, the bound check, the RocksDB write and the count update happen together, so concurrent
/// calls cannot overshoot `queueMax` or miscount a replaced hint. Different targets proceed in
/// parallel and share RocksDB's group commit.
extension RocksDBStore: HintStore {
    public func storeHint(_ hint: StoredHint, queueMax: Int) throws(StorageError) -> HintStoreOutcome {
        try validate(hint: hint)
        let target = Array(hint.target.utf8)
        let storageKey = HintCodec.storageKey(hint)
        let value = HintCodec.encodeValue(hint)
        return try withOpenHandles { () throws(StorageError) -> HintStoreOutcome in
            try hintStripes.withLock(for: Token(key: target)) { () throws(StorageError) -> HintStoreOutcome in
                let replacing = try read(hintsFamily, storageKey) { _ in true } ?? false
                if !replacing {
                    guard hintCounts.withLock({ $0[target] }) < queueMax else { return .refusedQueueFull }
                }
                try write(hintsFamily, storageKey, value)
                if !replacing {
                    hintCounts.withLock { $0.add(1, for: target) }
                }
                return .stored
            }
        }
    }

    public func hints(for target: String, after: HintID?, limit: Int) throws(StorageError) -> [(
        id: HintID, hint: StoredHint
    )] {
        guard limit > 0 else { return [] }
        let prefix = HintCodec.prefix(target: Array(target.utf8))
        // The smallest key past `after`: its bytes followed by a zero byte.
        let start = after.flatMap { $0.bytes.starts(with: prefix) ? $0.bytes + [0] : nil }
        return try withOpenHandles { () throws(StorageError) -> [(id: HintID, hint: StoredHint)] in
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
        try withOpenHandles { () throws(StorageError) in
            try hintStripes.withLock(for: Token(key: target)) { () throws(StorageError) in
                guard try read(hintsFamily, id.bytes, { _ in true }) ?? false else { return }
                // No fsync of its own: a delete lost in a power cut only replays the hint once more.
                try delete(hintsFamily, id.bytes, synced: false)
                hintCounts.withLock { $0.add(-1, for: target) }
            }
        }
    }

    public func hintQueueSizes() -> [String: Int] {
        let sizes = try? withOpenHandles { () throws(StorageError) -> [String: Int] in
            hintCounts.withLock { $0.sizes }
        }
        return sizes ?? [:]
    }

    /// Writes raw bytes into the `hints` family, bypassing the codec and the counts: for tests that
    /// need a damaged hint on disk.
    package func writeRawHintForTesting(key: [UInt8], value: [UInt8]) throws(StorageError) {
        try withOpenHandles { () throws(StorageError) in
            try write(hintsFamily, key, value)
        }
    }

    // MARK: Helpers

    /// Counts the hints of every target with one scan of the column family: called once, by `init`.
    /// A key that does not parse makes the open fail with `.corruption`.
    func loadHintCounts() throws(StorageError) {
        var counts = HintCounts()
        try withOpenHandles { () throws(StorageError) in
            try scan(hintsFamily, prefix: []) { (key, _) throws(StorageError) -> Bool in
                counts.add(1, for: try HintCodec.decodeKey(key).target)
                return true
            }
        }
        hintCounts.withLock { $0 = counts }
    }
}
