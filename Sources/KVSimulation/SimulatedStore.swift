public import KVCore
public import KVStorage
import Synchronization

/// An in-memory `ReplicaStore` for the simulator: the same apply rule as `RocksDBStore` (a write is
/// kept only if its version is greater), with a crash that loses what was not synced.
///
/// In `sync` mode every apply is durable before it returns, as RocksDB's WAL fsync makes it; in the
/// other modes applies stay volatile until `sync()`, and `crash()` throws them away.
public final class SimulatedStore: ReplicaStore {
    private struct State {
        var durable: [[UInt8]: StoredRecord] = [:]
        var volatile: [[UInt8]: StoredRecord] = [:]
        var metadata: [String: [UInt8]] = [:]
        var closed = false
        /// The Merkle segments of what `get` sees (volatile over durable): nil until the first Merkle
        /// call builds them, so runs that never compare pay nothing; then kept by every apply, and
        /// dropped by a crash (rebuilt from the durable records at the next call), as RocksDB's would
        /// be restored with the WAL.
        var merkle: MerkleSegments?

        func visible(_ key: [UInt8]) -> StoredRecord? { volatile[key] ?? durable[key] }

        var visibleRecords: [[UInt8]: StoredRecord] {
            durable.merging(volatile) { _, newer in newer }
        }

        mutating func segments() -> MerkleSegments {
            if let merkle { return merkle }
            let built = MerkleSegments(entries: visibleRecords.map { MerkleEntry(key: $0.key, record: $0.value) })
            merkle = built
            return built
        }
    }

    public let durability: Durability
    private let state = Mutex(State())

    public init(durability: Durability = .sync) {
        self.durability = durability
    }

    public func apply(key: [UInt8], record: StoredRecord) throws(StorageError) -> ApplyOutcome {
        try state.withLock { state throws(StorageError) -> ApplyOutcome in
            guard !state.closed else { throw StorageError.closed }
            let current = state.volatile[key] ?? state.durable[key]
            if let current, current.version > record.version {
                return .superseded(current: current.version)
            }
            state.merkle?.update(
                old: current.map { MerkleEntry(key: key, record: $0) }, new: MerkleEntry(key: key, record: record))
            if durability == .sync {
                state.durable[key] = record
            } else {
                state.volatile[key] = record
            }
            return .applied
        }
    }

    public func get(key: [UInt8]) throws(StorageError) -> StoredRecord? {
        try state.withLock { state throws(StorageError) -> StoredRecord? in
            guard !state.closed else { throw StorageError.closed }
            return state.volatile[key] ?? state.durable[key]
        }
    }

    public func metadata(_ name: String) throws(StorageError) -> [UInt8]? {
        state.withLock { $0.metadata[name] }
    }

    public func setMetadata(_ name: String, _ value: [UInt8]) throws(StorageError) {
        state.withLock { $0.metadata[name] = value }
    }

    public func setMetadataDurably(_ name: String, _ value: [UInt8]) throws(StorageError) {
        try setMetadata(name, value)
    }

    public func approximateKeyCount() -> UInt64 {
        state.withLock { state in
            UInt64(Set(state.durable.keys).union(state.volatile.keys).count)
        }
    }

    public func close() {
        state.withLock { $0.closed = true }
    }

    /// Makes every applied write durable (a WAL fsync).
    public func sync() {
        state.withLock { state in
            for (key, record) in state.volatile {
                state.durable[key] = record
            }
            state.volatile.removeAll()
        }
    }

    /// Loses everything not yet synced, as a killed process with an unsynced WAL does, and reopens.
    public func crash() {
        state.withLock { state in
            state.volatile.removeAll()
            state.merkle = nil
            state.closed = false
        }
    }

    /// What survives a crash now.
    public func durableRecord(_ key: [UInt8]) -> StoredRecord? {
        state.withLock { $0.durable[key] }
    }
}

extension SimulatedStore: TombstonePurging {
    /// Purges durably, as `RocksDBStore`'s synced batch does.
    public func purgeTombstones(in range: TokenRangeSpan, before cutoff: Version) throws(StorageError) -> Int {
        try state.withLock { state throws(StorageError) -> Int in
            guard !state.closed else { throw StorageError.closed }
            let purged = state.visibleRecords.filter { key, record in
                record.tombstone && record.version < cutoff && range.contains(Token(key: key))
            }
            for (key, record) in purged {
                state.merkle?.update(old: MerkleEntry(key: key, record: record), new: nil)
                state.volatile[key] = nil
                state.durable[key] = nil
            }
            return purged.count
        }
    }
}

extension SimulatedStore: RangeStreaming {
    /// Pages what `get` sees (volatile over durable).
    public func streamPage(
        in range: TokenRangeSpan,
        after: [UInt8]?,
        recordsMax: Int,
        bytesMax: Int
    ) throws(StorageError) -> StreamPage {
        try state.withLock { state throws(StorageError) -> StreamPage in
            guard !state.closed else { throw StorageError.closed }
            return try StreamPage.paging(
                state.visibleRecords, in: range, after: after, recordsMax: recordsMax, bytesMax: bytesMax)
        }
    }

    /// Deletes durably, as `RocksDBStore`'s fsynced batches do: the range does not come back in a crash.
    public func deleteRange(_ range: TokenRangeSpan) throws(StorageError) -> Int {
        try state.withLock { state throws(StorageError) -> Int in
            guard !state.closed else { throw StorageError.closed }
            let removed = state.visibleRecords.filter { key, _ in range.contains(Token(key: key)) }
            for (key, record) in removed {
                state.merkle?.update(old: MerkleEntry(key: key, record: record), new: nil)
                state.volatile[key] = nil
                state.durable[key] = nil
            }
            return removed.count
        }
    }
}

extension SimulatedStore: MerkleStore {
    public func merkleDigest(of range: TokenRangeSpan) throws(StorageError) -> UInt64 {
        try state.withLock { state throws(StorageError) -> UInt64 in
            guard !state.closed else { throw StorageError.closed }
            let records = state.visibleRecords
            return state.segments().digest(of: range) { piece in
                Self.entries(records, in: piece).reduce(0) { $0 ^ $1.hash }
            }
        }
    }

    public func merkleListing(of range: TokenRangeSpan) throws(StorageError) -> [MerkleEntry] {
        try state.withLock { state throws(StorageError) -> [MerkleEntry] in
            guard !state.closed else { throw StorageError.closed }
            return Self.entries(state.visibleRecords, in: range).sorted(by: MerkleEntry.clockwiseOrder(from: range))
        }
    }

    public func merkleSegments() throws(StorageError) -> MerkleSegments {
        try state.withLock { state throws(StorageError) -> MerkleSegments in
            guard !state.closed else { throw StorageError.closed }
            return state.segments()
        }
    }

    @discardableResult
    public func rebuildMerkleSegments() throws(StorageError) -> MerkleRebuild {
        try state.withLock { state throws(StorageError) -> MerkleRebuild in
            guard !state.closed else { throw StorageError.closed }
            state.merkle = nil
            let segments = state.segments()
            return MerkleRebuild(
                reason: "asked for", records: state.visibleRecords.count,
                segments: segments.segmentHashes.lazy.filter { $0 != 0 }.count, duration: .zero)
        }
    }

    private static func entries(_ records: [[UInt8]: StoredRecord], in range: TokenRangeSpan) -> [MerkleEntry] {
        records.compactMap { key, record in
            range.contains(Token(key: key)) ? MerkleEntry(key: key, record: record) : nil
        }
    }
}
