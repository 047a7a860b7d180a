import Foundation
package import KVCore
import KVRPC
import KVTLS
package import KVWire
import Metrics
import NIOCore
import NIOPosix
import Synchronization

/// A value read from the store, with the version that wrote it.
public struct KVValue: Sendable, Hashable {
    /// The value's bytes.
    public var value: [UInt8]
    /// The version the value was written with.
    public var version: KVVersion
    /// When the value expires (written with a time to live), milliseconds since 1970; nil: never.
    public var expiresAtMillis: UInt64?

    /// A value read, with its version and expiry.
    public init(value: [UInt8], version: KVVersion, expiresAtMillis: UInt64? = nil) {
        self.value = value
        self.version = version
        self.expiresAtMillis = expiresAtMillis
    }

    /// The value's bytes as `type`: no copy for `[UInt8]`, one copy for the other ``KVBytes`` types
    /// (a `String` decodes them as UTF-8).
    public func value<Bytes: KVBytes>(as type: Bytes.Type) -> Bytes {
        Bytes(kvBytes: value)
    }
}

/// How one node answered a ping and, with an admin certificate, its counters (`Admin` stats).
package struct NodeStatus: Sendable, Hashable {
    /// The node's id in the cluster map (or its address when the map is not known).
    package var nodeID: String
    package var address: String
    package var isUp: Bool
    package var latency: Duration?
    package var keys: UInt64?
    /// Hints the node holds for other replicas.
    package var hintsQueued: UInt64?
    /// Why the node is down.
    package var error: String?
    /// The highest wire-protocol version the node speaks, from the client's handshake with it (nil
    /// when it is down and was never met).
    package var protocolVersion: UInt16? = nil

    // The counters below are nil unless the client has an admin certificate and the node answered
    // `Admin` stats; they count since the node started (the queue and the marks are durable).

    /// Hints the node stored for other replicas.
    package var hintsStored: UInt64? = nil
    /// Hints it handed over to their targets, acknowledged.
    package var hintsReplayed: UInt64? = nil
    /// Hints it dropped because they outlived the hint window.
    package var hintsExpired: UInt64? = nil
    /// Hints it refused because their target's queue was full.
    package var hintsRefused: UInt64? = nil
    /// Read-repair `Put`s it received.
    package var readRepairsReceived: UInt64? = nil
    /// Read-repair `Put`s that replaced an older version (or none).
    package var readRepairsApplied: UInt64? = nil
    /// Token ranges marked due for anti-entropy (a refused or expired hint), not yet repaired.
    package var antiEntropyRangesDue: UInt64? = nil
    /// Ranges anti-entropy compared without error with every co-replica.
    package var antiEntropyRangesCompared: UInt64? = nil
    /// Records anti-entropy copied from this node to co-replicas, and from co-replicas to it.
    package var antiEntropyKeysSent: UInt64? = nil
    package var antiEntropyKeysReceived: UInt64? = nil
    /// The oldest time a vnode range of the node was last compared with every co-replica (ms since the
    /// Unix epoch); 0 while one was never compared.
    package var antiEntropyOldestRangeComparedMillis: UInt64? = nil
    /// Per vnode range (`START:END`), when it was last compared with every co-replica; 0: never.
    package var antiEntropyRangeComparedMillis: [String: UInt64]? = nil
    /// Its failure detector's phi for each peer, and the peers it suspects (the node's view).
    package var peerPhi: [String: Double]? = nil
    package var peersSuspected: [String]? = nil
    /// The epoch of the node's cluster map and the membership change in progress there ("none").
    package var clusterEpoch: UInt64? = nil
    package var clusterChange: String? = nil
    /// The ranges the node receives (or last received) in a membership change, `START:END` → its
    /// progress (`done|receiving|retrying keys=K retries=R from=S[ error=…]`).
    package var transfers: [String: String]? = nil
    /// The whole of those ranges: how many arrived, the share of their records, the ETA at the rate
    /// seen so far, or why it does not move; nil when the node receives (and last received) none.
    package var transfer: TransferProgress? = nil
    /// Records received through range transfers, received again after a restart, and dropped after
    /// their range moved to other nodes, since the node started.
    package var streamKeysReceived: UInt64? = nil
    package var streamKeysResent: UInt64? = nil
    package var handoffKeysDeleted: UInt64? = nil
    /// Tombstones purged since the node started (confirmed on every replica, older than the grace).
    package var tombstonesPurged: UInt64? = nil
    /// When a whole anti-entropy pass last ended without error (ms since the Unix epoch); 0: never.
    package var antiEntropyLastFullPassMillis: UInt64? = nil
    /// Hints held per target node; targets with none are absent.
    package var hintsQueuedPerTarget: [String: UInt64]? = nil
    /// When the node's certificate expires, in seconds since the Unix epoch.
    package var certificateNotAfterSeconds: UInt64? = nil
    /// Its data folder's bytes on disk, and the bytes free on that file system (its last health
    /// reading, every 5 s).
    package var diskUsedBytes: UInt64? = nil
    package var diskFreeBytes: UInt64? = nil
    /// The bytes it keeps free (`--disk-reserve-bytes`; 0: none): below it, it refuses writes (a node
    /// built before it does not say).
    package var diskReserveBytes: UInt64? = nil
    /// Since a write or an fsync of its storage failed, the refusal its writes get until it restarts
    /// (a node built before it, or one whose storage did not fail, says nothing).
    package var storageFailure: String? = nil
    /// How long the oldest-versioned hint it holds for each target has waited, in seconds.
    package var oldestHintAgeSeconds: [String: Double]? = nil
    /// Why the counters are missing although they were asked for (the node is up: it answered the ping).
    package var countersError: String? = nil
    /// The keys it holds in each keyspace it stores, by keyspace id (a node built before it sends none).
    package var keysByKeyspace: [UInt32: UInt64]? = nil

    /// A node's status with only the ping's part known.
    package init(
        nodeID: String, address: String, isUp: Bool, latency: Duration? = nil, keys: UInt64? = nil,
        hintsQueued: UInt64? = nil, error: String? = nil
    ) {
        self.nodeID = nodeID
        self.address = address
        self.isUp = isUp
        self.latency = latency
        self.keys = keys
        self.hintsQueued = hintsQueued
        self.error = error
    }
}

/// `kvctl status --json`'s fields (listed in the README): the properties by these names, absent
/// when nil; `latency` is left to the caller (kvctl writes `latencyMillis`).
extension NodeStatus: Encodable {
    enum CodingKeys: String, CodingKey {
        case nodeID = "node", address, isUp = "up", keys, hintsQueued, error, protocolVersion, hintsStored
        case hintsReplayed
        case hintsExpired, hintsRefused, readRepairsReceived, readRepairsApplied, antiEntropyRangesDue
        case antiEntropyRangesCompared, antiEntropyKeysSent, antiEntropyKeysReceived
        case antiEntropyOldestRangeComparedMillis, antiEntropyRangeComparedMillis, peerPhi, peersSuspected
        case clusterEpoch, clusterChange, transfers, transfer, streamKeysReceived, streamKeysResent, handoffKeysDeleted
        case tombstonesPurged, antiEntropyLastFullPassMillis, hintsQueuedPerTarget, certificateNotAfterSeconds
        case diskUsedBytes, diskFreeBytes, diskReserveBytes, storageFailure, oldestHintAgeSeconds, countersError
    }
}

extension NodeStatus {
    /// Fills the counters from the node's `Admin` stats.
    package mutating func addCounters(_ stats: NodeStats) {
        hintsStored = stats.hintsStored
        hintsReplayed = stats.hintsReplayed
        hintsExpired = stats.hintsExpired
        hintsRefused = stats.hintsRefused
        readRepairsReceived = stats.readRepairsReceived
        readRepairsApplied = stats.readRepairsApplied
        antiEntropyRangesDue = stats.antiEntropyRangesDue
        antiEntropyRangesCompared = stats.antiEntropyRangesCompared
        antiEntropyKeysSent = stats.antiEntropyKeysSent
        antiEntropyKeysReceived = stats.antiEntropyKeysReceived
        antiEntropyLastFullPassMillis = stats.antiEntropyLastFullPassMillis
        tombstonesPurged = stats.tombstonesPurged
        antiEntropyOldestRangeComparedMillis = stats.antiEntropyOldestRangeComparedMillis
        hintsQueuedPerTarget = Dictionary(stats.hintQueues.map { ($0.target, $0.hints) }, uniquingKeysWith: max)
        antiEntropyRangeComparedMillis = Dictionary(
            stats.rangesCompared.map { ("\($0.range.start):\($0.range.end)", $0.millis) }, uniquingKeysWith: max)
        peerPhi = Dictionary(stats.peers.map { ($0.node, $0.phi) }, uniquingKeysWith: max)
        peersSuspected = stats.peersSuspected
        clusterEpoch = stats.clusterEpoch
        clusterChange = stats.clusterChange
        // A node keeps its last transfer's figures until the next change begins: they are shown only
        // while its map has a change in progress ("none" once it ended), not as if it were still going.
        let changing = stats.clusterChange != "none"
        transfers = Dictionary(
            (changing ? stats.transfers : []).map { ("\($0.range.start):\($0.range.end)", $0.summary) },
            uniquingKeysWith: { $1 })
        transfer = changing ? Self.transferProgress(stats) : nil
        streamKeysReceived = stats.streamKeysReceived
        streamKeysResent = stats.streamKeysResent
        handoffKeysDeleted = stats.handoffKeysDeleted
        certificateNotAfterSeconds = stats.certificateNotAfter
        diskUsedBytes = stats.diskUsedBytes
        diskFreeBytes = stats.diskFreeBytes
        diskReserveBytes = stats.diskReserveBytes
        storageFailure = stats.storageFailure.flatMap { $0.isEmpty ? nil : $0 }
        oldestHintAgeSeconds = Dictionary(
            stats.hintAges.map { ($0.target, Double($0.millis) / 1000) }, uniquingKeysWith: max)
        keysByKeyspace = stats.keyspaceKeys.map { Dictionary($0.map { ($0.keyspace, $0.keys) }, uniquingKeysWith: max) }
    }

    /// Each keyspace part's keys (by id), estimated from the nodes' counts (`keysByKeyspace`): every
    /// replica of a part holds a copy, so the sum over the nodes that counted it, divided by its N.
    /// Absent for a part no node counted (every node down, or built before the count); low while
    /// replicas are down or behind. The nodes' numbers are bounded (the sums saturate).
    package static func keyspaceKeys(_ statuses: [NodeStatus], map: ClusterMap) -> [UInt32: UInt64] {
        var keys: [UInt32: UInt64] = [:]
        for part in map.liveKeyspaces {
            let counts = statuses.compactMap { $0.keysByKeyspace?[part.id] }
            guard !counts.isEmpty else { continue }
            keys[part.id] = counts.reduce(0, saturatingSum) / UInt64(max(1, part.placement.replicationFactor))
        }
        return keys
    }

    /// `a + b`, or `UInt64.max` past it.
    package static func saturatingSum(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : sum
    }

    /// The transfer in `stats`, its figures bounded (a node's numbers): shares to a million
    /// millionths, the elapsed time to `transferElapsedMax`.
    static func transferProgress(_ stats: NodeStats) -> TransferProgress? {
        guard !stats.transfers.isEmpty else { return nil }
        let failing = stats.transfers.first { $0.state == .retrying }
        let elapsedMillis = min(stats.transferElapsedMillis, transferElapsedMax.wholeMillisecondsClamped)
        return TransferProgress(
            rangesDone: stats.transfers.count { $0.state == .done }, rangesTotal: stats.transfers.count,
            keys: stats.transfers.reduce(0) { $0 &+ $1.keys },
            share: Double(min(stats.transferShareMillionths, 1_000_000)) / 1e6,
            shareAtStart: Double(min(stats.transferShareAtStartMillionths, 1_000_000)) / 1e6,
            elapsed: .milliseconds(Int64(elapsedMillis)),
            failure: failing.map {
                "\($0.range.start):\($0.range.end) from \($0.source.isEmpty ? "-" : $0.source): \($0.lastError)"
            })
    }

    /// The longest elapsed time taken from a node (a year).
    static let transferElapsedMax: Duration = .seconds(365 * 86_400)
}
