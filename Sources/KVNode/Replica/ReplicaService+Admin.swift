import Foundation
import KVCluster
import KVCore
import KVRPC
import KVStorage
import KVTLS
import KVWire
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The `Admin` requests a replica serves: its statistics and a repair of its ranges.
extension ReplicaService {
    /// The `Admin` stats (`NodeStats`): the node's counters, queues, certificate, peers and transfers.
    func adminStatistics() -> Message {
        let queues = recordQueues()
        var stats = NodeStats(node: nodeID)
        let byKeyspace = keyCountByKeyspace()
        stats.keys = byKeyspace.values.reduce(0, &+)
        stats.keyspaceKeys = byKeyspace.sorted { $0.key < $1.key }.prefix(Limits.keyspaceIDsMax).map {
            KeyspaceKeys(keyspace: $0.key, keys: $0.value)
        }
        stats.diskReserveBytes = diskReserveBytes
        stats.uptimeSeconds = UInt64(clamping: (ContinuousClock.now - startedAt).components.seconds)
        statistics.fill(&stats)
        stats.antiEntropyRangesDue = UInt64(clamping: queues.totalRangesDue)
        stats.antiEntropyLastFullPassMillis = statistics.oldestFullPass(of: queues.keyspaces.keys)
        stats.hintsBytes = UInt64(clamping: hints?.hintBytesHeld() ?? 0)
        stats.hintQueues = queues.hintQueueSizes.sorted { $0.key < $1.key }.map {
            HintQueue(target: $0.key, hints: UInt64(clamping: $0.value))
        }
        stats.certificateNotAfter = certificates?.certificateNotAfterSeconds ?? certificateNotAfterSeconds
        if let health = statistics.lastHealth.withLock({ $0 }) {
            stats.diskUsedBytes = health.diskUsedBytes
            stats.diskFreeBytes = health.diskFreeBytes
            stats.storageFailure = (health.storageFailure ?? "").truncatedUTF8(bytesMax: Limits.errorMessageBytesMax)
            stats.hintAges = health.hintOldestAgeSeconds.sorted { $0.key < $1.key }.prefix(Limits.nodesMax).map {
                HintAge(target: $0.key, millis: UInt64(max(0, min($0.value * 1000, 1e15))))
            }
        }
        fillRangeComparisons(&stats, keyspaces: queues.keyspaces.keys)
        fillPeerHealth(&stats)
        fillMembership(&stats)
        return .nodeStats(stats)
    }

    /// The map's epoch and change in progress, each range this node is receiving, and how fast.
    func fillMembership(_ stats: inout NodeStats) {
        let map = membership.current
        stats.clusterEpoch = map.epoch
        stats.clusterChange = map.changeSummary
        stats.transfers = (transfers?.current ?? []).map { range in
            RangeTransferStatus(
                range: TokenRange(start: range.start, end: range.end),
                state: range.done ? .done : (range.lastError == nil ? .receiving : .retrying),
                keys: UInt64(clamping: range.keys), retries: UInt64(clamping: range.retries),
                source: range.source ?? "", lastError: String((range.lastError ?? "").prefix(200)))
        }
        if let rate = transfers?.rate {
            stats.transferShareMillionths = UInt64((rate.share * 1e6).rounded())
            stats.transferShareAtStartMillionths = UInt64((rate.shareAtStart * 1e6).rounded())
            stats.transferElapsedMillis = rate.elapsed.wholeMillisecondsClamped
        }
    }

    /// Each peer's phi (in tenths) and whether the failure detector suspects it.
    func fillPeerHealth(_ stats: inout NodeStats) {
        guard let health else { return }
        let suspected = health.table.suspected()
        stats.peers = health.table.phi().sorted { $0.key < $1.key }.map {
            PeerView(node: $0.key, phi: $0.value, suspected: suspected.contains($0.key))
        }
    }

    /// When each vnode range was last compared with every co-replica (0: never), in every keyspace of
    /// `keyspaces` (a range several keyspaces replicate: the oldest of their times), and the oldest
    /// of those times (0 while a range, or a keyspace, was never compared): `Admin` stats'
    /// anti-entropy age.
    func fillRangeComparisons(_ stats: inout NodeStats, keyspaces: some Collection<UInt32>) {
        guard let antiEntropy else { return }
        let (comparisons, complete) =
            antiEntropies?.rangeComparisons(of: keyspaces) ?? (antiEntropy.rangeComparisons(), true)
        stats.antiEntropyOldestRangeComparedMillis =
            !complete || comparisons.contains { $0.millis == nil } ? 0 : comparisons.compactMap(\.millis).min() ?? 0
        stats.rangesCompared = comparisons.prefix(Limits.listCountMax).map {
            RangeCompared(range: TokenRange(start: $0.range.start, end: $0.range.end), millis: $0.millis ?? 0)
        }
    }

    /// The keys the node holds in each keyspace, by id (RocksDB's estimates): for `Admin` stats. A
    /// node without keyspaces counts its one store.
    func keyCountByKeyspace() -> [UInt32: UInt64] {
        keyspaces?.root.everyKeyspace { $0.approximateKeyCount() } ?? [Keyspace.defaultID: store.approximateKeyCount()]
    }

    /// The keys the node holds, in every keyspace: for pings.
    func keyCount() -> UInt64 {
        keyCountByKeyspace().values.reduce(0, &+)
    }

    /// Hints queued per target, and each keyspace's ranges due for anti-entropy (both from memory).
    func queues() -> NodeQueues {
        let map = membership.current
        let rangesDue =
            keyspaces.map { KeyspaceLabel.byLabel($0.root.everyKeyspace { $0.rangesDue().count }, in: map) }
            ?? [Keyspace.defaultName: repairMarker?.rangesDueCount ?? 0]
        return NodeQueues(
            hintQueueSizes: hints?.hintQueueSizes() ?? [:], rangesDue: rangesDue,
            keyspaces: KeyspaceLabel.live(in: map))
    }

    /// `queues()`, also set as gauges with the keyspaces' last whole passes.
    func recordQueues() -> NodeQueues {
        let queues = queues()
        statistics.recordQueues(queues)
        return queues
    }

    /// `Admin` repair: one anti-entropy pass now, in every keyspace, over every vnode range this node
    /// replicates, or those
    /// overlapping the argument `range` (`START:END`, decimal tokens, start exclusive). Answers the
    /// pass's summary (`AntiEntropyReport.pairs`).
    func repair(_ arguments: [Pair]) async throws -> Message {
        guard let antiEntropy else {
            throw RPCError.remote(.invalidRequest, message: "anti-entropy is not running on this node")
        }
        var range: TokenRangeSpan?
        for argument in arguments {
            switch argument.name {
            case "range":
                guard let parsed = Self.parseRange(argument.value) else {
                    throw RPCError.remote(
                        .invalidRequest, message: "range '\(argument.value)' is not START:END (decimal tokens)")
                }
                range = parsed
            default:
                throw RPCError.remote(.invalidRequest, message: "repair takes no argument '\(argument.name)'")
            }
        }
        let report: AntiEntropyReport
        if let antiEntropies {
            report = await antiEntropies.pass(within: range)
        } else {
            report = await antiEntropy.pass(within: range)
        }
        return .adminResponse(
            AdminResponse(
                results: [Pair(name: "node", value: nodeID)] + report.pairs.map { Pair(name: $0.name, value: $0.value) }
            ))
    }

    /// `START:END`, two decimal `u64` tokens.
    static func parseRange(_ text: String) -> TokenRangeSpan? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let start = UInt64(parts[0]), let end = UInt64(parts[1]) else { return nil }
        return TokenRangeSpan(start: start, end: end)
    }
}
