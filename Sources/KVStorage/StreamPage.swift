public import KVCore

/// One record of a range being streamed: its key and what the store holds for it (tombstones too).
public struct StreamedRecord: Sendable, Hashable {
    public var key: [UInt8]
    public var record: StoredRecord

    public init(key: [UInt8], record: StoredRecord) {
        self.key = key
        self.record = record
    }
}

/// One page of a token range, as `RangeStreaming.streamPage` reads it.
public struct StreamPage: Sendable, Hashable {
    /// In token-then-key order, clockwise from the range's start (the order of the `data` family).
    public var records: [StreamedRecord]
    /// No record of the range follows the last one of `records` (also when `records` is empty).
    public var done: Bool

    public init(records: [StreamedRecord], done: Bool) {
        self.records = records
        self.done = done
    }

    /// Whether a page holding `count` records of `bytes` key and value bytes takes one more of
    /// `recordBytes`: always the first, then while it stays within both bounds. Never past `bytesMax`
    /// otherwise, so that a caller sizing `bytesMax` to a frame gets a page that fits one.
    static func admits(recordBytes: Int, count: Int, bytes: Int, recordsMax: Int, bytesMax: Int) -> Bool {
        count == 0 || (count < recordsMax && bytes + recordBytes <= bytesMax)
    }

    /// A page of `records` (held in memory, in any order) for `RangeStreaming.streamPage`: what
    /// `InMemoryStore` and the simulator's store answer. Sorts the range's records on every call: fine
    /// for tests and simulations, not for a real data set.
    package static func paging(
        _ records: [[UInt8]: StoredRecord],
        in range: TokenRangeSpan,
        after: [UInt8]?,
        recordsMax: Int,
        bytesMax: Int
    ) throws(StorageError) -> StreamPage {
        precondition(recordsMax > 0 && bytesMax > 0, "a page holds at least one record")
        let first = range.start &+ 1
        // Clockwise position from the range's start, then key bytes: the order of a `data` scan.
        func precedes(_ lhs: (offset: UInt64, key: [UInt8]), _ rhs: (offset: UInt64, key: [UInt8])) -> Bool {
            lhs.offset != rhs.offset ? lhs.offset < rhs.offset : lhs.key.lexicographicallyPrecedes(rhs.key)
        }
        let resume = try after.map { (after) throws(StorageError) -> (offset: UInt64, key: [UInt8]) in
            try checkResumeKey(after, in: range)
            return (Token(key: after).value &- first, after)
        }
        let remaining =
            records.compactMap { key, record -> (offset: UInt64, key: [UInt8], record: StoredRecord)? in
                let token = Token(key: key)
                guard range.contains(token) else { return nil }
                let position = (offset: token.value &- first, key: key)
                if let resume, !precedes(resume, position) { return nil }
                return (position.offset, key, record)
            }
            .sorted { precedes(($0.offset, $0.key), ($1.offset, $1.key)) }
        var page: [StreamedRecord] = []
        var bytes = 0
        for entry in remaining {
            let recordBytes = entry.key.count + entry.record.value.count
            guard
                admits(
                    recordBytes: recordBytes, count: page.count, bytes: bytes, recordsMax: recordsMax,
                    bytesMax: bytesMax)
            else { return StreamPage(records: page, done: false) }
            page.append(StreamedRecord(key: entry.key, record: entry.record))
            bytes += recordBytes
        }
        return StreamPage(records: page, done: true)
    }

    /// Refuses a resume key outside the range: it names no place in it to continue from.
    static func checkResumeKey(_ after: [UInt8], in range: TokenRangeSpan) throws(StorageError) {
        guard range.contains(Token(key: after)) else {
            throw .invalidRecord("the resume key's token \(Token(key: after)) lies outside the streamed range \(range)")
        }
    }
}
