public import KVCore
import Synchronization

extension InMemoryStore: RepairMarkStore {
    @discardableResult
    public func markDue(replica: String, range: TokenRangeSpan, atMillis: UInt64) throws(StorageError) -> Bool {
        let storageKey = RepairMarkCodec.storageKey(replica: try validateMark(replica: replica), range: range)
        return try state.withLock { (state) throws(StorageError) -> Bool in
            guard !state.closed else { throw .closed }
            guard !state.repairMarks.contains(storageKey) else { return false }
            state.repairMarks.insert(
                RepairMark(replica: replica, range: range, firstMarkedMillis: atMillis), storageKey: storageKey)
            return true
        }
    }

    public func rangesDue() -> [RepairMark] {
        state.withLock { $0.closed ? [] : $0.repairMarks.sorted }
    }

    public func clearDue(replica: String, range: TokenRangeSpan) throws(StorageError) {
        let storageKey = RepairMarkCodec.storageKey(replica: try validateMark(replica: replica), range: range)
        try state.withLock { (state) throws(StorageError) in
            guard !state.closed else { throw .closed }
            state.repairMarks.remove(storageKey)
        }
    }
}
