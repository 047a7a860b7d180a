import CRocksDB
import Foundation
import KVCore
import Synchronization

/// What every keyspace's `RocksDBStore` shares: the database handle and its options, the `default`,
/// `hints` and `meta` column families, the hint counts, the lock stripes, the checkpoints, the WAL
/// syncer, and the gate that `close()` shuts. It also owns every keyspace's `data` and `versions`
/// families (`keyspaces`), so that closing frees them all and dropping a keyspace frees its own.
///
/// `@unchecked Sendable` for the same reason as `RocksDBStore`: the raw pointers are immutable after
/// `init` and freed only once no call can use them (the gate); a dropped keyspace's families are freed
/// once its calls in flight are done.
final class RocksDBEngine: @unchecked Sendable {
    let directory: String
    let durability: Durability

    let db: OpaquePointer
    let options: OpaquePointer
    /// `options` with a Bloom filter in each memtable: the keyspaces' `data` families'.
    let dataOptions: OpaquePointer
    /// `options` with a vector for a memtable: the families every write changes and only scans read
    /// (the keyspaces' `versions`, `merkle`; `familyOptions`).
    let indexOptions: OpaquePointer
    /// The block cache every family's tables share (`blockCacheBytes`).
    let blockCache: OpaquePointer
    let readOptions: OpaquePointer
    /// `readOptions` limited to the memtables and the block cache (`kBlockCacheTier`): a read that
    /// would touch a file fails with `Incomplete` instead of blocking.
    let memoryReadOptions: OpaquePointer
    let writeOptions: OpaquePointer
    /// Writes to the WAL without an fsync of their own, whatever the durability: for writes whose loss
    /// in a power cut is harmless (a hint deleted after its replay: the hint is replayed again). The
    /// next synced write makes them durable too.
    let unsyncedWriteOptions: OpaquePointer
    /// Always fsynced, for `setMetadataDurably` and keyspace creation and drops.
    let syncedWriteOptions: OpaquePointer
    /// `unsyncedWriteOptions` that never wait (`no_slowdown`): a write RocksDB would delay or stop
    /// (a write stall) fails with `Incomplete` instead. For `applyWithoutBlocking`, which runs only
    /// when the durability syncs no write of its own.
    let nonblockingWriteOptions: OpaquePointer
    let hintsFamily: OpaquePointer
    let metaFamily: OpaquePointer
    /// The Merkle segments' hashes of every keyspace, under each keyspace's `meta` prefix.
    let merkleFamily: OpaquePointer
    /// The default keyspace's families (`data`, `versions`): what incremental backups copy.
    let defaultKeyspace: KeyspaceFamilies

    /// Per-segment locks, shared by every keyspace (two keyspaces' keys of one segment share a stripe,
    /// which costs only contention).
    let stripes = LockStripes()
    /// The current headers of the keys written or read lately, of every keyspace, kept under `stripes`.
    let headers = HeaderCache()
    /// Serializes the hint writes and deletes of one target (stripe chosen by the target), so the
    /// queue bound and `hintCounts` stay exact while different targets' writes share group commits.
    let hintStripes = LockStripes()
    /// Hints per target, of every keyspace: counted by one scan of `hints` at open, then kept up to
    /// date under `hintStripes` (see `RocksDBStore+Hints.swift`).
    let hintCounts = Mutex(HintCounts())
    /// Tests: how many of `storeHints`'s reads succeed before one fails with an I/O error (RocksDB's
    /// reads fail only on damage no test can make on demand); negative: none fails.
    let hintReadsBeforeFailure = Atomic<Int>(-1)
    /// The checkpoints made for backups (`RocksDBStore+Checkpoint.swift`); none survive a reopen.
    let checkpoints: CheckpointRegistry
    /// Fsyncs the log every interval (`interval`), or when asked (`sync`: the writes made without
    /// waiting, `RocksDBStore.whenDurable`); nil with `none`.
    let walSyncer: WALSyncer?
    /// What keeps RocksDB from running out of room: records and hints are refused below its reserve.
    let room: DiskRoom
    /// The first failure of the store's writes or fsyncs, after which none reaches RocksDB.
    let fault: StorageFault
    /// The gate: set once by `close()`, after which every call throws `.closed`.
    private let closed = Atomic<Bool>(false)
    /// The calls using the handles now, which `close()` waits for.
    private let callsInFlight = Atomic<Int>(0)
    /// The column families of every keyspace and the views of the keyspaces other than 0. Creating and
    /// dropping a keyspace hold it, and so does any use of another keyspace's handles by the engine
    /// itself (flush, figures), so that a drop never frees a handle in use.
    let keyspaces: Mutex<Keyspaces>

    /// A keyspace's own column families (`@unchecked Sendable`: handles, freed under the engine's rules).
    struct KeyspaceFamilies: @unchecked Sendable {
        var data: OpaquePointer
        var versions: OpaquePointer
    }

    /// `@unchecked Sendable`: handles, freed under the engine's rules; only read or changed under
    /// `keyspaces`' lock.
    struct Keyspaces: @unchecked Sendable {
        /// Every keyspace's families, 0 included.
        var families: [UInt32: KeyspaceFamilies] = [:]
        /// The views of the keyspaces other than 0 (`RocksDBStore.keyspace(_:)`).
        var views: [UInt32: RocksDBStore] = [:]
        /// Keyspace 0's store, which `keyspace(0)` answers from any view. Weak: the root owns the engine
        /// (releasing it closes the store), the engine does not own the root.
        weak var root: RocksDBStore?
        /// Families the folder holds that no keyspace names (RocksDB opens every family): kept open,
        /// never read.
        var unknown: [OpaquePointer] = []
    }

    /// RocksDB's `InfoLogLevel.HEADER_LEVEL` (DEBUG is 0, INFO 1): only what it writes when it opens.
    static let infoLogLevel: Int32 = 5
    /// The size at which RocksDB starts a new `LOG` file.
    static let logFileBytesMax = 16 << 20

    /// Hash buckets of a `data` memtable (8 bytes each, allocated with every memtable of every keyspace).
    static let dataMemtableBuckets = 1 << 14

    /// Column families of the default keyspace and the shared ones, created on first open.
    static let baseFamilyNames = ["default", "data", "hints", "meta", "versions", "merkle"]

    /// The options family `name` is opened or created with: `data` for the keyspaces' `data`
    /// families, `index` for their `versions` families and `merkle`, else `options`.
    static func familyOptions(
        _ name: String, options: OpaquePointer, data: OpaquePointer, index: OpaquePointer
    ) -> OpaquePointer {
        if name == "merkle" { return index }
        guard let (_, isData) = (try? keyspaceFamily(name)) ?? nil else { return options }
        return isData ? data : index
    }

    /// Gives each memtable of the families opened with `options` a whole-key Bloom filter of 1 % of
    /// its size.
    private static func addMemtableBloom(_ options: OpaquePointer) {
        rocksdb_options_set_memtable_prefix_bloom_size_ratio(options, 0.01)
        rocksdb_options_set_memtable_whole_key_filtering(options, 1)
    }

    /// `familyOptions` with this engine's options.
    func options(forFamily name: String) -> OpaquePointer {
        Self.familyOptions(name, options: options, data: dataOptions, index: indexOptions)
    }

    /// The name of keyspace `id`'s `data` family: `data` for 0 (the name folders had before
    /// keyspaces), `data.<id>` otherwise.
    static func dataFamilyName(_ id: UInt32) -> String { id == 0 ? "data" : "data.\(id)" }

    /// The name of keyspace `id`'s `versions` family: `versions` for 0, `versions.<id>` otherwise.
    static func versionsFamilyName(_ id: UInt32) -> String { id == 0 ? "versions" : "versions.\(id)" }

    /// The keyspace and role a family name gives: nil for the shared families and for names no
    /// keyspace uses. Throws `.corruption` for a keyspace family whose id is out of bounds.
    static func keyspaceFamily(_ name: String) throws(StorageError) -> (id: UInt32, isData: Bool)? {
        switch name {
        case "data": return (0, true)
        case "versions": return (0, false)
        default: break
        }
        for (prefix, isData) in [("data.", true), ("versions.", false)] where name.hasPrefix(prefix) {
            let digits = name.dropFirst(prefix.count)
            // Canonical decimal only: `data.03` is not keyspace 3's.
            guard digits.count <= 10, let id = UInt32(digits), String(id) == digits, id != 0 else { return nil }
            guard id < UInt32(Limits.keyspaceIDsMax) else {
                throw .corruption("column family \(name) names keyspace \(id), not below \(Limits.keyspaceIDsMax)")
            }
            return (id, isData)
        }
        return nil
    }

    /// Opens (creating if missing) the folder with every column family it holds, and the shared and
    /// default keyspace's ones it lacks.
    init(
        directory: String, durability: Durability, walSync: WALSyncMode, walBytesMax: UInt64, blockCacheBytes: UInt64,
        diskReserveBytes: UInt64
    ) throws(StorageError) {
        self.directory = directory
        self.room = DiskRoom(path: directory, reserveBytes: diskReserveBytes)
        let fault = StorageFault(path: directory)
        self.fault = fault
        self.durability = durability
        self.checkpoints = CheckpointRegistry(directory: RocksDBStore.checkpointsDirectory(of: directory))

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
        // RocksDB's own log (`LOG` in the folder): Debian's librocksdb is built without NDEBUG, which
        // makes its default level DEBUG, a line for every fsync of the log (`FlushWAL`), hundreds a
        // second under `sync` writes, in a file that grew without bound until the next open. And its
        // assertions are on: once a line fails to reach a failing disk, the next line RocksDB logs
        // (the error it is handling) aborts the process (`WritableFileWriter::Append`). So only the
        // header it writes when it opens (version, options); its figures are the node's metrics
        // (docs/storage.md, "The engine's own log"). A file rolls at 16 MB and five are kept.
        rocksdb_options_set_info_log_level(options, Self.infoLogLevel)
        rocksdb_options_set_max_log_file_size(options, Self.logFileBytesMax)
        rocksdb_options_set_keep_log_file_num(options, 5)
        rocksdb_options_set_max_total_wal_size(options, walBytesMax)
        // Writers waiting for a group commit sleep rather than spin: on few cores, spinning steals the
        // CPU the leader needs (perf on a node under puts: 7 % of samples in WriteThread::AwaitState).
        rocksdb_options_set_enable_write_thread_adaptive_yield(options, 0)
        // The leader of a group commit inserts every writer's batch into the memtables itself: the
        // vector memtables (`indexOptions`) take no concurrent inserts, and on few cores the
        // followers' parallel inserts bought nothing measurable (docs/benchmarks.md, "Vector
        // memtables for the indexes").
        rocksdb_options_set_allow_concurrent_memtable_write(options, 0)
        // Tickers for the bytes written and read (`engineFigures`): no DB property gives them finer
        // than 0.01 GB. Their cost on the put path is measured in docs/benchmarks.md ("RocksDB statistics").
        rocksdb_options_enable_statistics(options)
        // Block-based tables with their default checksum (CRC32c) on every block, a whole-key Bloom
        // filter in each (10 bits per key, about 1 % false positives), so a point read (a get, the read
        // before every write) opens only the tables that may hold its key, and one block cache for
        // every family of every keyspace. A read the memtables and this cache can serve runs on the
        // event loop (`memoryReadOptions`); RocksDB's own default cache is 8 MB.
        let blockCache = rocksdb_cache_create_lru(Int(clamping: blockCacheBytes))!
        let tableOptions = rocksdb_block_based_options_create()!
        rocksdb_block_based_options_set_block_cache(tableOptions, blockCache)
        rocksdb_block_based_options_set_filter_policy(tableOptions, rocksdb_filterpolicy_create_bloom_full(10))
        rocksdb_options_set_block_based_table_factory(options, tableOptions)
        rocksdb_block_based_options_destroy(tableOptions)
        // The keyspaces' `data` families, where every point read goes, also have a whole-key Bloom
        // filter in each memtable (1 % of its size, about 12 bits per entry): a read of a key the
        // memtables lack skips their skip lists (a third of a get's cost past them). RocksDB
        // allocates it with every memtable, so the index families, which point reads do not use,
        // go without; `hints` and `meta` get one below.
        let dataOptions = rocksdb_options_create_copy(options)!
        Self.addMemtableBloom(dataOptions)
        // A put over a record the memtable holds, no longer than it, overwrites it in place instead of
        // adding a version beside it, so a memtable under overwrites holds one entry a key rather than
        // every version since the last flush: its skip list stays small and warm, and flushes only the
        // latest. Point reads copy a value under RocksDB's lock of the key; iterators read without it,
        // which is why a scan of `data` beside writers copies each value under its segment's stripe
        // (`RocksDBStore.scan`, docs/storage.md, "Records overwritten in place"). Needs the leader of a
        // group commit to insert alone (`allow_concurrent_memtable_write` off, above).
        rocksdb_options_set_inplace_update_support(dataOptions, 1)
        // The memtable finds a key through a hash of its token (the key's first 8 bytes) into small
        // skip lists, not through one skip list of every key: that search, which every overwrite in
        // place starts with, walked a dozen nodes out of the cache and was 8 % of a 3-node cluster's CPU
        // under `sync` puts (docs/benchmarks.md, "A hash memtable for the records"). An ordered scan
        // then sorts the memtable's entries first, which is why scans set `total_order_seek` and a
        // scan of `data` flushes a large memtable before it starts (`RocksDBStore.scan`).
        rocksdb_options_set_prefix_extractor(dataOptions, rocksdb_slicetransform_create_fixed_prefix(8))
        rocksdb_options_set_hash_skip_list_rep(dataOptions, Self.dataMemtableBuckets, 4, 4)
        // The version index and the Merkle segments (`versions`, `merkle`) change with every write,
        // two or three keys a put, and only scans read them (an incremental backup, the load at
        // open). A vector memtable appends each change and sorts once, at the flush; a skip list
        // searched itself on every insert, which was a fifth of a node's CPU under puts. A point read
        // of a vector memtable copies and sorts it, which is why the metadata that is read by key
        // stays in `meta`, a skip list (docs/benchmarks.md, "Vector memtables for the indexes").
        let indexOptions = rocksdb_options_create_copy(options)!
        rocksdb_options_set_memtable_vector_rep(indexOptions)
        // The shared families (`hints`, `meta`) are read by key too: each stored hint first looks for
        // the same hint already stored, which is almost never there, and without the filter that miss
        // searched the whole skip list of a memtable holding every hint since its flush
        // (docs/benchmarks.md, "Hints share the data's fsync").
        Self.addMemtableBloom(options)

        let names: [String]
        do throws(StorageError) {
            names = try Self.familyNames(in: directory, options: options)
        } catch {
            rocksdb_options_destroy(options)
            rocksdb_options_destroy(dataOptions)
            rocksdb_options_destroy(indexOptions)
            rocksdb_cache_destroy(blockCache)
            throw error
        }
        let opened: OpaquePointer
        let handles: [OpaquePointer]
        do throws(StorageError) {
            // `open` frees `options` when it fails.
            (opened, handles) = try RocksDBStore.open(
                directory, options: options, families: names,
                familyOptions: names.map {
                    Self.familyOptions($0, options: options, data: dataOptions, index: indexOptions)
                })
        } catch {
            rocksdb_options_destroy(dataOptions)
            rocksdb_options_destroy(indexOptions)
            rocksdb_cache_destroy(blockCache)
            throw error
        }

        var keyspaces = Keyspaces()
        var data: [UInt32: OpaquePointer] = [:]
        var versions: [UInt32: OpaquePointer] = [:]
        var shared: [String: OpaquePointer] = [:]
        for (name, handle) in zip(names, handles) {
            // Parsed once already by `familyNames`: cannot throw here.
            if let (id, isData) = try? Self.keyspaceFamily(name) {
                if isData { data[id] = handle } else { versions[id] = handle }
            } else if Self.baseFamilyNames.contains(name) {
                shared[name] = handle
            } else {
                keyspaces.unknown.append(handle)
            }
        }
        for (id, dataHandle) in data {
            // `familyNames` completes every pair: both are there.
            guard let versionsHandle = versions[id] else { continue }
            keyspaces.families[id] = KeyspaceFamilies(data: dataHandle, versions: versionsHandle)
        }

        let readOptions = rocksdb_readoptions_create()!
        rocksdb_readoptions_set_verify_checksums(readOptions, 1)
        let memoryReadOptions = rocksdb_readoptions_create()!
        rocksdb_readoptions_set_verify_checksums(memoryReadOptions, 1)
        rocksdb_readoptions_set_read_tier(memoryReadOptions, 1)
        let writeOptions = rocksdb_writeoptions_create()!
        // Never disable the WAL: every mode relies on it; only the fsync moment differs.
        rocksdb_writeoptions_set_sync(writeOptions, durability == .sync ? 1 : 0)
        let unsyncedWriteOptions = rocksdb_writeoptions_create()!
        rocksdb_writeoptions_set_sync(unsyncedWriteOptions, 0)
        let syncedWriteOptions = rocksdb_writeoptions_create()!
        rocksdb_writeoptions_set_sync(syncedWriteOptions, 1)
        let nonblockingWriteOptions = rocksdb_writeoptions_create()!
        rocksdb_writeoptions_set_sync(nonblockingWriteOptions, 0)
        rocksdb_writeoptions_set_no_slowdown(nonblockingWriteOptions, 1)

        self.db = opened
        self.options = options
        self.dataOptions = dataOptions
        self.indexOptions = indexOptions
        self.blockCache = blockCache
        self.readOptions = readOptions
        self.memoryReadOptions = memoryReadOptions
        self.writeOptions = writeOptions
        self.unsyncedWriteOptions = unsyncedWriteOptions
        self.syncedWriteOptions = syncedWriteOptions
        self.nonblockingWriteOptions = nonblockingWriteOptions
        // The base families were named in the open: RocksDB handed a handle for each.
        self.hintsFamily = shared["hints"]!
        self.metaFamily = shared["meta"]!
        self.merkleFamily = shared["merkle"]!
        self.defaultKeyspace = keyspaces.families[0]!
        keyspaces.unknown.append(shared["default"]!)
        self.keyspaces = Mutex(keyspaces)
        self.walSyncer =
            walSyncInterval.map { WALSyncer(db: opened, schedule: .every($0), fault: fault) }
            ?? (durability == .sync
                ? WALSyncer(db: opened, schedule: walSync == .caller ? .onCaller : .whenAsked, fault: fault) : nil)
    }

    deinit {
        close()
    }

    /// The families to open `directory` with: those it holds (none when new), the base ones it lacks,
    /// and the other half of a keyspace's pair when a crash left only one (created empty).
    private static func familyNames(in directory: String, options: OpaquePointer) throws(StorageError) -> [String] {
        var names = baseFamilyNames
        guard FileManager.default.fileExists(atPath: "\(directory)/CURRENT") else { return names }
        var count = 0
        var error: UnsafeMutablePointer<CChar>?
        let list = rocksdb_list_column_families(options, directory, &count, &error)
        defer { if let list { rocksdb_list_column_families_destroy(list, count) } }
        if let message = RocksDBStore.takeMessage(error) { throw RocksDBStore.openError(message, path: directory) }
        guard let list else { return names }
        // Bounded: two families a keyspace, the base ones, and a few unknown.
        guard count <= 2 * Limits.keyspaceIDsMax + 64 else {
            throw .corruption("the folder lists \(count) column families", path: directory)
        }
        for index in 0..<count {
            guard let cName = list[index] else { continue }
            let name = String(cString: cName)
            if !names.contains(name) { names.append(name) }
        }
        for name in names {
            guard let (id, _) = try keyspaceFamily(name) else { continue }
            for pair in [dataFamilyName(id), versionsFamilyName(id)] where !names.contains(pair) {
                names.append(pair)
            }
        }
        return names
    }

    // MARK: Gate

    /// RocksDB's `PerfLevel::kDisable`.
    static let perfLevelDisabled: Int32 = 1

    /// Runs `body` with the handles guaranteed alive: `close()` waits for it to return. With `view`,
    /// also refuses (`.closed`) once that view's keyspace is dropped, and `dropKeyspace` waits for it.
    ///
    /// The gate is two atomics a side, not a lock: every store call of every thread passes it, and a
    /// lock taken twice a call by 16 pool threads on few cores was contended (perf on a node serving
    /// batch gets: half its CPU in the mutex's slow path). A call counts itself, then looks at the
    /// flags; `close()` and `dropKeyspace` set their flag, then look at the count. All four are
    /// sequentially consistent, so either the call sees the flag (and leaves) or the closer sees it
    /// counted (and waits for it).
    func withOpenHandles<Result>(
        view: RocksDBStore?,
        _ body: () throws(StorageError) -> Result
    ) throws(StorageError) -> Result {
        callsInFlight.add(1, ordering: .sequentiallyConsistent)
        view?.callsInFlight.add(1, ordering: .sequentiallyConsistent)
        defer {
            view?.callsInFlight.subtract(1, ordering: .releasing)
            callsInFlight.subtract(1, ordering: .releasing)
        }
        if closed.load(ordering: .sequentiallyConsistent)
            || view?.dropped.load(ordering: .sequentiallyConsistent) == true
        {
            throw .closed
        }
        // RocksDB counts every call in a thread-local `perf_context` unless the calling thread says
        // not to (the level is per thread, and any thread may call): 5–7 % of a node's CPU per put,
        // for figures nothing reads (the metrics come from `Statistics`, which this leaves alone).
        rocksdb_set_perf_level(Self.perfLevelDisabled)
        return try body()
    }

    /// Refuses `view`'s calls from now on (`dropped`) and waits for those in flight; `false` lets them
    /// in again (a drop that failed). The other side of `withOpenHandles`' gate.
    func setDropped(_ dropped: Bool, _ view: RocksDBStore) {
        view.dropped.store(dropped, ordering: .sequentiallyConsistent)
        guard dropped else { return }
        while view.callsInFlight.load(ordering: .sequentiallyConsistent) > 0 {
            Thread.sleep(forTimeInterval: 0.000_5)
        }
    }

    /// Closes the store: every later call of every view throws `.closed`. Waits for the calls in flight.
    func close() {
        guard closed.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged
        else { return }
        // New calls now throw `.closed`; wait for the ones already using the handles.
        while callsInFlight.load(ordering: .sequentiallyConsistent) > 0 {
            Thread.sleep(forTimeInterval: 0.000_5)
        }
        walSyncer?.stop()
        // A clean close leaves nothing unsynced, whatever the mode (`sync` too: its writes made
        // without waiting are fsynced when asked, and a caller may not have asked yet). Nobody
        // is left to hear of a failure: the data is still in the log and RocksDB replays it on the
        // next open. After a failure of the disk (`fault`) nothing more is written.
        if fault.failure == nil {
            var error: UnsafeMutablePointer<CChar>?
            rocksdb_flush_wal(db, 1, &error)
            _ = RocksDBStore.takeMessage(error)
        }
        let families = keyspaces.withLock { keyspaces in
            defer {
                // The views hold the engine: letting them go breaks the cycle.
                keyspaces = Keyspaces()
            }
            return keyspaces.families.values.flatMap { [$0.data, $0.versions] } + keyspaces.unknown
        }
        (families + [hintsFamily, metaFamily, merkleFamily]).forEach { rocksdb_column_family_handle_destroy($0) }
        rocksdb_close(db)
        rocksdb_readoptions_destroy(readOptions)
        rocksdb_readoptions_destroy(memoryReadOptions)
        rocksdb_writeoptions_destroy(writeOptions)
        rocksdb_writeoptions_destroy(unsyncedWriteOptions)
        rocksdb_writeoptions_destroy(syncedWriteOptions)
        rocksdb_writeoptions_destroy(nonblockingWriteOptions)
        rocksdb_options_destroy(options)
        rocksdb_options_destroy(dataOptions)
        rocksdb_options_destroy(indexOptions)
        rocksdb_cache_destroy(blockCache)
    }

    /// Every column family handle, the engine's lock held: for calls that touch them all.
    func withAllFamilies<Result>(
        _ body: ([OpaquePointer]) throws(StorageError) -> Result
    ) throws(StorageError) -> Result {
        try keyspaces.withLock { (keyspaces) throws(StorageError) -> Result in
            let families =
                keyspaces.families.keys.sorted().flatMap { id -> [OpaquePointer] in
                    let families = keyspaces.families[id]!
                    return [families.data, families.versions]
                } + [hintsFamily, metaFamily, merkleFamily] + keyspaces.unknown
            return try body(families)
        }
    }
}
