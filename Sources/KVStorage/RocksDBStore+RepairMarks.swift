public import KVCore
import Synchronization

/// The ranges due for anti-entropy, in the `meta` column family (layout: `RepairMarkCodec`, after the
/// keyspace's `metaPrefix`): each keyspace's view has its own.
///
/// Marks and clears are serialized by `repairMarkWrites`: the check against the in-memory copy, the
/// RocksDB write and the update of the copy happen together, so the copy always equals the column
/// family and a mark is written once. `rangesDue()` reads the copy only.
extension RocksDBStore: RepairMarkStore {
    @discardableResult
    public func markDue(replica: String, range: TokenRangeSpan, atMillis: UInt64) throws(StorageError) -> Bool {
        let storageKey = RepairMarkCodec.storageKey(replica: try validateMark(replica: replica), range: range)
        return try withOpenHandles { () throws(StorageError) -> Bool in
            try repairMarkWrites.withLock { (_) throws(StorageError) -> Bool in
                guard !repairMarks.withLock({ $0.contains(storageKey) }) else { return false }
                try write(metaFamily, metaPrefix + storageKey, RepairMarkCodec.encodeValue(firstMarkedMillis: atMillis))
                let mark = RepairMark(replica: replica, range: range, firstMarkedMillis: atMillis)
                repairMarks.withLock { $0.insert(mark, storageKey: storageKey) }
                return true
            }
        }
    }

    public func rangesDue() -> [RepairMark] {
        let marks = try? withOpenHandles { () throws(StorageError) -> [RepairMark] in
            repairMarks.withLock { $0.sorted }
        }
        return marks ?? []
    }

    public func clearDue(replica: String, range: TokenRangeSpan) throws(StorageError) {
        let storageKey = RepairMarkCodec.storageKey(replica: try validateMark(replica: replica), range: range)
        try withOpenHandles { () throws(StorageError) in
            try repairMarkWrites.withLock { (_) throws(StorageError) in
                guard repairMarks.withLock({ $0.contains(storageKey) }) else { return }
                try delete(metaFamily, metaPrefix + storageKey)
                repairMarks.withLock { $0.remove(storageKey) }
            }
        }
    }

    /// Writes raw bytes under a repair mark key, bypassing the codec and the in-memory copy: for tests
    /// that need a damaged mark on disk.
    package func writeRawRepairMarkForTesting(key: [UInt8], value: [UInt8]) throws(StorageError) {
        try withOpenHandles { () throws(StorageError) in
            try write(metaFamily, metaPrefix + key, value)
        }
    }

    /// Reads every mark with one prefix scan of `meta`: called once, by `init`. A mark that does not
    /// decode makes the open fail with `.corruption`, as a damaged hint key does.
    func loadRepairMarks() throws(StorageError) {
        var marks = RepairMarks()
        try withOpenHandles { () throws(StorageError) in
            try scan(metaFamily, prefix: metaPrefix + RepairMarkCodec.prefix) {
                (key, value) throws(StorageError) -> Bool in
                let storageKey = UnsafeRawBufferPointer(rebasing: key[metaPrefix.count...])
                marks.insert(
                    try RepairMarkCodec.decode(key: storageKey, value: value), storageKey: Array(storageKey))
                return true
            }
        }
        repairMarks.withLock { $0 = marks }
    }
}
