public import KVCore
import Synchronization

/// Handing a token range over when ownership moves: a node taking a range over pulls it from an old
/// owner page by page (`StreamRequest`), and a node that no longer owns a range drops it.
///
/// Calls block like `ReplicaStore`'s; implementations are thread-safe. A page is not a snapshot of the
/// whole range: a record written behind the resume point during a stream is not sent (the writes of
/// a range being handed over reach its new owner by other means), but resuming never skips or
/// repeats a record that stays in place.
public protocol RangeStreaming: AnyObject, Sendable {
    /// The records of `range` after `after`, tombstones included, in token-then-key order clockwise
    /// from the range's start (for a wrapping range, tokens `start+1 … 2^64-1` first, then `0 … end`).
    ///
    /// - Parameters:
    ///   - after: the key of the previous page's last record (nil: from the start of the range). The
    ///     page continues right after that key's place, whether or not the record is still there;
    ///     a key whose token lies outside `range` throws `.invalidRecord`.
    ///   - recordsMax: records in the page at most (at least 1).
    ///   - bytesMax: key and value bytes in the page at most (at least 1), except that a page holds at
    ///     least one record when any remains, however large.
    func streamPage(
        in range: TokenRangeSpan,
        after: [UInt8]?,
        recordsMax: Int,
        bytesMax: Int
    ) throws(StorageError) -> StreamPage

    /// Removes every record of `range` (values and tombstones) with its Merkle entry, so the segments
    /// stay equal to a rebuild; returns how many it removed. For a range this node no longer owns.
    ///
    /// Works in bounded batches, so memory stays bounded on any number of keys. A record written into
    /// the range while the call runs may or may not be removed; the Merkle segments stay exact either
    /// way.
    func deleteRange(_ range: TokenRangeSpan) throws(StorageError) -> Int
}

/// Reads a page with one ordered scan of `data` per token interval of the range.
///
/// `deleteRange` deletes up to `deleteRangeBatchKeysMax` records a batch, holding the lock stripes
/// of their Merkle segments, so that no write to those segments runs between reading a record and
/// deleting it: each batch deletes the records and writes the segments' new hashes together, like
/// `apply`. (The first version took one segment at a time: with a million keys a segment holds about
/// one, so dropping a range cost an fsync a record.) Batches are fsynced whatever the durability: a
/// dropped range that came back after a power cut could hold values whose tombstones were purged
/// elsewhere meanwhile, and would be streamed back if the node owned the range again.
extension RocksDBStore: RangeStreaming {
    /// Keys deleted in one write batch by `deleteRange`.
    static let deleteRangeBatchKeysMax = 1000

    public func streamPage(
        in range: TokenRangeSpan,
        after: [UInt8]?,
        recordsMax: Int,
        bytesMax: Int
    ) throws(StorageError) -> StreamPage {
        precondition(recordsMax > 0 && bytesMax > 0, "a page holds at least one record")
        var intervals = range.tokenIntervals[...]
        var from: [UInt8]?
        if let after {
            try StreamPage.checkResumeKey(after, in: range)
            let token = Token(key: after).value
            intervals = intervals.drop { !$0.contains(token) }
            // The smallest byte string above `after`'s data key: nothing sorts between the two.
            from = RecordCodec.dataKey(after) + [0]
        }
        return try withOpenHandles { () throws(StorageError) -> StreamPage in
            var records: [StreamedRecord] = []
            var bytes = 0
            var full = false
            for interval in intervals where !full {
                let until = interval.upperBound == .max ? nil : RecordCodec.tokenPrefix(interval.upperBound + 1)
                let start = from ?? RecordCodec.tokenPrefix(interval.lowerBound)
                from = nil
                try scan(dataFamily, prefix: [], from: start, until: until, copyingValuesUnder: stripes) {
                    (key, value) throws(StorageError) -> Bool in
                    guard key.count >= 8 else {
                        throw .corruption("data key of \(key.count) bytes has no token")
                    }
                    let recordBytes = key.count - 8 + max(0, value.count - RecordCodec.headerBytes)
                    guard
                        StreamPage.admits(
                            recordBytes: recordBytes, count: records.count, bytes: bytes, recordsMax: recordsMax,
                            bytesMax: bytesMax)
                    else {
                        full = true
                        return false
                    }
                    records.append(StreamedRecord(key: Array(key[8...]), record: try RecordCodec.decode(value)))
                    bytes += recordBytes
                    return true
                }
            }
            return StreamPage(records: records, done: !full)
        }
    }

    public func deleteRange(_ range: TokenRangeSpan) throws(StorageError) -> Int {
        try deleteRange(range, batchKeysMax: Self.deleteRangeBatchKeysMax)
    }

    /// `deleteRange(_:)` with `batchKeysMax` keys a write batch: tests use small batches.
    package func deleteRange(_ range: TokenRangeSpan, batchKeysMax: Int) throws(StorageError) -> Int {
        precondition(batchKeysMax > 0, "a batch deletes at least one key")
        var removed = 0
        for interval in range.tokenIntervals {
            let until = interval.upperBound == .max ? nil : RecordCodec.tokenPrefix(interval.upperBound + 1)
            var from = RecordCodec.tokenPrefix(interval.lowerBound)
            while true {
                // Found without a lock, so writers need not wait for the scan; checked again under it.
                var dataKeys: [[UInt8]] = []
                try withOpenHandles { () throws(StorageError) in
                    try scan(dataFamily, prefix: [], from: from, until: until) {
                        (key, _) throws(StorageError) -> Bool in
                        guard key.count >= 8 else {
                            throw .corruption("data key of \(key.count) bytes has no token")
                        }
                        dataKeys.append(Array(key))
                        return dataKeys.count < batchKeysMax
                    }
                }
                guard let last = dataKeys.last else { break }
                removed += try deleteRecords(dataKeys)
                guard dataKeys.count == batchKeysMax else { break }
                // The smallest byte string above the last key: the scan goes on right after it.
                from = last + [0]
            }
        }
        return removed
    }

    /// Deletes the records of `dataKeys` that are still there, with their Merkle entries, in one
    /// fsynced batch, holding the lock stripes of their segments (taken in order) so that no write to
    /// those segments runs between reading a record's version and deleting it; returns how many.
    private func deleteRecords(_ dataKeys: [[UInt8]]) throws(StorageError) -> Int {
        let tokens = dataKeys.map { Token($0.withUnsafeBytes { StorageBytes.bigEndian($0, at: 0) }) }
        let segments = tokens.map(MerkleSegments.segment(of:))
        return try withOpenHandles { () throws(StorageError) -> Int in
            try stripes.withLocks(forSegments: segments) { () throws(StorageError) -> Int in
                var deltas: [Int: UInt64] = [:]
                var deleted: [(dataKey: [UInt8], entry: MerkleEntry)] = []
                for ((dataKey, token), segment) in zip(zip(dataKeys, tokens), segments) {
                    let key = Array(dataKey[8...])
                    guard let header = try currentHeader(key, token, dataKey, blocking: true) ?? nil else { continue }
                    let entry = MerkleEntry(key: key, version: header.version, tombstone: header.tombstone)
                    deltas[segment, default: 0] ^= entry.hash
                    deleted.append((dataKey, entry))
                }
                guard !deleted.isEmpty else { return 0 }
                try writeBatch(options: syncedWriteOptions) { batch in
                    for (dataKey, entry) in deleted {
                        Self.delete(batch, dataFamily, dataKey)
                        reindex(batch, dataKey: dataKey, old: entry.version, new: nil)
                    }
                    for (segment, delta) in deltas where delta != 0 { writeSegment(segment, xoring: delta, in: batch) }
                }
                for (_, entry) in deleted {
                    headers.remember(nil, keyspace: keyspaceID, key: entry.key, token: entry.token)
                }
                merkle.withLock { merkle in
                    for (segment, delta) in deltas { merkle.xor(delta, intoSegment: segment) }
                }
                return deleted.count
            }
        }
    }
}

/// Pages sort the range's records on every call (there is no token order in memory): fine for tests.
extension InMemoryStore: RangeStreaming {
    public func streamPage(
        in range: TokenRangeSpan,
        after: [UInt8]?,
        recordsMax: Int,
        bytesMax: Int
    ) throws(StorageError) -> StreamPage {
        try state.withLock { (state) throws(StorageError) -> StreamPage in
            guard !state.closed else { throw .closed }
            return try StreamPage.paging(
                state.records, in: range, after: after, recordsMax: recordsMax, bytesMax: bytesMax)
        }
    }

    public func deleteRange(_ range: TokenRangeSpan) throws(StorageError) -> Int {
        try state.withLock { (state) throws(StorageError) -> Int in
            guard !state.closed else { throw .closed }
            let removed = state.records.filter { key, _ in range.contains(Token(key: key)) }
            // Durable, as `RocksDBStore`'s fsynced batches are: the range does not come back in a crash.
            for key in removed.keys {
                state.set(key, nil, durably: true)
            }
            return removed.count
        }
    }
}
