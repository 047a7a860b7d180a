import Foundation
public import KVCore
public import KVRPC
public import KVStorage
public import Metrics

/// One reading of a node's health: its process, its data folder's disk, its certificate, how far
/// behind its hint targets are, and the cluster as its failure detector sees it.
///
/// Read by ``NodeHealth/read(dataDirectory:hintAges:certificateNotAfterSeconds:map:suspected:)`` and
/// reported as these gauges (each with the dimension `node`):
///
/// | metric | what |
/// |---|---|
/// | `process_cpu_seconds_total` | user and system CPU time of the process (`/proc/self/stat`) |
/// | `process_resident_memory_bytes` | resident memory (`/proc/self/statm`) |
/// | `process_open_fds` | open file descriptors (`/proc/self/fd`) |
/// | `quorumkv_disk_used_bytes` | bytes the data folder takes on disk (allocated blocks, as `du` counts) |
/// | `quorumkv_disk_free_bytes` | bytes free for the node on the data folder's file system (`statvfs`) |
/// | `quorumkv_disk_reserve_bytes` | the bytes the node keeps free (`--disk-reserve-bytes`): below it, it refuses writes (`DiskRoom`); set at start |
/// | `quorumkv_storage_failed` | 1 once a write or an fsync of the node's storage failed (`StorageFault`): it refuses writes until restarted; else 0 |
/// | `quorumkv_certificate_expiry_timestamp_seconds` | when the node's certificate in use expires (Unix time) |
/// | `quorumkv_hint_oldest_age_seconds{target}` | age of the oldest-versioned hint queued for each target: the replica lag of what it missed |
/// | `quorumkv_healthy_nodes` | members of the cluster map this node does not suspect, itself included |
/// | `quorumkv_under_replicated_ranges{keyspace}` | vnode ranges of the keyspace's ring with fewer than its N replicas this node does not suspect (a split keyspace: its parts' added up) |
/// | `quorumkv_under_replicated_keys{keyspace}` | estimated keys in them: the keyspace's keys (this node's count over its share of the keyspace's ring) times their share; absent where this node replicates none of the keyspace |
/// | `quorumkv_hint_queue_bytes` | bytes of the hints this node holds, all targets |
/// | `quorumkv_keyspace_keys{keyspace}` | keys this node holds in each keyspace (RocksDB's estimate; a split keyspace's parts added up, `KeyspaceLabel`) |
/// | `quorumkv_peer_ping_seconds{peer}` | round trip of the last ping each peer answered |
/// | `quorumkv_rocksdb_pending_compaction_bytes` | bytes compaction would rewrite to bring the levels within their targets |
/// | `quorumkv_rocksdb_live_table_bytes` | bytes of the table files in use |
/// | `quorumkv_rocksdb_memtable_bytes` | bytes of the memtables not yet flushed |
/// | `quorumkv_rocksdb_block_cache_bytes`, `quorumkv_rocksdb_block_cache_capacity_bytes` | bytes the block cache holds, and its capacity (`--block-cache-bytes`) |
///
/// and these counters, advanced to the totals each sample reads (`TotalCounters`):
///
/// | metric | what |
/// |---|---|
/// | `quorumkv_peer_sent_bytes_total{peer}` | bytes this node's RPC connections sent to each peer, on the socket (TLS records) |
/// | `quorumkv_peer_received_bytes_total{peer}` | bytes they received from it; `peer` a node id, `client`, `unidentified` or `other` (``PeerTraffic``) |
/// | `quorumkv_rocksdb_written_bytes_total` | keys and values written through RocksDB (before compression) |
/// | `quorumkv_rocksdb_read_bytes_total` | keys and values read from RocksDB by gets and iterators |
/// | `quorumkv_rocksdb_wal_written_bytes_total` | bytes appended to the write-ahead log |
/// | `quorumkv_rocksdb_flush_written_bytes_total` | bytes of table files written by flushes |
/// | `quorumkv_rocksdb_compaction_read_bytes_total` | bytes compactions read |
/// | `quorumkv_rocksdb_compaction_written_bytes_total` | bytes compactions wrote |
/// | `quorumkv_rocksdb_block_cache_hits_total`, `quorumkv_rocksdb_block_cache_misses_total` | table blocks found in the block cache, and read from a file |
/// | `quorumkv_rocksdb_bloom_filter_skips_total` | table files point reads skipped on their Bloom filter's word |
public struct NodeHealthSample: Sendable, Hashable {
    public var cpuSeconds: Double?
    public var residentBytes: Double?
    public var openFileDescriptors: Int?
    public var diskUsedBytes: UInt64
    public var diskFreeBytes: UInt64?
    public var certificateNotAfterSeconds: UInt64?
    /// Seconds since the oldest-versioned hint of each target was stored.
    public var hintOldestAgeSeconds: [String: Double]
    public var healthyNodes: Int
    /// Vnode ranges with fewer than N replicas not suspected, by keyspace label (`KeyspaceLabel`).
    public var underReplicatedRanges: [String: Int]
    /// Keys in those ranges, estimated, by keyspace label (absent for a keyspace of which this node
    /// replicates nothing to estimate from).
    public var underReplicatedKeys: [String: Double] = [:]
    /// Bytes of the hints held.
    public var hintBytes: Int? = nil
    /// Keys held in each keyspace, by label (estimated).
    public var keysByKeyspace: [String: Int] = [:]
    /// Seconds of the last ping round trip to each peer.
    public var peerPingSeconds: [String: Double] = [:]
    /// RocksDB's figures (nil for a store without them).
    public var engine: EngineFigures? = nil
    /// Bytes sent to and received from each peer label since the node started.
    public var peerTraffic: [String: PeerTraffic.Totals] = [:]
    /// The refusal the node's writes get since its storage failed (`StorageFailure.refusal`); nil
    /// while it has not.
    public var storageFailure: String? = nil
}

/// Reads ``NodeHealthSample``s (blocking: it walks the data folder) and reports them as gauges, and to
/// `Admin` stats through `NodeStatistics.lastHealth`.
public final class NodeHealth: Sendable {
    private let cpu: Gauge
    private let resident: Gauge
    private let openFileDescriptors: Gauge
    private let diskUsed: Gauge
    private let diskFree: Gauge
    private let storageFailed: Gauge
    private let certificateExpiry: Gauge
    private let healthyNodes: Gauge
    private let underReplicated: GaugeFamily
    private let underReplicatedKeys: GaugeFamily
    private let hintBytes: Gauge
    private let keyspaceKeys: GaugeFamily
    private let hintAges: GaugeFamily
    private let pingSeconds: GaugeFamily
    private let pendingCompaction: Gauge
    private let liveTables: Gauge
    private let memtables: Gauge
    private let blockCache: Gauge
    private let blockCacheCapacity: Gauge
    private let peerSent: TotalCounters
    private let peerReceived: TotalCounters
    /// The `EngineTraffic` counters, each with the figure it follows.
    private let engineCounters: [(counter: TotalCounters, figure: @Sendable (EngineTraffic) -> UInt64)]

    /// The `# HELP` text of these gauges.
    public static let metricHelp: [String: String] = [
        "process_cpu_seconds_total": "User and system CPU time the process used, in seconds.",
        "process_resident_memory_bytes": "Resident memory of the process.",
        "process_open_fds": "File descriptors the process holds open.",
        "quorumkv_disk_used_bytes": "Bytes the data folder takes on disk.",
        "quorumkv_disk_free_bytes": "Bytes free for the node on the data folder's file system.",
        "quorumkv_disk_reserve_bytes": "Bytes the node keeps free on that file system; below it, it refuses writes.",
        "quorumkv_storage_failed":
            "1 once a write or an fsync of the node's storage failed: it refuses writes until it is restarted.",
        "quorumkv_certificate_expiry_timestamp_seconds": "When the node's certificate expires (Unix time).",
        "quorumkv_hint_oldest_age_seconds": "Age of the oldest-versioned hint queued for each target (replica lag).",
        "quorumkv_healthy_nodes": "Members of the cluster map this node does not suspect, itself included.",
        "quorumkv_under_replicated_ranges":
            "Vnode ranges of the keyspace with fewer than its N replicas this node does not suspect.",
        "quorumkv_under_replicated_keys":
            "Estimated keys of the keyspace in under-replicated ranges: this node's key count over its share of the keyspace's ring, times their share.",
        "quorumkv_hint_queue_bytes": "Bytes of the hints this node holds, all targets.",
        "quorumkv_keyspace_keys": "Keys this node holds in the keyspace (RocksDB's estimate).",
        "quorumkv_peer_ping_seconds": "Round trip of the last ping each peer answered.",
        "quorumkv_rocksdb_pending_compaction_bytes":
            "Bytes compaction would rewrite to bring the levels within target.",
        "quorumkv_rocksdb_live_table_bytes": "Bytes of the RocksDB table files in use.",
        "quorumkv_rocksdb_memtable_bytes": "Bytes of the RocksDB memtables not yet flushed.",
        "quorumkv_rocksdb_block_cache_bytes": "Bytes of table blocks the RocksDB block cache holds.",
        "quorumkv_rocksdb_block_cache_capacity_bytes": "The most bytes the RocksDB block cache may hold.",
        "quorumkv_peer_sent_bytes_total":
            "Bytes sent on RPC connections to each peer, as TLS records on the socket (peer: node id, client, unidentified, other).",
        "quorumkv_peer_received_bytes_total":
            "Bytes received on RPC connections from each peer, as TLS records on the socket (peer: node id, client, unidentified, other).",
        "quorumkv_rocksdb_written_bytes_total": "Bytes of keys and values written through RocksDB, before compression.",
        "quorumkv_rocksdb_read_bytes_total": "Bytes of keys and values read from RocksDB by gets and iterators.",
        "quorumkv_rocksdb_wal_written_bytes_total": "Bytes RocksDB appended to its write-ahead log.",
        "quorumkv_rocksdb_flush_written_bytes_total": "Bytes of table files RocksDB's memtable flushes wrote.",
        "quorumkv_rocksdb_compaction_read_bytes_total": "Bytes RocksDB's compactions read.",
        "quorumkv_rocksdb_compaction_written_bytes_total": "Bytes RocksDB's compactions wrote.",
        "quorumkv_rocksdb_block_cache_hits_total": "Table blocks RocksDB found in its block cache.",
        "quorumkv_rocksdb_block_cache_misses_total": "Table blocks RocksDB read from a file, not in its block cache.",
        "quorumkv_rocksdb_bloom_filter_skips_total":
            "Table files RocksDB's point reads skipped because their Bloom filter lacks the key.",
    ]

    /// - Parameter diskReserveBytes: the node's disk reserve, reported as `quorumkv_disk_reserve_bytes`
    ///   (nil: not reported).
    public init(
        nodeID: String, diskReserveBytes: UInt64? = nil, metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) {
        func gauge(_ label: String) -> Gauge {
            Gauge(label: label, dimensions: [("node", nodeID)], factory: metricsFactory)
        }
        if let diskReserveBytes { gauge("quorumkv_disk_reserve_bytes").record(Double(diskReserveBytes)) }
        cpu = gauge("process_cpu_seconds_total")
        resident = gauge("process_resident_memory_bytes")
        openFileDescriptors = gauge("process_open_fds")
        diskUsed = gauge("quorumkv_disk_used_bytes")
        diskFree = gauge("quorumkv_disk_free_bytes")
        storageFailed = gauge("quorumkv_storage_failed")
        certificateExpiry = gauge("quorumkv_certificate_expiry_timestamp_seconds")
        healthyNodes = gauge("quorumkv_healthy_nodes")
        underReplicated = GaugeFamily(
            "quorumkv_under_replicated_ranges", by: "keyspace", nodeID: nodeID, factory: metricsFactory)
        underReplicatedKeys = GaugeFamily(
            "quorumkv_under_replicated_keys", by: "keyspace", nodeID: nodeID, factory: metricsFactory)
        hintBytes = gauge("quorumkv_hint_queue_bytes")
        keyspaceKeys = GaugeFamily("quorumkv_keyspace_keys", by: "keyspace", nodeID: nodeID, factory: metricsFactory)
        hintAges = GaugeFamily(
            "quorumkv_hint_oldest_age_seconds", by: "target", nodeID: nodeID, factory: metricsFactory)
        pingSeconds = GaugeFamily("quorumkv_peer_ping_seconds", by: "peer", nodeID: nodeID, factory: metricsFactory)
        pendingCompaction = gauge("quorumkv_rocksdb_pending_compaction_bytes")
        liveTables = gauge("quorumkv_rocksdb_live_table_bytes")
        memtables = gauge("quorumkv_rocksdb_memtable_bytes")
        blockCache = gauge("quorumkv_rocksdb_block_cache_bytes")
        blockCacheCapacity = gauge("quorumkv_rocksdb_block_cache_capacity_bytes")
        peerSent = TotalCounters(
            "quorumkv_peer_sent_bytes_total", by: "peer", nodeID: nodeID, factory: metricsFactory)
        peerReceived = TotalCounters(
            "quorumkv_peer_received_bytes_total", by: "peer", nodeID: nodeID, factory: metricsFactory)
        func counter(_ label: String, _ figure: @escaping @Sendable (EngineTraffic) -> UInt64) -> (
            counter: TotalCounters, figure: @Sendable (EngineTraffic) -> UInt64
        ) {
            (TotalCounters(label, nodeID: nodeID, factory: metricsFactory), figure)
        }
        engineCounters = [
            counter("quorumkv_rocksdb_written_bytes_total") { $0.writtenBytes },
            counter("quorumkv_rocksdb_read_bytes_total") { $0.readBytes },
            counter("quorumkv_rocksdb_wal_written_bytes_total") { $0.walWrittenBytes },
            counter("quorumkv_rocksdb_flush_written_bytes_total") { $0.flushWrittenBytes },
            counter("quorumkv_rocksdb_compaction_read_bytes_total") { $0.compactionReadBytes },
            counter("quorumkv_rocksdb_compaction_written_bytes_total") { $0.compactionWrittenBytes },
            counter("quorumkv_rocksdb_block_cache_hits_total") { $0.blockCacheHits },
            counter("quorumkv_rocksdb_block_cache_misses_total") { $0.blockCacheMisses },
            counter("quorumkv_rocksdb_bloom_filter_skips_total") { $0.bloomFilterSkips },
        ]
    }

    /// Sets every gauge from `sample` (a value the sample lacks leaves its gauge as it was).
    public func record(_ sample: NodeHealthSample) {
        if let value = sample.cpuSeconds { cpu.record(value) }
        if let value = sample.residentBytes { resident.record(value) }
        if let value = sample.openFileDescriptors { openFileDescriptors.record(value) }
        diskUsed.record(Double(sample.diskUsedBytes))
        if let value = sample.diskFreeBytes { diskFree.record(Double(value)) }
        storageFailed.record(sample.storageFailure == nil ? 0 : 1)
        if let value = sample.certificateNotAfterSeconds { certificateExpiry.record(Double(value)) }
        healthyNodes.record(sample.healthyNodes)
        underReplicated.record(sample.underReplicatedRanges.mapValues(Double.init))
        underReplicatedKeys.record(sample.underReplicatedKeys)
        if let value = sample.hintBytes { hintBytes.record(value) }
        keyspaceKeys.record(sample.keysByKeyspace.mapValues(Double.init))
        hintAges.record(sample.hintOldestAgeSeconds)
        pingSeconds.record(sample.peerPingSeconds)
        if let engine = sample.engine {
            pendingCompaction.record(Double(engine.pendingCompactionBytes))
            liveTables.record(Double(engine.liveTableBytes))
            memtables.record(Double(engine.memtableBytes))
            blockCache.record(Double(engine.blockCacheBytes))
            blockCacheCapacity.record(Double(engine.blockCacheCapacityBytes))
        }
        if let traffic = sample.engine?.traffic {
            for (counter, figure) in engineCounters { counter.record(figure(traffic)) }
        }
        peerSent.record(sample.peerTraffic.mapValues(\.sent))
        peerReceived.record(sample.peerTraffic.mapValues(\.received))
    }

    /// Reads a sample. Blocks while it walks `dataDirectory`: run it off the event loops.
    ///
    /// - Parameters:
    ///   - hintAges: seconds since the oldest-versioned hint of each target was stored.
    ///   - map: the cluster map this node holds; `suspected`: the peers its detector suspects.
    ///   - keys: (`node`, its approximate key count in each keyspace, by id): the keys gauge, and to
    ///     estimate the keys under-replicated.
    ///   - storageFailure: the failure that stopped the store's writes (`RocksDBStore.storageFailure`).
    public static func read(
        dataDirectory: String, hintAges: [String: Double], certificateNotAfterSeconds: UInt64?,
        map: ClusterMap, suspected: Set<String>, peerPingSeconds: [String: Double] = [:], engine: EngineFigures? = nil,
        peerTraffic: [String: PeerTraffic.Totals] = [:], keys: (node: String, byKeyspace: [UInt32: UInt64])? = nil,
        hintBytes: Int? = nil, storageFailure: StorageFailure? = nil
    ) -> NodeHealthSample {
        let process = processFigures()
        let members = Set(map.nodes.map(\.id))
        let reachable = { (node: String) in !suspected.contains(node) }
        var underReplicatedRanges: [String: Int] = [:]
        var underReplicatedKeys: [String: Double] = [:]
        for keyspace in map.liveKeyspaces {
            guard let ring = try? map.ring(of: keyspace) else { continue }
            underReplicatedRanges[keyspace.name, default: 0] += ring.underReplicatedRanges(reachable: reachable)
            guard let keys, let count = keys.byKeyspace[keyspace.id],
                case let own = ring.replicaShare()[keys.node] ?? 0,
                own > 0
            else { continue }
            underReplicatedKeys[keyspace.name, default: 0] +=
                (Double(count) / own * ring.underReplicatedShare(reachable: reachable)).rounded()
        }
        var sample = NodeHealthSample(
            cpuSeconds: process.cpuSeconds, residentBytes: process.residentBytes,
            openFileDescriptors: process.openFileDescriptors,
            diskUsedBytes: bytesOnDisk(dataDirectory), diskFreeBytes: DiskRoom.bytesFree(dataDirectory),
            certificateNotAfterSeconds: certificateNotAfterSeconds, hintOldestAgeSeconds: hintAges,
            healthyNodes: members.subtracting(suspected).count,
            underReplicatedRanges: underReplicatedRanges,
            peerPingSeconds: peerPingSeconds, engine: engine, peerTraffic: peerTraffic)
        sample.underReplicatedKeys = underReplicatedKeys
        sample.hintBytes = hintBytes
        sample.storageFailure = storageFailure?.refusal.description
        sample.keysByKeyspace = KeyspaceLabel.byLabel(keys?.byKeyspace ?? [:], in: map).mapValues { Int(clamping: $0) }
        return sample
    }

    /// The blocks the files under `path` take, as `du` counts them (hard links once).
    static func bytesOnDisk(_ path: String) -> UInt64 {
        var total: UInt64 = 0
        var seen = Set<[UInt64]>()
        var status = stat()
        if lstat(path, &status) == 0 {
            total &+= UInt64(clamping: status.st_blocks) &* 512
        }
        guard let names = FileManager.default.enumerator(atPath: path) else { return total }
        for case let name as String in names {
            guard lstat("\(path)/\(name)", &status) == 0 else { continue }
            if status.st_nlink > 1 && (status.st_mode & S_IFMT) != S_IFDIR {
                guard seen.insert([UInt64(status.st_dev), UInt64(status.st_ino)]).inserted else { continue }
            }
            total &+= UInt64(clamping: status.st_blocks) &* 512
        }
        return total
    }

    /// CPU seconds, resident bytes and open descriptors of this process, from `/proc/self`.
    static func processFigures() -> (cpuSeconds: Double?, residentBytes: Double?, openFileDescriptors: Int?) {
        var cpuSeconds: Double?
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let end = stat.lastIndex(of: ")")
        {
            // Fields after the command name: state is field 3, utime 14 and stime 15.
            let fields = stat[stat.index(after: end)...].split(separator: " ")
            if fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) {
                let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
                cpuSeconds = ticks > 0 ? (user + system) / ticks : nil
            }
        }
        var residentBytes: Double?
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = statm.split(separator: " ")
            if fields.count > 1, let pages = Double(fields[1]) {
                residentBytes = pages * Double(sysconf(Int32(_SC_PAGESIZE)))
            }
        }
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")).map(\.count)
        return (cpuSeconds, residentBytes, descriptors)
    }
}
