import ArgumentParser
import Foundation
import KVClient
import KVCore

/// `kvctl cluster …`: the cluster map and the changes to it, decided by a majority of the nodes.
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Show the cluster map, or change it (admin certificate).",
        subcommands: [Show.self, SetAddress.self, SetReplicationFactor.self, SetPlacement.self]
    )

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Show the latest cluster map (epoch, N, nodes and their states, keyspaces) and each node's epoch.")

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingFailures(json: global.json) {
                let (map, keys, epochs) = try await global.withClient { client in
                    let (map, keys) = try await latestMapAndKeys(client)
                    return (map, keys, try await client.clusterEpochs())
                }
                let keyspaces = KeyspaceDocument.all(of: map).map { $0.counting(keys) }
                let rows = map.nodes.map { node in
                    MapNode(
                        node: node.id, address: node.address, zone: node.zone, ring: Keyspace.ringName(node.ring),
                        state: "\(node.state)",
                        tokens: node.tokens.count, epoch: epochs[node.id] ?? nil)
                }
                if global.json {
                    try printJSON(
                        MapDocument(
                            clusterID: map.clusterID, epoch: map.epoch, replicationFactor: map.replicationFactor,
                            placement: "\(map.placement)", pendingReplicationFactor: map.pendingReplicationFactor,
                            pendingPlacement: map.pendingPlacement.map { "\($0)" }, streaming: map.streaming,
                            change: map.isChanging ? map.changeSummary : nil, nodes: rows,
                            keyspaces: keyspaces))
                    return
                }
                print(
                    "cluster \(map.clusterID), epoch \(map.epoch), N=\(map.replicationFactor)"
                        + (map.placement.usesZones ? ", placement \(map.placement)" : ""))
                if map.isChanging { print("change in progress: \(map.changeSummary)") }
                let zoneWidth = max(4, map.nodes.map(\.zone.count).max() ?? 0)
                let ringWidth = max(4, rows.map(\.ring.count).max() ?? 0)
                print(
                    "NODE        ADDRESS                "
                        + "ZONE".padding(toLength: zoneWidth, withPad: " ", startingAt: 0) + " "
                        + "RING".padding(toLength: ringWidth, withPad: " ", startingAt: 0)
                        + " STATE     TOKENS  EPOCH")
                for row in rows {
                    let epoch =
                        switch row.epoch {
                        case nil where row.state == "\(NodeState.removed)": "-"
                        case nil: "unreachable"
                        case map.epoch?: "\(map.epoch)"
                        case let other?: "\(other) (behind: learns the map by gossip)"
                        }
                    print(
                        row.node.padding(toLength: 11, withPad: " ", startingAt: 0) + " "
                            + row.address.padding(toLength: 22, withPad: " ", startingAt: 0) + " "
                            + (row.zone.isEmpty ? "-" : row.zone).padding(
                                toLength: zoneWidth, withPad: " ", startingAt: 0)
                            + " " + row.ring.padding(toLength: ringWidth, withPad: " ", startingAt: 0)
                            + " " + row.state.padding(toLength: 9, withPad: " ", startingAt: 0) + " "
                            + String(row.tokens).padding(toLength: 7, withPad: " ", startingAt: 0) + " " + epoch)
                }
                print("")
                printKeyspaceTable(keyspaces)
            }
        }
    }

    struct SetAddress: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-address",
            abstract: "Record that a node now listens at another HOST:PORT (it keeps its tokens and data).",
            discussion: """
                Run it before restarting the node with --listen at the new address (its certificate must \
                name the new IP). Clients and the other nodes follow within a few seconds: every node \
                answers pings with its map's epoch, and whoever is behind fetches the newer map.
                """
        )

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The node's id.") var node: String
        @Argument(help: "Its new HOST:PORT.") var address: String

        func run() async throws {
            try await reportingFailures(json: global.json) {
                let map = try await global.withClient { client in
                    try await client.changeCluster(.setAddress(node: node, address: address))
                }
                global.keepSeeds(of: map)
                if global.json {
                    try printJSON(ChangeDocument(epoch: map.epoch))
                } else {
                    print("epoch \(map.epoch): \(node) is at \(address)")
                }
            }
        }
    }
}

private struct MapNode: Encodable {
    var node: String
    var address: String
    /// Empty when the node has no zone.
    var zone: String
    /// `main` or the ring's name.
    var ring: String
    var state: String
    var tokens: Int
    /// The epoch the node reports; nil: it did not answer.
    var epoch: UInt64?
}

private struct MapDocument: Encodable {
    var clusterID: String
    var epoch: UInt64
    var replicationFactor: Int
    /// `simple:3`, `zones:dc1=2,dc2=1`, `spread:3/1`.
    var placement: String
    var pendingReplicationFactor: Int?
    var pendingPlacement: String?
    var streaming: [String]
    var change: String?
    var nodes: [MapNode]
    /// The keyspaces not dropped, `default` first.
    var keyspaces: [KeyspaceDocument]
}
