import CRocksDB
import Foundation
public import KVCore
import Synchronization

/// A `ReplicaStore` on RocksDB: the write-ahead log with group commit, block checksums, compaction
/// and ordered iteration come from the engine.
///
/// Column families: `data` (records keyed by `token · key`, see `RecordCodec`), `hints` (the durable
/// hint log keyed by `target · version · key`, see `HintCodec` and `RocksDBStore+Hints.swift`),
/// `meta` (node id, cluster map, the Merkle segments, and the ranges due for anti-entropy, see
/// `MerkleCodec`, `RepairMarkCodec`, `RocksDBStore+Merkle.swift` and `RocksDBStore+RepairMarks.swift`),
/// `versions` (every `data` record once more, by version: what an incremental backup copies, see
/// `RocksDBStore+Changes.swift`), and RocksDB's mandatory `default`, left empty. All are created on
/// first open.
///
/// Every call blocks on I/O; run it on a thread pool. The class is thread-safe: RocksDB handles are
/// safe to share, per-key atomicity comes from `LockStripes`, and `close()` waits for calls in
/// flight before freeing the handles (hence `@unchecked Sendable`: the raw pointers are immutable
/// after `init` and only freed once nobody can use them).
public final class RocksDBStore: ReplicaStore, @unchecked Sendable {
    /// The directory holding the RocksDB files.
    public let directory: String
    /// When writes reach stable storage.
    public let durability: Durability

    /// Column family names, in the order of `families`.
    static let familyNames = ["default", "data", "hints", "meta", "versions"]
    /// The families a checkpoint is read with (`RocksDBCheckpointReader`), the first of `familyNames`:
    /// an incremental backup's checkpoint holds only these, and a backup made before `versions`
    /// existed lacks it.
    static let checkpointFamilyNames = Array(familyNames.prefix(4))

    let db: OpaquePointer
    private let options: OpaquePointer
    let readOptions: OpaquePointer
    let writeOptions: OpaquePointer
    /// Writes to the WAL without an fsync of their own, whatever the durability: for writes whose loss
    /// in a power cut is harmless (a hint deleted after its replay: the hint is replayed again). The
    /// next synced write makes them durable too.
    let unsyncedWriteOptions: OpaquePointer
    /// Always fsynced, for `setMetadataDurably`.
    let syncedWriteOptions: OpaquePointer
    private let families: [OpaquePointer]
    var dataFamily: OpaquePointer { families[1] }
    var hintsFamily: OpaquePointer { families[2] }
    var metaFamily: OpaquePointer { families[3] }
    var versionsFamily: OpaquePointer { families[4] }

    let stripes = LockStripes()
    /// Serializes the hint writes and deletes of one target (stripe chosen by the target), so the
    /// queue bound and `hintCounts` stay exact while different targets' writes share group commits.
    let hintStripes = LockStripes()
    /// Hints per target: counted by one scan of `hints` at open, then kept up to date under
    /// `hintStripes` (see `RocksDBStore+Hints.swift`).
    let hintCounts = Mutex(HintCounts())
    /// The repair marks: read from `meta` at open, then kept up to date by every mark and clear, which
    /// `repairMarkWrites` serializes (see `RocksDBStore+RepairMarks.swift`).
    let repairMarks = Mutex(RepairMarks())
    let repairMarkWrites = Mutex<Void>(())
    /// The Merkle segment hashes: loaded from `meta` at open (or rebuilt), then updated by every write
    /// after its batch commits, under the segment's stripe (see `RocksDBStore+Merkle.swift`).
    let merkle = Mutex(MerkleSegments())
    let merkleOpenRebuild = Mutex<MerkleRebuild?>(nil)
    private let gate = Mutex(Gate())
    /// The checkpoints made for backups (`RocksDBStore+Checkpoint.swift`); none survive a reopen.
    public let checkpoints: CheckpointRegistry
    private let walSyncer: WALSyncer?

    /// Whether the store is open, and how many calls are using the handles.
    private struct Gate {
        var closed = false
        var callsInFlight = 0
    }

    /// The most bytes of write-ahead log kept before RocksDB flushes the column families that hold the
    /// oldest log file back (`max_total_wal_size`).
    ///
    /// The four column families share one log, and a log file goes only once every family has flushed
    /// what it holds; the small families (hints, marks, metadata) fill their memtables rarely, so
    /// without a bound the logs of everything written since their last flush stay: 800 MB per node
    /// after loading 1 GB of values (docs/benchmarks.md, "Backup and restore").
    public static let walBytesMaxDefault: UInt64 = 256 << 20

    /// Opens (creating if missing) the store in `directory`.
    ///
    /// Throws `.openFailed` if the directory cannot be created or read, or is already open in this
    /// or another process (RocksDB's `LOCK` file); `.corruption` if RocksDB finds damaged files.
    public init(
        directory: String, durability: Durability = .sync, walBytesMax: UInt64 = walBytesMaxDefault
    ) throws(StorageError) {
        self.directory = directory
        self.durability = durability
        self.checkpoints = CheckpointRegistry(directory: Self.checkpointsDirectory(of: directory))

        var walSyncInterval: TimeInterval?
        if case .interval(let interval) = durability {
            let (seconds, attoseconds) = interval.components
            let timeInterval = Double(seconds) + Double(attoseconds) / 1e18
            guard timeInterval > 0 else {
                throw .openFailed(path: directory, reason: "durability interval must be positive, got \(interval)")
            }
            walSyncInterval = timeInterval
        }

        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .openFailed(path: directory, reason: "cannot create the directory: \(error.localizedDescription)")
        }

        let options = rocksdb_options_create()!
        rocksdb_options_set_create_if_missing(options, 1)
        rocksdb_options_set_create_missing_column_families(options, 1)
        // Fail on any inconsistency found while opening or writing rather than limp on.
        rocksdb_options_set_paranoid_checks(options, 1)
        rocksdb_options_set_keep_log_file_num(options, 5)
        rocksdb_options_set_max_total_wal_size(options, walBytesMax)
        // Writers waiting for a group commit sleep rather than spin: on few cores, spinning steals the
        // CPU the leader needs (perf on a node under puts: 7 % of samples in WriteThread::AwaitState).
        rocksdb_options_set_enable_write_thread_adaptive_yield(options, 0)
        // Tickers for the bytes written and read (`engineFigures`): no DB property gives them finer
        // than 0.01 GB. Their cost on the put path is measured in docs/benchmarks.md ("RocksDB statistics").
        rocksdb_options_enable_statistics(options)
        // Block-based tables with their default checksum (CRC32c) on every block.
        let tableOptions = rocksdb_block_based_options_create()!
        rocksdb_options_set_block_based_table_factory(options, tableOptions)
        rocksdb_block_based_options_destroy(tableOptions)

        let (opened, handles) = try Self.open(directory, options: options, families: Self.familyNames)

        let readOptions = rocksdb_readoptions_create()!
        rocksdb_readoptions_set_verify_checksums(readOptions, 1)
        let writeOptions = rocksdb_writeoptions_create()!
        // Never disable the WAL: every mode relies on it; only the fsync moment differs.
        rocksdb_writeoptions_set_sync(writeOptions, durability == .sync ? 1 : 0)
        let unsyncedWriteOptions = rocksdb_writeoptions_create()!
        rocksdb_writeoptions_set_sync(unsyncedWriteOptions, 0)
        let syncedWriteOptions = rocksdb_writeoptions_create()!
        rocksdb_writeoptions_set_sync(syncedWriteOptions, 1)

        self.db = opened
        self.options = options
        self.readOptions = readOptions
        self.writeOptions = writeOptions
        self.unsyncedWriteOptions = unsyncedWriteOptions
        self.syncedWriteOptions = syncedWriteOptions
        self.families = handles
        self.walSyncer = walSyncInterval.map { WALSyncer(db: opened, interval: $0, path: directory) }
        // Fully initialized: if a scan throws, `deinit` closes the handles.
        // Checkpoints left by a process that ended before releasing them (killed kvd or kvctl).
        checkpoints.removeAll()
        try loadHintCounts()
        try loadRepairMarks()
        try loadMerkleSegments()
        try loadVersionIndex()
    }

    deinit {
        close()
    }

    // MARK: ReplicaStore

    /// Applies `record` if newer, and updates the key's Merkle segment in the same RocksDB write batch,
    /// so a crash never leaves the two apart.
    ///
    /// The lock stripe is chosen by the key's segment, not its token: the segment hash is read,
    /// changed and written under it, so two keys of one segment cannot race on it. This adds no
    /// contention: two different keys still share a stripe with probability 1/256.
    public func apply(key: [UInt8], record: StoredRecord) throws(StorageError) -> ApplyOutcome {
        try validate(key: key, record: record)
        let dataKey = RecordCodec.dataKey(key)
        let segment = MerkleSegments.segment(of: Token(key: key))
        return try withOpenHandles { () throws(StorageError) -> ApplyOutcome in
            try stripes.withLock(forSegment: segment) { () throws(StorageError) -> ApplyOutcome in
                let current = try read(dataFamily, dataKey) {
                    (bytes) throws(StorageError) -> (version: Version, tombstone: Bool, expiresAtMillis: UInt64) in
                    try RecordCodec.decodeHeader(bytes)
                }
                if let kept = ApplyOutcome.withoutWriting(over: current?.version, offered: record.version) {
                    return kept
                }
                let delta = MerkleSegments.delta(
                    old: current.map { MerkleEntry(key: key, version: $0.version, tombstone: $0.tombstone) },
                    new: MerkleEntry(key: key, record: record))
                try writeBatch { batch in
                    Self.put(batch, dataFamily, dataKey, RecordCodec.encode(record))
                    reindex(batch, dataKey: dataKey, old: current?.version, new: record.version)
                    writeSegment(segment, xoring: delta, in: batch)
                }
                merkle.withLock { $0.xor(delta, intoSegment: segment) }
                return .applied
            }
        }
    }

    /// Applies the records newer than what is stored, their segments' new hashes and `metadata`, in one
    /// write batch: one fsync for a whole page (`apply(key:record:)` costs one a record, shared only with
    /// the writes that happen to run at the same moment). Holds the stripes of every segment the records
    /// touch, taken in order, until the batch is written.
    public func apply(_ records: [StreamedRecord], setting metadata: MetadataEntry?) throws(StorageError)
        -> [ApplyOutcome]
    {
        for streamed in records { try validate(key: streamed.key, record: streamed.record) }
        if let metadata { try validateMetadata(name: metadata.name) }
        let segments = records.map { MerkleSegments.segment(of: Token(key: $0.key)) }
        return try withOpenHandles { () throws(StorageError) -> [ApplyOutcome] in
            try stripes.withLocks(forSegments: segments) { () throws(StorageError) -> [ApplyOutcome] in
                var outcomes: [ApplyOutcome] = []
                outcomes.reserveCapacity(records.count)
                // What the batch will hold, so that a later record of the same key compares with it.
                var written: [[UInt8]: (version: Version, tombstone: Bool, expiresAtMillis: UInt64)] = [:]
                var writes: [(dataKey: [UInt8], old: Version?, record: StoredRecord)] = []
                var deltas: [Int: UInt64] = [:]
                for (streamed, segment) in zip(records, segments) {
                    let dataKey = RecordCodec.dataKey(streamed.key)
                    var current = written[dataKey]
                    if current == nil {
                        current = try read(dataFamily, dataKey) {
                            (bytes) throws(StorageError) -> (version: Version, tombstone: Bool, expiresAtMillis: UInt64)
                            in
                            try RecordCodec.decodeHeader(bytes)
                        }
                    }
                    if let kept = ApplyOutcome.withoutWriting(
                        over: current?.version, offered: streamed.record.version)
                    {
                        outcomes.append(kept)
                        continue
                    }
                    deltas[segment, default: 0] ^= MerkleSegments.delta(
                        old: current.map {
                            MerkleEntry(key: streamed.key, version: $0.version, tombstone: $0.tombstone)
                        },
                        new: MerkleEntry(key: streamed.key, record: streamed.record))
                    written[dataKey] = (
                        streamed.record.version, streamed.record.tombstone, streamed.record.expiresAtMillis
                    )
                    writes.append((dataKey, current?.version, streamed.record))
                    outcomes.append(.applied)
                }
                guard !writes.isEmpty || metadata != nil else { return outcomes }
                try writeBatch { batch in
                    // In order: a key written twice in the batch has its first version's entry put, then
                    // deleted.
                    for write in writes {
                        Self.put(batch, dataFamily, write.dataKey, RecordCodec.encode(write.record))
                        reindex(batch, dataKey: write.dataKey, old: write.old, new: write.record.version)
                    }
                    for (segment, delta) in deltas where delta != 0 { writeSegment(segment, xoring: delta, in: batch) }
                    if let metadata { Self.put(batch, metaFamily, Array(metadata.name.utf8), metadata.value) }
                }
                merkle.withLock { merkle in
                    for (segment, delta) in deltas { merkle.xor(delta, intoSegment: segment) }
                }
                return outcomes
            }
        }
    }

    /// Adds to `batch` the write of `segment`'s hash XOR `delta` (a delete when that is zero). The
    /// caller holds the segment's stripe, and XORs `delta` into `merkle` once the batch is written.
    func writeSegment(_ segment: Int, xoring delta: UInt64, in batch: OpaquePointer) {
        let segmentHash = merkle.withLock { $0[segment] } ^ delta
        if segmentHash == 0 {
            Self.delete(batch, metaFamily, MerkleCodec.segmentKey(segment))
        } else {
            Self.put(batch, metaFamily, MerkleCodec.segmentKey(segment), MerkleCodec.encodeHash(segmentHash))
        }
    }

    public func get(key: [UInt8]) throws(StorageError) -> StoredRecord? {
        let dataKey = RecordCodec.dataKey(key)
        return try withOpenHandles { () throws(StorageError) -> StoredRecord? in
            try read(dataFamily, dataKey) { (bytes) throws(StorageError) -> StoredRecord in
                try RecordCodec.decode(bytes)
            }
        }
    }

    public func metadata(_ name: String) throws(StorageError) -> [UInt8]? {
        try withOpenHandles { () throws(StorageError) -> [UInt8]? in
            try read(metaFamily, Array(name.utf8)) { (bytes) throws(StorageError) -> [UInt8] in Array(bytes) }
        }
    }

    public func setMetadata(_ name: String, _ value: [UInt8]) throws(StorageError) {
        try validateMetadata(name: name)
        try withOpenHandles { () throws(StorageError) in
            try write(metaFamily, Array(name.utf8), value)
        }
    }

    public func setMetadataDurably(_ name: String, _ value: [UInt8]) throws(StorageError) {
        try validateMetadata(name: name)
        try withOpenHandles { () throws(StorageError) in
            try write(metaFamily, Array(name.utf8), value, options: syncedWriteOptions)
        }
    }

    public func setMetadataLazily(_ name: String, _ value: [UInt8]) throws(StorageError) {
        try validateMetadata(name: name)
        try withOpenHandles { () throws(StorageError) in
            try write(metaFamily, Array(name.utf8), value, options: unsyncedWriteOptions)
        }
    }

    /// RocksDB's own figures for an operator, summed over the column families (data, hints, marks,
    /// metadata): compaction backlog, table bytes, memtable bytes; and the bytes written and read since
    /// the store opened, from the statistics. Nil once closed.
    public func engineFigures() -> EngineFigures? {
        try? withOpenHandles { () throws(StorageError) -> EngineFigures in
            func sum(_ property: String) -> UInt64 {
                families.reduce(UInt64(0)) { total, family in
                    var value: UInt64 = 0
                    guard rocksdb_property_int_cf(db, family, property, &value) == 0 else { return total }
                    return total &+ value
                }
            }
            return EngineFigures(
                pendingCompactionBytes: sum("rocksdb.estimate-pending-compaction-bytes"),
                liveTableBytes: sum("rocksdb.live-sst-files-size"),
                memtableBytes: sum("rocksdb.cur-size-all-mem-tables"),
                traffic: rocksdb_options_statistics_get_string(options).flatMap { text in
                    defer { rocksdb_free(text) }
                    return EngineTraffic(statistics: String(cString: text))
                })
        }
    }

    public func approximateKeyCount() -> UInt64 {
        let count = try? withOpenHandles { () throws(StorageError) -> UInt64 in
            var value: UInt64 = 0
            guard rocksdb_property_int_cf(db, dataFamily, "rocksdb.estimate-num-keys", &value) == 0 else {
                return 0
            }
            return value
        }
        return count ?? 0
    }

    public func close() {
        let closing = gate.withLock { gate in
            defer { gate.closed = true }
            return !gate.closed
        }
        guard closing else { return }
        // New calls now throw `.closed`; wait for the ones already using the handles.
        while gate.withLock({ $0.callsInFlight }) > 0 {
            Thread.sleep(forTimeInterval: 0.000_5)
        }
        walSyncer?.stop()
        if durability != .sync {
            // A clean close leaves nothing unsynced, whatever the mode. Nobody is left to hear of a
            // failure: the data is still in the log and RocksDB replays it on the next open.
            var error: UnsafeMutablePointer<CChar>?
            rocksdb_flush_wal(db, 1, &error)
            _ = Self.takeMessage(error)
        }
        families.forEach { rocksdb_column_family_handle_destroy($0) }
        rocksdb_close(db)
        rocksdb_readoptions_destroy(readOptions)
        rocksdb_writeoptions_destroy(writeOptions)
        rocksdb_writeoptions_destroy(unsyncedWriteOptions)
        rocksdb_writeoptions_destroy(syncedWriteOptions)
        rocksdb_options_destroy(options)
    }

    // MARK: Maintenance

    /// Writes the memtables of every column family to SST files and waits for it (a drain before a
    /// restart; tests use it to put data on disk in table files rather than only in the log).
    public func flush() throws(StorageError) {
        try withOpenHandles { () throws(StorageError) in try Self.flush(db, families, directory: directory) }
    }

    /// Runs `body` with the handles guaranteed alive: `close()` waits for it to return.
    func withOpenHandles<Result>(
        _ body: () throws(StorageError) -> Result
    ) throws(StorageError) -> Result {
        let open = gate.withLock { gate in
            if gate.closed { return false }
            gate.callsInFlight += 1
            return true
        }
        guard open else { throw .closed }
        defer { gate.withLock { $0.callsInFlight -= 1 } }
        return try body()
    }
}

/// RocksDB's figures `RocksDBStore.engineFigures()` reads.
public struct EngineFigures: Sendable, Hashable {
    /// Bytes compaction would have to rewrite to bring the levels within their targets (the backlog).
    public var pendingCompactionBytes: UInt64
    /// Bytes of the table files the current version uses.
    public var liveTableBytes: UInt64
    /// Bytes of the memtables, not yet flushed.
    public var memtableBytes: UInt64
    /// Bytes written and read since the store opened; nil when the statistics are not there.
    public var traffic: EngineTraffic?
}
