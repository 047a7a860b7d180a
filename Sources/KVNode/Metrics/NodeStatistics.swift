import KVCore
public import KVRPC
public import KVWire
public import Metrics
package import Synchronization

/// Counters a node keeps about its hints, read repairs and anti-entropy marks, shared by the RPC
/// service (which reports them), the hint replayer and the repair marker (which move most of them).
///
/// Each counter is an atomic, which `Admin` stats reads, and is reported through swift-metrics as
/// well, with the node's id as the dimension `node`:
///
/// | metric | kind | moves when |
/// |---|---|---|
/// | `quorumkv_hints_stored_total{keyspace}` | counter | a hint was stored for another replica |
/// | `quorumkv_hints_refused_total{keyspace}` | counter | a hint was refused: its target's queue was full, or the target is the node itself |
/// | `quorumkv_clock_ahead_refused_total` | counter | a request carried a clock or version further ahead of the node's clock than `--max-clock-offset` |
/// | `quorumkv_hints_rehomed_total{keyspace}` | counter | a hint's target no longer kept its key, so the hint went to the key's current replicas |
/// | `quorumkv_maps_refused_total` | counter | a peer committed a cluster map that was not the next epoch, not a valid ring, or without a majority's valid signatures |
/// | `quorumkv_hints_replayed_total{keyspace}` | counter | a hint was handed over and acknowledged (by its target, or by its key's replicas when the target was removed), or deleted unsent because a newer hint of its key was (`HintReplayRound`) |
/// | `quorumkv_hints_expired_total{keyspace}` | counter | a hint outlived the hint window and was dropped |
/// | `quorumkv_read_repairs_received_total{keyspace}` | counter | a `Put` with origin `readRepair` arrived |
/// | `quorumkv_read_repairs_applied_total{keyspace}` | counter | such a `Put` replaced an older version (or none) |
/// | `quorumkv_anti_entropy_ranges_marked_total{reason}` | counter | a range was newly marked due, `reason` `hint_refused` or `hint_expired` |
/// | `quorumkv_anti_entropy_mark_failures_total` | counter | a range could not be marked (storage failure, shutdown) |
/// | `quorumkv_anti_entropy_writes_received_total{keyspace}` | counter | a `Put` with origin `antiEntropy` arrived |
/// | `quorumkv_anti_entropy_ranges_compared_total` | counter | a range was compared without error with every co-replica (counted once the pass checkpointed it) |
/// | `quorumkv_anti_entropy_keys_repaired_total{direction,keyspace}` | counter | a record was copied by anti-entropy: `sent` (a co-replica applied it) or `received` (this node applied it) |
/// | `quorumkv_anti_entropy_bytes_total` | counter | bytes of anti-entropy RPC frames, both directions |
/// | `quorumkv_anti_entropy_session_failures_total` | counter | an anti-entropy session ended with an error |
/// | `quorumkv_anti_entropy_last_full_pass_timestamp_seconds{keyspace}` | gauge | a whole pass (all ranges) of the keyspace ended without error (of every part, for a split keyspace: the oldest of theirs); 0: never |
/// | `quorumkv_hint_queue_size{target}` | gauge | hints held per target |
/// | `quorumkv_anti_entropy_ranges_due{keyspace}` | gauge | the keyspace's ranges marked and not yet repaired |
/// | `quorumkv_peer_up{peer}` | gauge | 1 while this node's failure detector trusts the peer, 0 while it suspects it |
/// | `quorumkv_peer_phi{peer}` | gauge | the failure detector's phi for the peer (suspected above `--phi-threshold`) |
/// | `quorumkv_cluster_epoch` | gauge | the epoch of the cluster map this node holds |
/// | `quorumkv_write_batches_total{writer}` | counter | the group commit wrote a batch of single writes: `writer` `event_loop` (on the loop that took them, durability `none` or `interval`) or `pool` (a storage thread: durability `sync`, or the loop would have waited) |
/// | `quorumkv_rpc_refused_total{reason}` | counter | a connection or request was refused, or a connection closed or made to wait, to protect the node: `reason` one of `RPCRefusal`'s (`connections`, `per_identity`, `handshakes`, `in_flight`, `in_flight_bytes`, `server_in_flight_bytes`, `receive_memory`, `queue_full`, `idle`, `frame_deadline`, `answers_unread`, `violations`) |
///
/// Gauges are set by `recordQueues`, which the node calls whenever it reads its queue sizes (for a
/// `Ping` or `Admin` stats) and every few seconds (`reportQueues(every:read:)`), and by
/// `recordPeers` every few seconds (`reportPeers(every:read:)`). Metrics go to the
/// factory given at `init`: by default `MetricsSystem.factory` as it is then (a task-local factory
/// set with `withMetricsFactory`, else the bootstrapped one, else none). Dimensions are bounded:
/// `target` takes cluster members only, since hints for unknown nodes are refused; `keyspace` the
/// names of the node's map (`KeyspaceLabel`).
public final class NodeStatistics: Sendable {
    /// The node these counters belong to, the `node` dimension of every metric.
    public let nodeID: String

    package let hintsStored: KeyspaceCounter
    package let hintsRefused: KeyspaceCounter
    package let clockAheadRefused: ReportedCounter
    package let mapsRefused: ReportedCounter
    package let hintsRehomed: KeyspaceCounter
    package let hintsReplayed: KeyspaceCounter
    package let hintsExpired: KeyspaceCounter
    package let readRepairsReceived: KeyspaceCounter
    package let readRepairsApplied: KeyspaceCounter
    package let rangesMarkedForRefusedHints: ReportedCounter
    package let rangesMarkedForExpiredHints: ReportedCounter
    package let markFailures: ReportedCounter
    package let antiEntropyWritesReceived: KeyspaceCounter
    package let antiEntropyRangesCompared: ReportedCounter
    package let antiEntropyKeysSent: KeyspaceCounter
    package let antiEntropyKeysReceived: KeyspaceCounter
    package let antiEntropyBytes: ReportedCounter
    package let antiEntropySessionFailures: ReportedCounter
    package let tombstonesPurged: KeyspaceCounter
    package let streamKeysReceived: KeyspaceCounter
    package let streamKeysResent: ReportedCounter
    package let streamBytes: ReportedCounter
    package let streamRetries: ReportedCounter
    package let handoffKeysDeleted: ReportedCounter
    /// Group commit batches written on an event loop, and on the storage pool (`WriteGroup`).
    package let writeBatchesOnEventLoop: ReportedCounter
    package let writeBatchesOnPool: ReportedCounter
    /// One counter per `RPCRefusal`.
    private let refusals: [RPCRefusal: ReportedCounter]
    /// Wall clock (ms since the Unix epoch) when each keyspace's last whole pass ended without error,
    /// by keyspace id (a split keyspace's parts pass apart); absent: never.
    private let lastFullPasses = Mutex<[UInt32: UInt64]>([:])
    private let lastFullPassGauges: GaugeFamily

    private let rangesDueGauges: GaugeFamily
    private let queueGauges: GaugeFamily
    private let peerUpGauges: GaugeFamily
    private let peerPhiGauges: GaugeFamily
    private let epochGauge: Gauge
    /// The node's last health reading (`NodeHealth`), for `Admin` stats; nil before the first.
    package let lastHealth = Mutex<NodeHealthSample?>(nil)

    /// - Parameters:
    ///   - nodeID: the `node` dimension of every metric.
    ///   - metricsFactory: where the metrics go; kept for the gauges made later, one per hint target.
    public init(nodeID: String, metricsFactory: any MetricsFactory = MetricsSystem.factory) {
        self.nodeID = nodeID
        func counter(_ label: String, _ dimensions: [(String, String)] = []) -> ReportedCounter {
            ReportedCounter(label: label, dimensions: [("node", nodeID)] + dimensions, factory: metricsFactory)
        }
        func byKeyspace(_ label: String, _ dimensions: [(String, String)] = []) -> KeyspaceCounter {
            KeyspaceCounter(label: label, dimensions: [("node", nodeID)] + dimensions, factory: metricsFactory)
        }
        hintsStored = byKeyspace("quorumkv_hints_stored_total")
        hintsRefused = byKeyspace("quorumkv_hints_refused_total")
        clockAheadRefused = counter("quorumkv_clock_ahead_refused_total")
        mapsRefused = counter("quorumkv_maps_refused_total")
        hintsRehomed = byKeyspace("quorumkv_hints_rehomed_total")
        hintsReplayed = byKeyspace("quorumkv_hints_replayed_total")
        hintsExpired = byKeyspace("quorumkv_hints_expired_total")
        readRepairsReceived = byKeyspace("quorumkv_read_repairs_received_total")
        readRepairsApplied = byKeyspace("quorumkv_read_repairs_applied_total")
        rangesMarkedForRefusedHints = counter("quorumkv_anti_entropy_ranges_marked_total", [("reason", "hint_refused")])
        rangesMarkedForExpiredHints = counter("quorumkv_anti_entropy_ranges_marked_total", [("reason", "hint_expired")])
        markFailures = counter("quorumkv_anti_entropy_mark_failures_total")
        antiEntropyWritesReceived = byKeyspace("quorumkv_anti_entropy_writes_received_total")
        antiEntropyRangesCompared = counter("quorumkv_anti_entropy_ranges_compared_total")
        antiEntropyKeysSent = byKeyspace("quorumkv_anti_entropy_keys_repaired_total", [("direction", "sent")])
        antiEntropyKeysReceived = byKeyspace("quorumkv_anti_entropy_keys_repaired_total", [("direction", "received")])
        antiEntropyBytes = counter("quorumkv_anti_entropy_bytes_total")
        antiEntropySessionFailures = counter("quorumkv_anti_entropy_session_failures_total")
        tombstonesPurged = byKeyspace("quorumkv_tombstones_purged_total")
        streamKeysReceived = byKeyspace("quorumkv_stream_keys_received_total")
        streamKeysResent = counter("quorumkv_stream_keys_resent_total")
        streamBytes = counter("quorumkv_stream_bytes_total")
        streamRetries = counter("quorumkv_stream_retries_total")
        handoffKeysDeleted = counter("quorumkv_handoff_keys_deleted_total")
        writeBatchesOnEventLoop = counter("quorumkv_write_batches_total", [("writer", "event_loop")])
        writeBatchesOnPool = counter("quorumkv_write_batches_total", [("writer", "pool")])
        refusals = Dictionary(
            uniqueKeysWithValues: RPCRefusal.allCases.map {
                ($0, counter("quorumkv_rpc_refused_total", [("reason", $0.rawValue)]))
            })
        lastFullPassGauges = GaugeFamily(
            "quorumkv_anti_entropy_last_full_pass_timestamp_seconds", by: "keyspace", nodeID: nodeID,
            factory: metricsFactory)
        rangesDueGauges = GaugeFamily(
            "quorumkv_anti_entropy_ranges_due", by: "keyspace", nodeID: nodeID, factory: metricsFactory)
        epochGauge = Gauge(label: "quorumkv_cluster_epoch", dimensions: [("node", nodeID)], factory: metricsFactory)
        queueGauges = GaugeFamily("quorumkv_hint_queue_size", by: "target", nodeID: nodeID, factory: metricsFactory)
        peerUpGauges = GaugeFamily("quorumkv_peer_up", by: "peer", nodeID: nodeID, factory: metricsFactory)
        peerPhiGauges = GaugeFamily("quorumkv_peer_phi", by: "peer", nodeID: nodeID, factory: metricsFactory)
    }

    /// The `# HELP` text of every metric a node reports (these counters and gauges, and
    /// `MeasuredService`'s), for the Prometheus endpoint.
    public static let metricHelp: [String: String] = [
        "quorumkv_hints_stored_total": "Hints stored for other replicas.",
        "quorumkv_hints_refused_total": "Hints refused because the target's queue was full or was the node itself.",
        "quorumkv_clock_ahead_refused_total":
            "Requests refused because a clock or version was further ahead than the maximum clock offset.",
        "quorumkv_hints_rehomed_total":
            "Hints handed to their key's current replicas because their target no longer keeps the key.",
        "quorumkv_maps_refused_total":
            "Cluster maps from peers refused: not the next epoch, not a valid ring, or without a majority's signatures.",
        "quorumkv_hints_replayed_total": "Hints handed over and acknowledged.",
        "quorumkv_hints_expired_total": "Hints dropped after the hint window.",
        "quorumkv_read_repairs_received_total": "Puts with origin readRepair received.",
        "quorumkv_read_repairs_applied_total": "Read repairs that replaced an older version (or none).",
        "quorumkv_anti_entropy_ranges_marked_total": "Ranges newly marked due for anti-entropy, by reason.",
        "quorumkv_anti_entropy_mark_failures_total": "Anti-entropy marks that could not be written.",
        "quorumkv_anti_entropy_writes_received_total": "Puts with origin antiEntropy received.",
        "quorumkv_anti_entropy_ranges_compared_total": "Ranges compared without error with every co-replica.",
        "quorumkv_anti_entropy_keys_repaired_total": "Records anti-entropy copied, sent to a co-replica or received.",
        "quorumkv_anti_entropy_bytes_total": "Bytes of anti-entropy RPC frames, both directions.",
        "quorumkv_anti_entropy_session_failures_total": "Anti-entropy comparisons that ended with an error.",
        "quorumkv_anti_entropy_last_full_pass_timestamp_seconds":
            "When a whole anti-entropy pass of the keyspace last ended without error (Unix time; 0: never).",
        "quorumkv_anti_entropy_ranges_due": "Ranges of the keyspace marked due for anti-entropy and not yet repaired.",
        "quorumkv_tombstones_purged_total": "Tombstones purged after anti-entropy confirmed them on every replica.",
        "quorumkv_stream_keys_received_total": "Records received by range transfers.",
        "quorumkv_stream_keys_resent_total": "Records received again after a restart mid-transfer.",
        "quorumkv_stream_bytes_total": "Key and value bytes received by range transfers.",
        "quorumkv_stream_retries_total": "Range transfer attempts that failed and went to another source.",
        "quorumkv_handoff_keys_deleted_total": "Records dropped after their range moved to other nodes.",
        "quorumkv_write_batches_total":
            "Batches of single writes the group commit wrote, by writer: the event loop that took them, or the storage pool.",
        "quorumkv_hint_queue_size": "Hints held for each target node.",
        "quorumkv_peer_up": "1 while this node's failure detector trusts the peer, 0 while it suspects it.",
        "quorumkv_peer_phi": "The failure detector's phi for the peer.",
        "quorumkv_cluster_epoch": "The epoch of the cluster map this node holds.",
        "quorumkv_requests_total":
            "Requests answered, by message type and keyspace (none: a request about no keyspace; unknown: an id the map lacks).",
        "quorumkv_request_errors_total": "Requests answered with an error, by message type and keyspace.",
        "quorumkv_requests_on_event_loop_total":
            "Requests taken on the connection's event loop (reads from memory, writes to the group commit, hints to the pool), by message type and keyspace; the others went through a task.",
        "quorumkv_request_duration_seconds":
            "Time from a request's arrival to its answer, by message type and keyspace.",
        "quorumkv_batch_items_total": "Keys of the batch requests answered, by batch type and keyspace.",
        "quorumkv_batch_item_errors_total":
            "Keys of the batch requests answered with an error (each key of a batch refused whole), by batch type and keyspace.",
        "quorumkv_rpc_refused_total":
            "Connections and requests refused, or connections closed, to protect the node, by reason.",
    ]

    /// Sets every counter of `stats` (`Admin` stats).
    public func fill(_ stats: inout NodeStats) {
        func value(_ counter: some CountedTotal) -> UInt64 { UInt64(clamping: counter.load(ordering: .relaxed)) }
        stats.hintsStored = value(hintsStored)
        stats.hintsRefused = value(hintsRefused)
        stats.hintsRehomed = value(hintsRehomed)
        stats.hintsReplayed = value(hintsReplayed)
        stats.hintsExpired = value(hintsExpired)
        stats.clockAheadRefused = value(clockAheadRefused)
        stats.mapsRefused = value(mapsRefused)
        stats.readRepairsReceived = value(readRepairsReceived)
        stats.readRepairsApplied = value(readRepairsApplied)
        stats.antiEntropyRangesMarkedHintRefused = value(rangesMarkedForRefusedHints)
        stats.antiEntropyRangesMarkedHintExpired = value(rangesMarkedForExpiredHints)
        stats.antiEntropyMarkFailures = value(markFailures)
        stats.antiEntropyWritesReceived = value(antiEntropyWritesReceived)
        stats.antiEntropyRangesCompared = value(antiEntropyRangesCompared)
        stats.antiEntropyKeysSent = value(antiEntropyKeysSent)
        stats.antiEntropyKeysReceived = value(antiEntropyKeysReceived)
        stats.antiEntropyBytes = value(antiEntropyBytes)
        stats.antiEntropySessionFailures = value(antiEntropySessionFailures)
        stats.tombstonesPurged = value(tombstonesPurged)
        stats.streamKeysReceived = value(streamKeysReceived)
        stats.streamKeysResent = value(streamKeysResent)
        stats.streamBytes = value(streamBytes)
        stats.streamRetries = value(streamRetries)
        stats.handoffKeysDeleted = value(handoffKeysDeleted)
        stats.refusals = RPCRefusal.allCases.map {
            RefusalCount(reason: $0.rawValue, count: UInt64(clamping: refusedCount($0)))
        }
    }

    /// Counts one refusal (an `RPCServerStatistics` reports its own here, and the storage queue its
    /// `queue_full`).
    public func recordRefusal(_ reason: RPCRefusal) {
        refusals[reason]?.add(1, ordering: .relaxed)
    }

    /// How many times the node refused for `reason`.
    public func refusedCount(_ reason: RPCRefusal) -> Int {
        refusals[reason]?.load(ordering: .relaxed) ?? 0
    }

    /// Records the end of a whole anti-entropy pass of keyspace `id` without error, at `millis` since
    /// the Unix epoch (its gauge follows at the next `recordQueues`).
    package func recordFullPass(keyspace id: UInt32, atMillis millis: UInt64) {
        lastFullPasses.withLock { $0[id] = millis }
    }

    /// The oldest of the last whole passes of `keyspaces` (ms since the Unix epoch): when every one
    /// of them was last compared whole; 0 when one never was (or none is given).
    public func oldestFullPass<Keyspaces: Sequence<UInt32>>(of keyspaces: Keyspaces) -> UInt64 {
        let passes = lastFullPasses.withLock { $0 }
        return keyspaces.map { passes[$0] ?? 0 }.min() ?? 0
    }

    /// Sets the gauges: hints queued per target (targets absent from `hintQueueSizes` but seen before
    /// report 0), and for each keyspace its ranges due for anti-entropy and its last whole pass (a
    /// keyspace absent but seen before reports 0).
    public func recordQueues(_ queues: NodeQueues) {
        rangesDueGauges.record(queues.rangesDue.mapValues(Double.init))
        queueGauges.record(queues.hintQueueSizes.mapValues(Double.init))
        let parts = Dictionary(grouping: queues.keyspaces, by: \.value).mapValues { $0.map(\.key) }
        lastFullPassGauges.record(parts.mapValues { Double(oldestFullPass(of: $0)) / 1000 })
    }

    /// Sets the peer gauges: each watched peer's phi and whether it is trusted (not in `suspected`);
    /// peers no longer watched (removed from the map) report phi 0 and down. And the map's epoch.
    public func recordPeers(phi: [String: Double], suspected: Set<String>, epoch: UInt64) {
        epochGauge.record(Double(epoch))
        peerUpGauges.record(Dictionary(uniqueKeysWithValues: phi.keys.map { ($0, suspected.contains($0) ? 0 : 1) }))
        peerPhiGauges.record(phi)
    }

    /// Calls `recordPeers` with what `read` returns, now and then every `interval`, until cancelled.
    public func reportPeers(
        every interval: Duration,
        read: @Sendable () -> (phi: [String: Double], suspected: Set<String>, epoch: UInt64)
    ) async {
        await Self.repeating(every: interval) {
            let (phi, suspected, epoch) = read()
            recordPeers(phi: phi, suspected: suspected, epoch: epoch)
        }
    }

    /// Calls `recordQueues` with what `read` returns, now and then every `interval`, until the task is
    /// cancelled: so the gauges stay fresh when nobody pings the node. `read` must not block (both
    /// stores answer their queue sizes and marks from memory).
    public func reportQueues(every interval: Duration, read: @Sendable () -> NodeQueues) async {
        await Self.repeating(every: interval) { recordQueues(read()) }
    }

    /// Runs `body` now and then every `interval`, until the task is cancelled.
    private static func repeating(every interval: Duration, _ body: () -> Void) async {
        while !Task.isCancelled {
            body()
            try? await Task.sleep(for: interval)
        }
    }
}

/// What a node has queued, as `NodeStatistics.recordQueues` reports it.
public struct NodeQueues: Sendable, Equatable {
    /// Hints held per target (targets with none absent).
    public var hintQueueSizes: [String: Int]
    /// Ranges marked due for anti-entropy and not yet repaired, by keyspace label (`KeyspaceLabel`).
    public var rangesDue: [String: Int]
    /// The keyspaces of the node's map not dropped, by id, with their labels: whose last whole
    /// anti-entropy passes are reported.
    public var keyspaces: [UInt32: String]

    public init(hintQueueSizes: [String: Int], rangesDue: [String: Int], keyspaces: [UInt32: String]) {
        self.hintQueueSizes = hintQueueSizes
        self.rangesDue = rangesDue
        self.keyspaces = keyspaces
    }

    /// Ranges due in every keyspace.
    public var totalRangesDue: Int { rangesDue.values.reduce(0, &+) }
}

/// One gauge per value of a dimension (a hint target, a peer) besides `node`, each made the first
/// time its value is seen; one seen before and absent from a later reading reports 0.
final class GaugeFamily: Sendable {
    private let label: String
    private let dimension: String
    private let nodeID: String
    private let factory: any MetricsFactory
    private let gauges = Mutex<[String: Gauge]>([:])

    init(_ label: String, by dimension: String, nodeID: String, factory: any MetricsFactory) {
        self.label = label
        self.dimension = dimension
        self.nodeID = nodeID
        self.factory = factory
    }

    func record(_ values: [String: Double]) {
        let updates: [(Gauge, Double)] = gauges.withLock { gauges in
            for key in values.keys where gauges[key] == nil {
                gauges[key] = Gauge(
                    label: label, dimensions: [("node", nodeID), (dimension, key)], factory: factory)
            }
            return gauges.map { ($0.value, values[$0.key] ?? 0) }
        }
        for (gauge, value) in updates {
            gauge.record(value)
        }
    }
}

/// A count `Admin` stats reads: a `ReportedCounter`, or a `KeyspaceCounter`'s total.
package protocol CountedTotal: Sendable {
    func load(ordering: AtomicLoadOrdering) -> Int
}

/// One counter by keyspace: an atomic total for `Admin` stats, reported through one swift-metrics
/// `Counter` per keyspace label (`KeyspaceLabel`): the default keyspace's from the start (a scrape
/// shows it at 0), another's the first time it counts.
package final class KeyspaceCounter: CountedTotal {
    private let total = Atomic<Int>(0)
    private let label: String
    private let dimensions: [(String, String)]
    private let factory: any MetricsFactory
    private let counters: Mutex<[String: Counter]>

    init(label: String, dimensions: [(String, String)], factory: any MetricsFactory) {
        self.label = label
        self.dimensions = dimensions
        self.factory = factory
        let defaultCounter = Counter(
            label: label, dimensions: dimensions + [("keyspace", Keyspace.defaultName)], factory: factory)
        counters = Mutex([Keyspace.defaultName: defaultCounter])
    }

    /// Adds `amount` to keyspace `keyspace`'s count and the total (nothing when it is not positive).
    package func add(_ amount: Int, keyspace: String) {
        guard amount > 0 else { return }
        total.add(amount, ordering: .relaxed)
        let counter = counters.withLock { counters in
            if let counter = counters[keyspace] { return counter }
            let counter = Counter(label: label, dimensions: dimensions + [("keyspace", keyspace)], factory: factory)
            counters[keyspace] = counter
            return counter
        }
        counter.increment(by: amount)
    }

    /// Every keyspace's count.
    package func load(ordering: AtomicLoadOrdering) -> Int {
        total.load(ordering: .relaxed)
    }
}

/// One counter: an atomic for `Admin` stats, reported through a swift-metrics `Counter` as well.
///
/// Its `add(_:ordering:)` and `load(ordering:)` are spelled like `Atomic<Int>`'s, so code that counts
/// does not care that the count is also reported. The ordering is always `.relaxed` (an atomic's
/// ordering must be a constant, and a counter needs no other): the argument is only the spelling.
package final class ReportedCounter: CountedTotal {
    private let value = Atomic<Int>(0)
    private let counter: Counter

    init(label: String, dimensions: [(String, String)], factory: any MetricsFactory) {
        counter = Counter(label: label, dimensions: dimensions, factory: factory)
    }

    /// Adds `amount` (nothing when it is not positive: counters only grow).
    package func add(_ amount: Int, ordering: AtomicUpdateOrdering) {
        guard amount > 0 else { return }
        value.add(amount, ordering: .relaxed)
        counter.increment(by: amount)
    }

    package func load(ordering: AtomicLoadOrdering) -> Int {
        value.load(ordering: .relaxed)
    }
}
