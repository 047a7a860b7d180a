import ArgumentParser
import Foundation
import KVClient
import KVCore
import KVTLS
import KVWire

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show each node up or down, with its ping latency, and (admin certificate) its hint counters.",
        discussion: """
            The first line is the verdict: "healthy", or what is wrong in words and what it costs (nodes down \
            and the hints queued for them, the share of keys whose QUORUM or ALL fails, suspected nodes, \
            maps behind, a change in progress, hints being replayed, ranges due, certificates expiring). \
            With an admin certificate a second section shows each node's hints stored, replayed, expired, \
            refused and queued per target, the read repairs it received, and the token ranges due for \
            anti-entropy. Exit code 1 when any node is down.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Redraw every second until interrupted (Ctrl-C); not with --json.")
    var watch = false

    func validate() throws {
        if watch && global.json { throw ValidationError("--watch draws text; leave out --json") }
    }

    func run() async throws {
        try await reportingFailures(json: global.json) {
            if watch {
                try await global.withClient { client in
                    while !Task.isCancelled {
                        let reading = try await read(client)
                        // Home, clear: the whole screen is redrawn.
                        print("\u{1B}[H\u{1B}[2J\(ISO8601DateFormatter().string(from: Date()))  (Ctrl-C to stop)\n")
                        printText(reading)
                        fflush(nil)  // a pipe buffers: each frame must show whole, now
                        try await Task.sleep(for: .seconds(1))
                    }
                }
                return
            }
            let reading = try await global.withClient { try await read($0) }
            let statuses = reading.statuses
            if global.json {
                try printJSON(
                    StatusDocument(
                        ok: statuses.allSatisfy(\.isUp), verdict: reading.verdict.summary,
                        problems: reading.verdict.problems, counters: reading.withCounters,
                        nodes: statuses.map {
                            NodeDocument(
                                status: $0, ownership: reading.ownership[$0.nodeID],
                                state: reading.states[$0.nodeID].map { "\($0)" })
                        }))
            } else {
                printText(reading)
            }
            if !statuses.allSatisfy(\.isUp) {
                throw ExitCode(1)
            }
        }
    }

    /// What one look reads: every node's status, whether the counters were asked for, the verdict,
    /// and each node's share of the keys it replicates (from the cluster map's ring).
    private struct Reading {
        var statuses: [NodeStatus]
        var withCounters: Bool
        var verdict: StatusVerdict
        var ownership: [String: Double]
        /// Each node's place in the cluster map (joining, normal, leaving, down, removed).
        var states: [String: NodeState]
    }

    private func read(_ client: KVClient) async throws -> Reading {
        let statuses = try await client.status()
        let map = try? await client.clusterMap()
        let verdict = StatusVerdict(
            statuses: statuses, map: map, nowSeconds: UInt64(max(0, Date().timeIntervalSince1970)))
        // Each node's share of its own ring (a node is on one).
        let ownership = ((try? map?.ringsByName()) ?? []).reduce(into: [String: Double]()) { shares, ring in
            shares.merge(ring.ring.replicaShare()) { first, _ in first }
        }
        return Reading(
            statuses: statuses, withCounters: client.identity.role == .admin, verdict: verdict,
            ownership: ownership,
            states: Dictionary((map?.nodes ?? []).map { ($0.id, $0.state) }, uniquingKeysWith: { $1 }))
    }

    private func printText(_ reading: Reading) {
        let statuses = reading.statuses
        print(reading.verdict.summary)
        print("")
        printNodes(statuses, ownership: reading.ownership, states: reading.states)
        print("")
        if reading.withCounters {
            printCounters(statuses)
            print("")
            printAntiEntropy(statuses)
            print("")
            printHealth(statuses)
            print("")
            printMembership(statuses)
        } else {
            print("(admin certificate needed for counters)")
        }
    }

    /// One row per node; STATE is `up` (or its map state when not `normal`: `joining`, `leaving`…)
    /// or `DOWN`.
    private func printNodes(_ statuses: [NodeStatus], ownership: [String: Double], states: [String: NodeState]) {
        let widths = [11, 22, 8, 10, 7, 10, 8, 6]
        print(
            row(
                ["NODE", "ADDRESS", "STATE", "LATENCY", "OWNS", "~KEYS", "HINTS", "PROTO", "TRANSFER"], widths: widths))
        for status in statuses {
            let owns = ownership[status.nodeID].map { String(format: "%.0f %%", $0 * 100) } ?? "-"
            let proto = status.protocolVersion.map(String.init) ?? "-"
            guard status.isUp else {
                let fields = [
                    status.nodeID, status.address, "DOWN", "-", owns, "-", "-", proto, "-    (\(status.error ?? ""))",
                ]
                print(row(fields, widths: widths))
                continue
            }
            let latency = String(format: "%.2f ms", status.latency.map { $0 / .milliseconds(1) } ?? 0)
            let fields = [
                status.nodeID, status.address, states[status.nodeID].map { $0 == .normal ? "up" : "\($0)" } ?? "up",
                latency, owns, String(status.keys ?? 0),
                String(status.hintsQueued ?? 0), proto, status.transfer.map(StatusVerdict.transfer) ?? "-",
            ]
            print(row(fields, widths: widths))
        }
    }

    private func printCounters(_ statuses: [NodeStatus]) {
        let widths = [11, 10, 10, 10, 10, 10, 8]
        print(
            row(["HINTS", "STORED", "REPLAYED", "EXPIRED", "REFUSED", "REPAIRS", "AE-DUE", "QUEUED"], widths: widths))
        for status in statuses {
            guard status.isUp else {
                print(row([status.nodeID, "-    (down)"], widths: widths))
                continue
            }
            if let error = status.countersError {
                print(row([status.nodeID, "-    (counters unavailable: \(error))"], widths: widths))
                continue
            }
            func text(_ value: UInt64?) -> String { value.map(String.init) ?? "-" }
            let queued = (status.hintsQueuedPerTarget ?? [:]).sorted { $0.key < $1.key }
                .map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            let fields = [
                status.nodeID, text(status.hintsStored), text(status.hintsReplayed), text(status.hintsExpired),
                text(status.hintsRefused), text(status.readRepairsReceived), text(status.antiEntropyRangesDue),
                queued.isEmpty ? "-" : queued,
            ]
            print(row(fields, widths: widths))
        }
    }

    /// The "anti-entropy" section: ranges compared, records copied and tombstones purged since the
    /// node started, when its last whole pass ended without error, and the oldest time one of its
    /// ranges was last compared (`--json` has each range's).
    private func printAntiEntropy(_ statuses: [NodeStatus]) {
        let widths = [13, 10, 10, 10, 10, 21]
        print(
            row(
                ["ANTI-ENTROPY", "COMPARED", "SENT", "RECEIVED", "PURGED", "LAST-FULL-PASS", "OLDEST-RANGE"],
                widths: widths))
        for status in statuses where status.isUp && status.countersError == nil {
            func text(_ value: UInt64?) -> String { value.map(String.init) ?? "-" }
            func time(_ millis: UInt64?) -> String {
                guard let millis else { return "-" }
                guard millis > 0 else { return "never" }
                return ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
            }
            let fields = [
                status.nodeID, text(status.antiEntropyRangesCompared), text(status.antiEntropyKeysSent),
                text(status.antiEntropyKeysReceived), text(status.tombstonesPurged),
                time(status.antiEntropyLastFullPassMillis), time(status.antiEntropyOldestRangeComparedMillis),
            ]
            print(row(fields, widths: widths))
        }
    }

    /// The "health" section: the peers each node's failure detector suspects, and its phi for each.
    private func printHealth(_ statuses: [NodeStatus]) {
        let widths = [13, 12, 10, 9, 22, 20]
        print(row(["HEALTH", "CERT-EXPIRES", "DISK-USED", "DISK-%", "OLDEST-HINT", "SUSPECTS", "PHI"], widths: widths))
        for status in statuses where status.isUp && status.countersError == nil {
            let suspects = status.peersSuspected.map { $0.isEmpty ? "none" : $0.joined(separator: ",") } ?? "-"
            let phi = (status.peerPhi ?? [:]).sorted { $0.key < $1.key }
                .map { "\($0.key)=\(String(format: "%.1f", $0.value))" }.joined(separator: " ")
            let expires = status.certificateNotAfterSeconds.map {
                String(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval($0))).prefix(10))
            }
            let used = status.diskUsedBytes.map(Self.bytes) ?? "-"
            let percent = StatusVerdict.diskUsage(status).map { String(format: "%.0f %%", $0 * 100) } ?? "-"
            let oldest = (status.oldestHintAgeSeconds ?? [:]).sorted { $0.key < $1.key }
                .map { "\($0.key)=\(StatusVerdict.age($0.value))" }.joined(separator: " ")
            print(
                row(
                    [
                        status.nodeID, expires ?? "-", used, percent, oldest.isEmpty ? "-" : oldest, suspects,
                        phi.isEmpty ? "-" : phi,
                    ], widths: widths))
        }
    }

    /// 1.2 GB, 340 MB, 12 kB.
    static func bytes(_ value: UInt64) -> String {
        let units = ["B", "kB", "MB", "GB", "TB", "PB"]
        var amount = Double(value)
        var unit = 0
        while amount >= 1000 && unit < units.count - 1 {
            amount /= 1000
            unit += 1
        }
        return unit == 0 ? "\(value) B" : String(format: "%.1f %@", amount, units[unit])
    }

    private func printMembership(_ statuses: [NodeStatus]) {
        let widths = [13, 7, 10, 10, 10]
        print(row(["MEMBERSHIP", "EPOCH", "STREAMED", "RESENT", "DROPPED", "CHANGE"], widths: widths))
        for status in statuses where status.isUp && status.countersError == nil {
            print(
                row(
                    [
                        status.nodeID, status.clusterEpoch.map(String.init) ?? "-",
                        status.streamKeysReceived.map(String.init) ?? "-",
                        status.streamKeysResent.map(String.init) ?? "-",
                        status.handoffKeysDeleted.map(String.init) ?? "-", status.clusterChange ?? "-",
                    ], widths: widths))
        }
        for status in statuses {
            let transfers = (status.transfers ?? [:]).sorted { $0.key < $1.key }
            guard !transfers.isEmpty else { continue }
            print(
                "\(status.nodeID) \(status.transfer.map(StatusVerdict.transfer) ?? "receives \(transfers.count) ranges"):"
            )
            for (range, progress) in transfers where !progress.hasPrefix("done") {
                print("  \(range)  \(progress)")
            }
        }
    }

    /// Fields padded to `widths` and separated by one space; the fields past `widths` follow unpadded.
    private func row(_ fields: [String], widths: [Int]) -> String {
        fields.enumerated().map { index, field in
            index < widths.count && index < fields.count - 1
                ? field.padding(toLength: max(widths[index], field.count), withPad: " ", startingAt: 0) : field
        }.joined(separator: " ")
    }
}

private struct StatusDocument: Encodable {
    var ok: Bool
    /// `StatusVerdict`: "healthy", or the problems in words.
    var verdict: String
    var problems: [String]
    /// Whether the counters were asked for (an admin certificate); a node's counter fields are absent
    /// when they were not, when the node is down, or when it did not answer them (`countersError`).
    var counters: Bool
    var nodes: [NodeDocument]
}

/// One node in `kvctl status --json`: the SDK's `NodeStatus` (its `Encodable` names the fields, listed
/// in the README, "kvctl status") and its ping latency in milliseconds.
private struct NodeDocument: Encodable {
    var status: NodeStatus
    /// The share of the keys the node replicates (0...1; the shares of all nodes sum to N).
    var ownership: Double?
    /// Its place in the cluster map: joining, normal, leaving, down or removed.
    var state: String?

    enum CodingKeys: String, CodingKey {
        case latencyMillis, ownership, state
    }

    func encode(to encoder: any Encoder) throws {
        try status.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(status.latency.map { $0 / .milliseconds(1) }, forKey: .latencyMillis)
        try container.encodeIfPresent(ownership, forKey: .ownership)
        try container.encodeIfPresent(state, forKey: .state)
    }
}
