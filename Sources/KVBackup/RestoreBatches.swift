import KVCore

/// The records a restore writes, grouped by target replica and keyspace (a `MerkleApply` names one)
/// into batches of at most `Limits.merkleRecordBytesPerFrameMax` bytes of keys and values (a larger
/// record goes alone), as an anti-entropy session frames its `MerkleApply` requests.
struct RestoreBatches {
    struct Batch {
        var node: String
        /// The keyspace (a part's id) every record of the batch belongs to.
        var keyspace: UInt32
        var records: [(key: [UInt8], record: StoredRecord)] = []
        var bytes = 0
    }

    private struct Destination: Hashable {
        var node: String
        var keyspace: UInt32
    }

    let bytesMax: Int
    private var open: [Destination: Batch] = [:]

    init(bytesMax: Int = Limits.merkleRecordBytesPerFrameMax) {
        self.bytesMax = bytesMax
    }

    /// Adds `record` of keyspace `keyspace` to the batch of each of `replicas` (the key's preference
    /// list in that keyspace's ring); returns the batches that are full.
    mutating func add(key: [UInt8], record: StoredRecord, keyspace: UInt32, replicas: [String]) -> [Batch] {
        let size = key.count + record.value.count
        var full: [Batch] = []
        for node in replicas {
            let destination = Destination(node: node, keyspace: keyspace)
            var batch = open[destination] ?? Batch(node: node, keyspace: keyspace)
            if batch.bytes > 0 && batch.bytes + size > bytesMax {
                full.append(batch)
                batch = Batch(node: node, keyspace: keyspace)
            }
            batch.records.append((key, record))
            batch.bytes += size
            open[destination] = batch
        }
        return full
    }

    /// Every batch not yet returned, and none left.
    mutating func drain() -> [Batch] {
        defer { open.removeAll() }
        return open.values.filter { !$0.records.isEmpty }.sorted { ($0.keyspace, $0.node) < ($1.keyspace, $1.node) }
    }
}
