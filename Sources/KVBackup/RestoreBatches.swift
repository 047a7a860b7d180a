import KVCore

/// The records a restore writes, grouped by target replica into batches of at most
/// `Limits.merkleRecordBytesPerFrameMax` bytes of keys and values (a larger record goes alone),
/// as an anti-entropy session frames its `MerkleApply` requests.
struct RestoreBatches {
    struct Batch {
        var node: String
        var records: [(key: [UInt8], record: StoredRecord)] = []
        var bytes = 0
    }

    let ring: Ring
    let bytesMax: Int
    private var open: [String: Batch] = [:]

    init(ring: Ring, bytesMax: Int = Limits.merkleRecordBytesPerFrameMax) {
        self.ring = ring
        self.bytesMax = bytesMax
    }

    /// Adds `record` to the batch of every replica of `key`; returns the batches that are full.
    mutating func add(key: [UInt8], record: StoredRecord) -> [Batch] {
        let size = key.count + record.value.count
        var full: [Batch] = []
        for node in ring.preferenceList(forKey: key) {
            var batch = open[node] ?? Batch(node: node)
            if batch.bytes > 0 && batch.bytes + size > bytesMax {
                full.append(batch)
                batch = Batch(node: node)
            }
            batch.records.append((key, record))
            batch.bytes += size
            open[node] = batch
        }
        return full
    }

    /// Every batch not yet returned, and none left.
    mutating func drain() -> [Batch] {
        defer { open.removeAll() }
        return open.values.filter { !$0.records.isEmpty }.sorted { $0.node < $1.node }
    }
}
