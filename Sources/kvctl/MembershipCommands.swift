import ArgumentParser
import Foundation
import KVClient
import KVCore
import KVWire

extension ClusterCommand {
    struct SetReplicationFactor: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-rf",
            abstract: "Change N: nodes that become replicas receive their ranges, then reads use the new N.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var wait: ChangeWaitOptions

        @Argument(help: "The new replication factor.") var replicationFactor: Int

        func run() async throws {
            try await runChange(.setReplicationFactor(replicationFactor), global: global, wait: wait)
        }
    }

    struct SetPlacement: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-placement",
            abstract:
                "Change where replicas go: nodes that become replicas receive their ranges, then reads use the rule.",
            discussion: """
                RULE is simple:N (the first N nodes clockwise), zones:ZONE=COUNT,... (COUNT replicas in \
                each zone named, as Cassandra's NetworkTopologyStrategy) or spread:N/M (N replicas, at \
                most M in one zone while there are zones enough). Nodes get their zone at join (--zone) \
                or in the cluster file.
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var wait: ChangeWaitOptions

        @Argument(help: "The new rule: simple:N, zones:ZONE=COUNT,... or spread:N/M.") var rule: String

        func run() async throws {
            guard let placement = Placement(parsing: rule) else {
                throw ValidationError("'\(rule)' is not simple:N, zones:ZONE=COUNT,... or spread:N/M")
            }
            try await runChange(.setPlacement(placement), global: global, wait: wait)
        }
    }
}

/// `kvctl join`: a new node takes its share of the ranges.
struct JoinCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join",
        abstract: "Add a running node to the cluster; it receives its ranges, then owns them.",
        discussion: """
            Start the node first (kvd with the cluster file of the existing nodes and an empty data \
            folder): it waits until it is added. Its tokens are placed to keep its ring (--ring) \
            balanced; only the keyspace parts on that ring move ranges to it.
            """
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var wait: ChangeWaitOptions

    @Option(help: "The new node's id (its certificate's name).") var node: String
    @Option(help: "The HOST:PORT it listens on.") var address: String
    @Option(help: "Its number of ring tokens (default 16).") var tokens = TokenAllocator.tokensPerNodeDefault
    @Option(help: "Its zone (datacenter or rack), for placements over zones.") var zone = ""
    @Option(help: "Its ring: 'main' (default) or a ring's name; each ring is balanced on its own.") var ring =
        Keyspace.mainRingName

    func validate() throws {
        _ = try parseRing(ring, option: "--ring")
    }

    func run() async throws {
        try await reportingFailures(json: global.json) {
            try await global.withClient { client in try await client.probe(node: node, at: address) }
        }
        try await runChange(
            .join(
                node: node, address: address, tokensPerNode: tokens, zone: zone,
                ring: try parseRing(ring, option: "--ring")),
            global: global, wait: wait)
    }
}

/// `kvctl leave`: decommission.
struct LeaveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leave",
        abstract: "Decommission a node: the others receive its ranges, then it is removed (stop it afterwards).")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var wait: ChangeWaitOptions

    @Argument(help: "The node's id.") var node: String

    func run() async throws {
        try await runChange(.leave(node: node), global: global, wait: wait)
    }
}

/// `kvctl replace`: a new node takes over a (dead) node's tokens.
struct ReplaceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replace",
        abstract: "Replace a node (usually dead) by a new one with its tokens; the others send it those ranges.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var wait: ChangeWaitOptions

    @Argument(help: "The node to replace.") var node: String
    @Option(name: .customLong("with"), help: "The new node's id.") var replacement: String
    @Option(help: "The HOST:PORT the new node listens on.") var address: String

    func run() async throws {
        try await reportingFailures(json: global.json) {
            try await global.withClient { client in try await client.probe(node: replacement, at: address) }
        }
        try await runChange(.replace(node: node, with: replacement, address: address), global: global, wait: wait)
    }
}

/// Whether and how long a membership command follows the change it started.
struct ChangeWaitOptions: ParsableArguments {
    @Flag(
        name: .customLong("no-wait"), help: "Return once the change is decided, without waiting for the ranges to move."
    )
    var noWait = false

    @Option(name: .customLong("wait-timeout"), help: "Seconds to wait for the ranges to move (default 3600).")
    var waitTimeout = 3600
}

/// Makes `change`, then (unless `--no-wait`) reports the transfers every second on stderr until the
/// change is done.
func runChange(_ change: ClusterChange, global: GlobalOptions, wait: ChangeWaitOptions) async throws {
    try await reportingFailures(json: global.json) {
        let final = try await global.withClient { client -> ClusterMap in
            let decided = try await client.changeCluster(change)
            printError(
                "epoch \(decided.epoch): \(change)" + (decided.isChanging ? " (\(decided.changeSummary))" : ""))
            guard !wait.noWait, decided.isChanging else { return decided }
            let deadline = ContinuousClock.now + .seconds(wait.waitTimeout)
            var map = decided
            while map.isChanging {
                guard ContinuousClock.now < deadline else {
                    throw CommandFailure(
                        "the change is still in progress after \(wait.waitTimeout) s: \(map.changeSummary)")
                }
                try await Task.sleep(for: .seconds(1))
                map = try await client.latestClusterMap()
                var lines: [String] = []
                for node in map.streaming {
                    let progress = TransferProgress(
                        transfers: (try? await client.nodeStatistics(node: node))?.transfers ?? [])
                    lines.append("\(node): \(progress)")
                }
                if !lines.isEmpty { printError(lines.joined(separator: "\n")) }
            }
            return map
        }
        switch change {
        case .join, .leave, .replace, .setAddress: global.keepSeeds(of: final)
        default: break
        }
        if global.json {
            try printJSON(ChangeDocument(epoch: final.epoch, changing: final.isChanging))
        } else {
            print("epoch \(final.epoch): \(final.isChanging ? final.changeSummary : "done")")
        }
    }
}

/// A receiving node's transfers, from its `Admin` stats.
struct TransferProgress: CustomStringConvertible {
    var ranges = 0
    var done = 0
    var keys: UInt64 = 0
    /// The first range being retried and why.
    var retrying: String?

    init(transfers: [RangeTransferStatus]) {
        for transfer in transfers {
            ranges += 1
            if transfer.state == .done { done += 1 }
            if transfer.state == .retrying, retrying == nil {
                retrying = "\(transfer.range.start):\(transfer.range.end) \(transfer.summary)"
            }
            // Counts a peer sent: added without trapping.
            keys = keys.addingReportingOverflow(transfer.keys).overflow ? .max : keys + transfer.keys
        }
    }

    var description: String {
        "\(done) of \(ranges) ranges received, \(keys) keys" + (retrying.map { "; retrying \($0)" } ?? "")
    }
}

struct ChangeDocument: Encodable {
    var ok = true
    var epoch: UInt64
    var changing = false
}
