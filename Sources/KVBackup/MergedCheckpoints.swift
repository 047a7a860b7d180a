import KVCore
import KVStorage

/// The `data` records of several checkpoints (the nodes of one backup) read together in `data`
/// order (token, then key bytes), a page of each at a time: every key once, with the copies of all
/// checkpoints holding it. Memory stays at one page a checkpoint, whatever the data's size.
struct MergedCheckpoints {
    static let pageRecordsMax = 1024

    private struct Cursor {
        let reader: RocksDBCheckpointReader
        var page: [(token: UInt64, record: StreamedRecord)] = []
        var index = 0
        var done = false

        var head: (token: UInt64, record: StreamedRecord)? { index < page.count ? page[index] : nil }

        mutating func fill() throws {
            guard index >= page.count, !done else { return }
            let after = page.last?.record.key
            let records = try reader.dataPage(after: after, recordsMax: MergedCheckpoints.pageRecordsMax)
            page = records.map { (Token(key: $0.key).value, $0) }
            index = 0
            done = records.count < MergedCheckpoints.pageRecordsMax
        }
    }

    private var cursors: [Cursor]

    init(_ readers: [RocksDBCheckpointReader]) {
        cursors = readers.map { Cursor(reader: $0) }
    }

    /// The next key in order and its copies, one a checkpoint holding it; nil at the end.
    mutating func next() throws -> (key: [UInt8], records: [StoredRecord])? {
        var first: (token: UInt64, key: [UInt8])?
        for index in cursors.indices {
            try cursors[index].fill()
            guard let head = cursors[index].head else { continue }
            if let current = first {
                if head.token < current.token
                    || (head.token == current.token && head.record.key.lexicographicallyPrecedes(current.key))
                {
                    first = (head.token, head.record.key)
                }
            } else {
                first = (head.token, head.record.key)
            }
        }
        guard let first else { return nil }
        var records: [StoredRecord] = []
        for index in cursors.indices {
            guard let head = cursors[index].head, head.token == first.token, head.record.key == first.key else {
                continue
            }
            records.append(head.record.record)
            cursors[index].index += 1
        }
        return (first.key, records)
    }
}
