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
    /// The `Admin` stats: the node's counters, queues, certificate, peers and transfers.
    func adminStatistics() -> Message {
        let uptime = ContinuousClock.now - startedAt
        let queues = recordQueues()
        return .adminResponse(
            AdminResponse(
                results: [
                    Pair(name: "node", value: nodeID),
                    Pair(name: "keys", value: "\(store.approximateKeyCount())"),
                    Pair(name: "uptime_seconds", value: "\(uptime.components.seconds)"),
                ]
                    + statistics.snapshot.map { Pair(name: $0.name, value: "\($0.value)") }
                    + [
                        Pair(name: "anti_entropy_ranges_due", value: "\(queues.rangesDue)"),
                        Pair(name: "hints_bytes", value: "\(hints?.hintBytesHeld() ?? 0)"),
                    ]
                    + ((certificates?.certificateNotAfterSeconds ?? certificateNotAfterSeconds).map {
                        [Pair(name: "certificate_not_after", value: "\($0)")]
                    } ?? [])
                    + queues.hintQueueSizes.sorted { $0.key < $1.key }.map {
                        Pair(name: "hints_queued.\($0.key)", value: "\($0.value)")
                    }
                    + rangeComparisonPairs()
                    + peerHealthPairs()
                    + membershipPairs()))
    }

    /// The map's epoch and change in progress, and each range this node is receiving:
    /// `stream_range.START:END` = `TransferBoard.RangeProgress.summary`.
    func membershipPairs() -> [Pair] {
        let map = membership.current
        var pairs = [
            Pair(name: "cluster_epoch", value: "\(map.epoch)"),
            Pair(name: "cluster_change", value: map.changeSummary),
        ]
        for range in transfers?.current ?? [] {
            pairs.append(Pair(name: "stream_range.\(range.start):\(range.end)", value: range.summary))
        }
        return pairs
    }

    /// Each peer's phi (`peer_phi.ID`) and the peers the failure detector suspects (`peers_suspected`,
    /// comma-separated, empty when none).
    func peerHealthPairs() -> [Pair] {
        guard let health else { return [] }
        let phis = health.table.phi().sorted { $0.key < $1.key }.map {
            Pair(name: "peer_phi.\($0.key)", value: Self.format(phi: $0.value))
        }
        return phis + [Pair(name: "peers_suspected", value: health.table.suspected().sorted().joined(separator: ","))]
    }

    /// Phi with one decimal (as `Admin` stats carries it).
    static func format(phi: Double) -> String {
        let tenths = (min(phi, 1e9) * 10).rounded()
        return "\(Int(tenths) / 10).\(Int(tenths) % 10)"
    }

    /// When each vnode range was last compared with every co-replica (0: never), and the oldest of
    /// those times (0 while a range was never compared): `Admin` stats' anti-entropy age.
    func rangeComparisonPairs() -> [Pair] {
        guard let antiEntropy else { return [] }
        let comparisons = antiEntropy.rangeComparisons()
        let oldest = comparisons.contains { $0.millis == nil } ? 0 : comparisons.compactMap(\.millis).min() ?? 0
        return [Pair(name: "anti_entropy_oldest_range_compared_millis", value: "\(oldest)")]
            + comparisons.map {
                Pair(name: "anti_entropy_range_compared.\($0.range.start):\($0.range.end)", value: "\($0.millis ?? 0)")
            }
    }

    /// Hints queued per target and ranges due for anti-entropy (both from memory), also set as gauges.
    func recordQueues() -> (hintQueueSizes: [String: Int], rangesDue: Int) {
        let sizes = hints?.hintQueueSizes() ?? [:]
        let due = repairMarker?.rangesDueCount ?? 0
        statistics.recordQueues(hintQueueSizes: sizes, rangesDue: due)
        return (sizes, due)
    }

    /// `Admin` repair: one anti-entropy pass now, over every vnode range this node replicates, or those
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
        let report = await antiEntropy.pass(within: range)
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
