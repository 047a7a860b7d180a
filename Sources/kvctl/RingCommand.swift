import ArgumentParser
import Foundation
import KVClient
import KVCore

struct RingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ring",
        abstract: "Show token ownership per node, or one key's token and preference list (kvctl ring KEY).",
        discussion: "Of the keyspace --keyspace names (its own N and placement), the default keyspace's otherwise."
    )

    @OptionGroup var global: GlobalOptions

    /// Positional, because `--key` already names the TLS private key of every command (docs/design-notes.md).
    @Argument(help: "Show this key's token, its N replicas in preference order, and the fallbacks after them.")
    var key: String?

    func run() async throws {
        try await reportingFailures(json: global.json) {
            let map = try await global.withClient { client in try await client.latestClusterMap() }
            let keyspace = try selectedKeyspace(global, in: map)
            let ring: Ring
            do {
                ring = try map.ring(of: keyspace)
            } catch {
                throw CommandFailure("the cluster map is not a valid ring: \(error)")
            }
            if let key {
                let token = Token(key: Array(key.utf8))
                let replicas = ring.preferenceList(for: token)
                let fallbacks = ring.fallbacks(for: token)
                let zones = replicas.map { map.node($0)?.zone ?? "" }
                if global.json {
                    try printJSON(
                        KeyDocument(
                            keyspace: keyspace.name, key: key, token: token.description, replicas: replicas,
                            replicaZones: zones,
                            fallbacks: fallbacks, replicationFactor: ring.replicationFactor,
                            placement: "\(ring.placement)"))
                } else {
                    if keyspace.id != Keyspace.defaultID { print("keyspace   \(keyspace.name)") }
                    print("key        \(key)")
                    print("token      \(token)")
                    let named = zip(replicas, zones).map { $1.isEmpty ? $0 : "\($0)@\($1)" }
                    print(
                        "replicas   \(named.joined(separator: " "))   (N=\(ring.replicationFactor)"
                            + (ring.placement.usesZones ? ", \(ring.placement))" : ")"))
                    print("fallbacks  \(fallbacks.isEmpty ? "-" : fallbacks.joined(separator: " "))")
                }
                return
            }
            let primary = ring.primaryShare()
            let replica = ring.replicaShare()
            let rows = map.nodes.map { node in
                NodeShare(
                    node: node.id, address: node.address, zone: node.zone, tokens: node.tokens.count,
                    primaryShare: primary[node.id] ?? 0, replicaShare: replica[node.id] ?? 0)
            }
            if global.json {
                try printJSON(
                    RingDocument(
                        clusterID: map.clusterID, epoch: map.epoch, keyspace: keyspace.name,
                        replicationFactor: ring.replicationFactor, placement: "\(ring.placement)", nodes: rows))
            } else {
                print(
                    "cluster \(map.clusterID), epoch \(map.epoch)"
                        + (keyspace.id == Keyspace.defaultID ? "" : ", keyspace \(keyspace.name)")
                        + ", N=\(ring.replicationFactor)"
                        + (ring.placement.usesZones ? ", placement \(ring.placement)" : ""))
                let zoneWidth = max(4, rows.map(\.zone.count).max() ?? 0)
                print(
                    "NODE        ADDRESS                "
                        + "ZONE".padding(toLength: zoneWidth, withPad: " ", startingAt: 0)
                        + " TOKENS  PRIMARY  REPLICA (share of all keys)")
                for row in rows {
                    print(
                        row.node.padding(toLength: 11, withPad: " ", startingAt: 0) + " "
                            + row.address.padding(toLength: 22, withPad: " ", startingAt: 0) + " "
                            + (row.zone.isEmpty ? "-" : row.zone).padding(
                                toLength: zoneWidth, withPad: " ", startingAt: 0)
                            + " "
                            + String(row.tokens).padding(toLength: 7, withPad: " ", startingAt: 0) + " "
                            + String(format: "%6.2f%%  %6.2f%%", row.primaryShare * 100, row.replicaShare * 100))
                }
            }
        }
    }
}

private struct KeyDocument: Encodable {
    var keyspace: String
    var key: String
    var token: String
    var replicas: [String]
    /// Each replica's zone, in the order of `replicas` (empty strings when nodes have none).
    var replicaZones: [String]
    var fallbacks: [String]
    var replicationFactor: Int
    var placement: String
}

private struct NodeShare: Encodable {
    var node: String
    var address: String
    var zone: String
    var tokens: Int
    var primaryShare: Double
    var replicaShare: Double
}

private struct RingDocument: Encodable {
    var clusterID: String
    var epoch: UInt64
    var keyspace: String
    var replicationFactor: Int
    var placement: String
    var nodes: [NodeShare]
}
