import ArgumentParser
import Foundation
import KVClient
import KVCore
import KVWire

/// `kvctl repair`: runs anti-entropy now on one node, or on every node one after the other.
struct Repair: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare replicas and copy what differs (anti-entropy), now (admin certificate).",
        discussion: """
            Each node compares every vnode range it replicates (or those overlapping --range) with each \
            co-replica through Merkle trees, and copies the newest version of every differing key each way. \
            Without --node every node runs a pass, one after the other. Progress goes to stderr, the summary \
            to stdout. Exit code 1 when a node is down or one of its comparisons failed (named on stderr).
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "Repair on this node only (default: every node, one after the other).")
    var node: String?

    @Option(help: "Only the vnode ranges overlapping START:END (decimal tokens, start exclusive).")
    var range: String?

    @Option(name: .customLong("repair-timeout"), help: "Seconds one node's pass may take (default 3600).")
    var repairTimeout: Double = 3600

    func validate() throws {
        if let range, Self.parse(range) == nil {
            throw ValidationError("--range must be START:END, two decimal tokens (0...18446744073709551615)")
        }
        guard repairTimeout > 0, repairTimeout <= 86_400 else {
            throw ValidationError("--repair-timeout must be between 0 and 86400 seconds")
        }
    }

    /// Runs `body`, printing "ID: repairing, N s" and what `progress` says (the ranges done so far)
    /// on stderr every second until it returns.
    private func withProgress<T: Sendable>(
        _ id: String, progress: @escaping @Sendable () async -> String?,
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                let started = ContinuousClock.now
                while true {
                    try await Task.sleep(for: .seconds(1))
                    let seconds = Int((ContinuousClock.now - started) / .seconds(1))
                    printError("\(id): repairing, \(seconds) s\(await progress().map { ", \($0)" } ?? "")")
                }
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let result { return result }
            }
            preconditionFailure("the repair call returns or throws")
        }
    }

    static func parse(_ text: String) -> TokenRangeSpan? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let start = UInt64(parts[0]), let end = UInt64(parts[1]) else { return nil }
        return TokenRangeSpan(start: start, end: end)
    }

    func run() async throws {
        try await reportingFailures(json: global.json) {
            let span = range.flatMap(Self.parse)
            let timeout = Duration.milliseconds(Int(repairTimeout * 1000))
            let results: [NodeRepairDocument] = try await global.withClient { client in
                var nodes: [String] = []
                if let node {
                    nodes = [node]
                } else {
                    // Every node holding ranges, of every ring: each repairs all its keyspaces.
                    nodes = try await client.latestClusterMap().nodes.filter(\.state.ownsRanges).map(\.id)
                }
                var results: [NodeRepairDocument] = []
                for (index, id) in nodes.enumerated() {
                    printError("\(id): repairing (\(index + 1) of \(nodes.count))")
                    do {
                        // Progress: the node's ranges-compared counter, from its value now.
                        // Over every keyspace, each on its ring, as the node's repair goes.
                        let map = try await client.latestClusterMap()
                        let total = map.liveKeyspaces.reduce(0) { total, keyspace in
                            let ranges = (try? map.ring(of: keyspace))?.vnodeRanges(replicatedBy: id) ?? []
                            return total + ranges.count { range in span.map { $0.overlaps(range) } ?? true }
                        }
                        let compared: @Sendable () async -> Int? = {
                            guard let statistics = try? await client.nodeStatistics(node: id) else { return nil }
                            return Int(clamping: statistics.antiEntropyRangesCompared)
                        }
                        let before = await compared()
                        let progress: @Sendable () async -> String? = {
                            guard let before, let now = await compared() else { return nil }
                            return "\(min(now - before, total)) of \(total) ranges compared"
                        }
                        let summary = try await withProgress(id, progress: progress) {
                            try await client.repair(node: id, range: span, timeout: timeout)
                        }
                        let document = NodeRepairDocument(summary)
                        printError("\(id): \(document.line)")
                        results.append(document)
                    } catch {
                        printError("\(id): failed: \(error)")
                        results.append(NodeRepairDocument(node: id, error: "\(error)"))
                    }
                }
                return results
            }
            let document = RepairDocument(nodes: results)
            if global.json {
                try printJSON(document)
            } else {
                for result in results { print("\(result.node): \(result.line)") }
                print(
                    "total: \(document.rangesCompared) ranges compared, \(document.keysSent) keys sent, "
                        + "\(document.keysReceived) keys received, \(document.bytes) bytes")
            }
            let failed = results.filter { !$0.ok }
            if !failed.isEmpty {
                // Not a CommandFailure: with --json that would print a second document.
                printError(
                    "kvctl: repair failed on "
                        + failed.map { "\($0.node) (\($0.error ?? ""))" }.joined(separator: ", "))
                throw ExitCode(1)
            }
        }
    }
}

/// `kvctl repair --json`: totals over the nodes, and each node's pass.
private struct RepairDocument: Encodable {
    var ok: Bool
    var rangesCompared: Int
    var rangesResumed: Int
    var keysSent: Int
    var keysReceived: Int
    var bytes: Int
    var tombstonesPurged: Int
    var errors: Int
    var nodes: [NodeRepairDocument]

    init(nodes: [NodeRepairDocument]) {
        self.nodes = nodes
        ok = nodes.allSatisfy(\.ok)
        rangesCompared = nodes.reduce(0) { $0 + $1.rangesCompared }
        rangesResumed = nodes.reduce(0) { $0 + $1.rangesResumed }
        keysSent = nodes.reduce(0) { $0 + $1.keysSent }
        keysReceived = nodes.reduce(0) { $0 + $1.keysReceived }
        bytes = nodes.reduce(0) { $0 + $1.bytes }
        tombstonesPurged = nodes.reduce(0) { $0 + $1.tombstonesPurged }
        errors = nodes.reduce(0) { $0 + $1.errors }
    }
}

/// One node's pass in `kvctl repair --json`. `errors` counts failed sessions; `error` says why the node
/// failed (down, refused, or the first failed session).
private struct NodeRepairDocument: Encodable {
    var node: String
    var ok: Bool
    var rangesCompared = 0
    var rangesResumed = 0
    var sessions = 0
    var queries = 0
    var keysSent = 0
    var keysReceived = 0
    var bytes = 0
    var tombstonesPurged = 0
    var errors = 0
    var durationMillis = 0
    var error: String?

    init(_ summary: RepairSummary) {
        node = summary.nodeID
        ok = summary.errors == 0
        rangesCompared = summary.rangesCompared
        rangesResumed = summary.rangesResumed
        sessions = summary.sessions
        queries = summary.queries
        keysSent = summary.keysSent
        keysReceived = summary.keysReceived
        bytes = summary.bytes
        tombstonesPurged = summary.tombstonesPurged
        errors = summary.errors
        // The node's number: clamped, never trapping.
        durationMillis = Int(clamping: summary.duration.wholeMillisecondsClamped)
        error = summary.firstError.map { "\(summary.errors) comparison(s) failed, first: \($0)" }
    }

    init(node: String, error: String) {
        self.node = node
        self.ok = false
        self.error = error
    }

    var line: String {
        if !ok && sessions == 0 && rangesCompared == 0 { return "failed: \(error ?? "")" }
        var text =
            "\(rangesCompared) ranges compared (\(sessions) sessions, \(queries) queries), \(keysSent) keys sent, "
            + "\(keysReceived) keys received, \(bytes) bytes in \(durationMillis) ms"
        if tombstonesPurged > 0 { text += ", \(tombstonesPurged) tombstones purged" }
        if rangesResumed > 0 { text += "; \(rangesResumed) ranges already done by the pass a crash cut short" }
        if let error { text += "; \(error)" }
        return text
    }
}
