public import KVCore
import Synchronization

/// The segments are updated with each record, under the store's one mutex. Listings and the partial
/// pieces of digests filter every record (there is no token order in memory): fine for unit tests.
extension InMemoryStore: MerkleStore {
    public func merkleDigest(of range: TokenRangeSpan) throws(StorageError) -> UInt64 {
        try state.withLock { (state) throws(StorageError) -> UInt64 in
            guard !state.closed else { throw .closed }
            return state.merkle.digest(of: range) { piece in
                Self.entries(state.records, in: piece).reduce(0) { $0 ^ $1.hash }
            }
        }
    }

    public func merkleListing(of range: TokenRangeSpan) throws(StorageError) -> [MerkleEntry] {
        try state.withLock { (state) throws(StorageError) -> [MerkleEntry] in
            guard !state.closed else { throw .closed }
            return Self.entries(state.records, in: range).sorted(by: MerkleEntry.clockwiseOrder(from: range))
        }
    }

    public func merkleSegments() throws(StorageError) -> MerkleSegments {
        try state.withLock { (state) throws(StorageError) -> MerkleSegments in
            guard !state.closed else { throw .closed }
            return state.merkle
        }
    }

    @discardableResult
    public func rebuildMerkleSegments() throws(StorageError) -> MerkleRebuild {
        let clock = ContinuousClock()
        let started = clock.now
        return try state.withLock { (state) throws(StorageError) -> MerkleRebuild in
            guard !state.closed else { throw .closed }
            state.merkle = MerkleSegments(entries: state.records.map { MerkleEntry(key: $0.key, record: $0.value) })
            return MerkleRebuild(
                reason: "asked for", records: state.records.count,
                segments: state.merkle.segmentHashes.lazy.filter { $0 != 0 }.count, duration: clock.now - started)
        }
    }

    static func entries(_ records: [[UInt8]: StoredRecord], in range: TokenRangeSpan) -> [MerkleEntry] {
        records.compactMap { key, record in
            range.contains(Token(key: key)) ? MerkleEntry(key: key, record: record) : nil
        }
    }
}
