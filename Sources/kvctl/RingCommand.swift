import ArgumentParser
import Foundation
import KVClient
import KVCore

struct RingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ring",
        abstract: "Show token ownership per node of every ring, or one key's token and preference list (ring KEY).",
        discussion: """
            Without --keyspace: every ring (the main ring, where the default keyspace lives, then the \
            others by name), each balanced on its own. With --keyspace NAME: the rings of that \
            keyspace's parts, with its N and placement; ring KEY uses the ring of the part holding KEY.
            """
    )

    @OptionGroup var global: GlobalOptions

    /// Positional, because `--key` already names the TLS private key of every command (docs/design-notes.md).
    @Argument(help: "Show this key's token, its N replicas in preference order, and the fallbacks after them.")
    var key: String?

    func run() async throws {
        try await reportingFailures(json: global.json) {
            let map = try await global.withClient { client in try await client.latestClusterMap() }
            let keyspace = try selectedKeyspace(global, in: map)
            if let key {
                try printKey(key, of: keyspace, in: map)
                return
            }
            let rings = try Self.rings(of: map, keyspace: keyspace, named: keyspace.id != Keyspace.defaultID)
            let documents = rings.map { ring in
                RingShares(
                    ring: Keyspace.ringName(ring.name), keys: ring.keys, replicationFactor: ring.ring.replicationFactor,
                    placement: "\(ring.ring.placement)", nodes: Self.shares(of: ring.ring, ringName: ring.name, in: map)
                )
            }
            if global.json {
                let first = documents.first
                try printJSON(
                    RingDocument(
                        clusterID: map.clusterID, epoch: map.epoch, keyspace: keyspace.name,
                        replicationFactor: first?.replicationFactor ?? 0, placement: first?.placement ?? "",
                        nodes: documents.flatMap(\.nodes), rings: documents))
                return
            }
            print(
                "cluster \(map.clusterID), epoch \(map.epoch)"
                    + (keyspace.id == Keyspace.defaultID ? "" : ", keyspace \(keyspace.name)"))
            let zoneWidth = max(4, map.nodes.map(\.zone.count).max() ?? 0)
            for document in documents {
                print("")
                print(
                    "ring \(document.ring)" + (document.keys.map { " (\($0))" } ?? "")
                        + ", N=\(document.replicationFactor)"
                        + (Placement(parsing: document.placement)?.usesZones == true
                            ? ", placement \(document.placement)" : ""))
                print(
                    "NODE        ADDRESS                "
                        + "ZONE".padding(toLength: zoneWidth, withPad: " ", startingAt: 0)
                        + " TOKENS  PRIMARY  REPLICA (share of the ring's keys)")
                for row in document.nodes {
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

    /// `ring KEY`: the key's token and replicas in the ring of its keyspace's part.
    private func printKey(_ key: String, of keyspace: Keyspace, in map: ClusterMap) throws {
        let bytes = Array(key.utf8)
        // As get and put say: no key is empty, so an empty one has no replicas to show.
        guard !bytes.isEmpty else { throw CommandFailure("the key is empty") }
        let part = map.keyspace(named: keyspace.name, forKey: bytes) ?? keyspace
        let ring: Ring
        do {
            ring = try map.ring(of: part)
        } catch {
            throw CommandFailure("the cluster map is not a valid ring: \(error)")
        }
        let token = Token(key: bytes)
        let replicas = ring.preferenceList(for: token)
        let fallbacks = ring.fallbacks(for: token)
        let zones = replicas.map { map.node($0)?.zone ?? "" }
        if global.json {
            try printJSON(
                KeyDocument(
                    keyspace: part.name, key: key, token: token.description, replicas: replicas,
                    replicaZones: zones, fallbacks: fallbacks, replicationFactor: ring.replicationFactor,
                    placement: "\(ring.placement)", ring: Keyspace.ringName(part.ring), partID: part.id,
                    pendingRing: part.pendingRing.map(Keyspace.ringName)))
            return
        }
        if part.id != Keyspace.defaultID { print("keyspace   \(part.name) (part id \(part.id))") }
        print("key        \(key)")
        print("token      \(token)")
        print(
            "ring       \(Keyspace.ringName(part.ring))"
                + (part.pendingRing.map { ", moving to \(Keyspace.ringName($0))" } ?? ""))
        let named = zip(replicas, zones).map { $1.isEmpty ? $0 : "\($0)@\($1)" }
        print(
            "replicas   \(named.joined(separator: " "))   (N=\(ring.replicationFactor)"
                + (ring.placement.usesZones ? ", \(ring.placement))" : ")"))
        print("fallbacks  \(fallbacks.isEmpty ? "-" : fallbacks.joined(separator: " "))")
    }

    /// The rings to show: with a keyspace named, the ring of each of its parts (its placement);
    /// otherwise every ring of the map with owners (`ClusterMap.ringsByName()`).
    static func rings(of map: ClusterMap, keyspace: Keyspace, named: Bool) throws -> [(
        name: String, keys: String?, ring: Ring
    )] {
        do {
            if named {
                let parts = map.parts(named: keyspace.name)
                return try parts.map { part in
                    let keys =
                        parts.count == 1
                        ? nil
                        : part.lowKey.isEmpty
                            ? "keys below the first split"
                            : "keys from '\(Keyspace.describe(key: part.lowKey))'"
                    return (part.ring, keys, try map.ring(of: part))
                }
            }
            return try map.ringsByName().map { ($0.name, nil, $0.ring) }
        } catch {
            throw CommandFailure("the cluster map is not a valid ring: \(error)")
        }
    }

    /// Each node of ring `ringName` (owners or not) with its shares of `ring`.
    static func shares(of ring: Ring, ringName: String, in map: ClusterMap) -> [NodeShare] {
        let primary = ring.primaryShare()
        let replica = ring.replicaShare()
        return map.nodes.filter { $0.ring == ringName && $0.state != .removed }.map { node in
            NodeShare(
                node: node.id, address: node.address, zone: node.zone, ring: Keyspace.ringName(node.ring),
                tokens: node.tokens.count, primaryShare: primary[node.id] ?? 0, replicaShare: replica[node.id] ?? 0)
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
    /// The ring of the key's part: `main` or a name.
    var ring: String
    /// The id of the keyspace part holding the key.
    var partID: UInt32
    /// The ring the part is moving to; nil when it is not moving.
    var pendingRing: String?
}

struct NodeShare: Encodable {
    var node: String
    var address: String
    var zone: String
    /// `main` or the ring's name.
    var ring: String
    var tokens: Int
    /// Shares of the node's own ring's token space.
    var primaryShare: Double
    var replicaShare: Double
}

/// One ring of `kvctl ring --json`.
private struct RingShares: Encodable {
    var ring: String
    /// Which keys of the keyspace (`--keyspace` of a split keyspace); nil: all.
    var keys: String?
    var replicationFactor: Int
    var placement: String
    var nodes: [NodeShare]
}

private struct RingDocument: Encodable {
    var clusterID: String
    var epoch: UInt64
    var keyspace: String
    /// The first ring's (the main ring's without --keyspace).
    var replicationFactor: Int
    var placement: String
    /// Every node shown, of every ring.
    var nodes: [NodeShare]
    var rings: [RingShares]
}
