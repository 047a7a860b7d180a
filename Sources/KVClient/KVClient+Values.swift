import Foundation
public import KVCore
import KVRPC
import KVTLS
package import KVWire
import Metrics
import NIOCore
import NIOPosix
import Synchronization

/// A value read from the store, with the version that wrote it.
public struct KVValue: Sendable, Hashable {
    public var value: [UInt8]
    public var version: Version
    /// When the value expires (written with a time to live), milliseconds since 1970; nil: never.
    public var expiresAtMillis: UInt64?

    public init(value: [UInt8], version: Version, expiresAtMillis: UInt64? = nil) {
        self.value = value
        self.version = version
        self.expiresAtMillis = expiresAtMillis
    }
}

/// How one node answered a ping and, with an admin certificate, its counters (`Admin` stats).
public struct NodeStatus: Sendable, Hashable {
    /// The node's id in the cluster map (or its address when the map is not known).
    public var nodeID: String
    public var address: String
    public var isUp: Bool
    public var latency: Duration?
    public var keys: UInt64?
    /// Hints the node holds for other replicas.
    public var hintsQueued: UInt64?
    /// Why the node is down.
    public var error: String?
    /// The highest wire-protocol version the node speaks, from the client's handshake with it (nil
    /// when it is down and was never met).
    public var protocolVersion: UInt16? = nil

    // The counters below are nil unless the client has an admin certificate and the node answered
    // `Admin` stats; they count since the node started (the queue and the marks are durable).

    /// Hints the node stored for other replicas.
    public var hintsStored: UInt64? = nil
    /// Hints it handed over to their targets, acknowledged.
    public var hintsReplayed: UInt64? = nil
    /// Hints it dropped because they outlived the hint window.
    public var hintsExpired: UInt64? = nil
    /// Hints it refused because their target's queue was full.
    public var hintsRefused: UInt64? = nil
    /// Read-repair `Put`s it received.
    public var readRepairsReceived: UInt64? = nil
    /// Read-repair `Put`s that replaced an older version (or none).
    public var readRepairsApplied: UInt64? = nil
    /// Token ranges marked due for anti-entropy (a refused or expired hint), not yet repaired.
    public var antiEntropyRangesDue: UInt64? = nil
    /// Ranges anti-entropy compared without error with every co-replica.
    public var antiEntropyRangesCompared: UInt64? = nil
    /// Records anti-entropy copied from this node to co-replicas, and from co-replicas to it.
    public var antiEntropyKeysSent: UInt64? = nil
    public var antiEntropyKeysReceived: UInt64? = nil
    /// The oldest time a vnode range of the node was last compared with every co-replica (ms since the
    /// Unix epoch); 0 while one was never compared.
    public var antiEntropyOldestRangeComparedMillis: UInt64? = nil
    /// Per vnode range (`START:END`), when it was last compared with every co-replica; 0: never.
    public var antiEntropyRangeComparedMillis: [String: UInt64]? = nil
    /// Its failure detector's phi for each peer, and the peers it suspects (the node's view).
    public var peerPhi: [String: Double]? = nil
    public var peersSuspected: [String]? = nil
    /// The epoch of the node's cluster map and the membership change in progress there ("none").
    public var clusterEpoch: UInt64? = nil
    public var clusterChange: String? = nil
    /// The ranges the node receives (or last received) in a membership change, `START:END` → its
    /// progress (`done|receiving|retrying keys=K retries=R from=S[ error=…]`).
    public var transfers: [String: String]? = nil
    /// The whole of those ranges: how many arrived, the share of their records, the ETA at the rate
    /// seen so far, or why it does not move; nil when the node receives (and last received) none.
    public var transfer: TransferProgress? = nil
    /// Records received through range transfers, received again after a restart, and dropped after
    /// their range moved to other nodes, since the node started.
    public var streamKeysReceived: UInt64? = nil
    public var streamKeysResent: UInt64? = nil
    public var handoffKeysDeleted: UInt64? = nil
    /// Tombstones purged since the node started (confirmed on every replica, older than the grace).
    public var tombstonesPurged: UInt64? = nil
    /// When a whole anti-entropy pass last ended without error (ms since the Unix epoch); 0: never.
    public var antiEntropyLastFullPassMillis: UInt64? = nil
    /// Hints held per target node; targets with none are absent.
    public var hintsQueuedPerTarget: [String: UInt64]? = nil
    /// When the node's certificate expires, in seconds since the Unix epoch.
    public var certificateNotAfterSeconds: UInt64? = nil
    /// Its data folder's bytes on disk, and the bytes free on that file system (its last health
    /// reading, every 5 s).
    public var diskUsedBytes: UInt64? = nil
    public var diskFreeBytes: UInt64? = nil
    /// How long the oldest-versioned hint it holds for each target has waited, in seconds.
    public var oldestHintAgeSeconds: [String: Double]? = nil
    /// Why the counters are missing although they were asked for (the node is up: it answered the ping).
    public var countersError: String? = nil

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
        case diskUsedBytes, diskFreeBytes, oldestHintAgeSeconds, countersError
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
        transfers = Dictionary(
            stats.transfers.map { ("\($0.range.start):\($0.range.end)", $0.summary) }, uniquingKeysWith: { $1 })
        transfer = Self.transferProgress(stats)
        streamKeysReceived = stats.streamKeysReceived
        streamKeysResent = stats.streamKeysResent
        handoffKeysDeleted = stats.handoffKeysDeleted
        certificateNotAfterSeconds = stats.certificateNotAfter
        diskUsedBytes = stats.diskUsedBytes
        diskFreeBytes = stats.diskFreeBytes
        oldestHintAgeSeconds = Dictionary(
            stats.hintAges.map { ($0.target, Double($0.millis) / 1000) }, uniquingKeysWith: max)
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
