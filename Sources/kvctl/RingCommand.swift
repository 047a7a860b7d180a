import ArgumentParser
import Foundation
import KVClient
import KVCore

struct RingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ring",
        abstract: "Show token ownership per node, or one key's token and preference list (kvctl ring KEY)."
    )

    @OptionGroup var global: GlobalOptions

    /// Positional, because `--key` already names the TLS private key of every command (docs/design-notes.md).
    @Argument(help: "Show this key's token, its N replicas in preference order, and the fallbacks after them.")
    var key: String?

    func run() async throws {
        try await reportingFailures(json: global.json) {
            let map = try await global.withClient { client in try await client.latestClusterMap() }
            let ring: Ring
            do {
                ring = try map.ring()
            } catch {
                throw CommandFailure("the cluster map is not a valid ring: \(error)")
            }
            if let key {
                let token = Token(key: Array(key.utf8))
                let replicas = ring.preferenceList(for: token)
                let fallbacks = ring.fallbacks(for: token)
                if global.json {
                    try printJSON(
                        KeyDocument(
                            key: key, token: token.description, replicas: replicas, fallbacks: fallbacks,
                            replicationFactor: ring.replicationFactor))
                } else {
                    print("key        \(key)")
                    print("token      \(token)")
                    print("replicas   \(replicas.joined(separator: " "))   (N=\(ring.replicationFactor))")
                    print("fallbacks  \(fallbacks.isEmpty ? "-" : fallbacks.joined(separator: " "))")
                }
                return
            }
            let primary = ring.primaryShare()
            let replica = ring.replicaShare()
            let rows = map.nodes.map { node in
                NodeShare(
                    node: node.id, address: node.address, tokens: node.tokens.count,
                    primaryShare: primary[node.id] ?? 0, replicaShare: replica[node.id] ?? 0)
            }
            if global.json {
                try printJSON(
                    RingDocument(
                        clusterID: map.clusterID, epoch: map.epoch, replicationFactor: map.replicationFactor,
                        nodes: rows))
            } else {
                print("cluster \(map.clusterID), epoch \(map.epoch), N=\(map.replicationFactor)")
                print("NODE        ADDRESS                TOKENS  PRIMARY  REPLICA (share of all keys)")
                for row in rows {
                    print(
                        row.node.padding(toLength: 11, withPad: " ", startingAt: 0) + " "
                            + row.address.padding(toLength: 22, withPad: " ", startingAt: 0) + " "
                            + String(row.tokens).padding(toLength: 7, withPad: " ", startingAt: 0) + " "
                            + String(format: "%6.2f%%  %6.2f%%", row.primaryShare * 100, row.replicaShare * 100))
                }
            }
        }
    }
}

private struct KeyDocument: Encodable {
    var key: String
    var token: String
    var replicas: [String]
    var fallbacks: [String]
    var replicationFactor: Int
}

private struct NodeShare: Encodable {
    var node: String
    var address: String
    var tokens: Int
    var primaryShare: Double
    var replicaShare: Double
}

private struct RingDocument: Encodable {
    var clusterID: String
    var epoch: UInt64
    var replicationFactor: Int
    var nodes: [NodeShare]
}
