import Foundation
public import KVCore
import Yams

/// Reads and writes `cluster.yaml`, the description of a cluster that the SDK, `kvctl --cluster` and
/// `kvd --cluster` share:
///
/// ```yaml
/// cluster-id: quorumkv
/// replication-factor: 3
/// placement: spread:3/1      # optional (simple:N by default): zones:dc1=2,dc2=1 or spread:N/M
/// tokens-per-node: 16        # used for nodes without a `tokens` list
/// nodes:
///   - id: n1
///     address: 127.0.0.11:7411
///     zone: dc1                            # optional: the node's datacenter or rack
///   - id: n2
///     address: 127.0.0.12:7411
///     tokens: [0x1000000000000000, ...]   # optional: explicit ring tokens
/// ```
///
/// Nodes without explicit tokens get them from `TokenAllocator` in file order, so every reader of the
/// same file computes the same ring.
public enum ClusterFile {
    private struct Document: Codable {
        var clusterID: String?
        var epoch: UInt64?
        var replicationFactor: Int?
        var placement: String?
        var tokensPerNode: Int?
        var nodes: [NodeDocument]

        enum CodingKeys: String, CodingKey {
            case clusterID = "cluster-id"
            case epoch
            case replicationFactor = "replication-factor"
            case placement
            case tokensPerNode = "tokens-per-node"
            case nodes
        }
    }

    private struct NodeDocument: Codable {
        var id: String
        var address: String
        var tokens: [String]?
        var zone: String?
    }

    /// The cluster id used when the file names none.
    public static let defaultClusterID = "quorumkv"

    /// Reads and validates a cluster file.
    public static func load(path: String) throws(ConfigError) -> ClusterMap {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError("cannot read cluster file \(path): \(error.localizedDescription)")
        }
        return try parse(text, source: path)
    }

    /// Parses and validates the text of a cluster file.
    public static func parse(_ text: String, source: String = "cluster file") throws(ConfigError) -> ClusterMap {
        let document: Document
        do {
            if let dictionary = try Yams.load(yaml: text) as? [String: Any] {
                let known: Set = ["cluster-id", "epoch", "replication-factor", "placement", "tokens-per-node", "nodes"]
                if let unknown = dictionary.keys.sorted().first(where: { !known.contains($0) }) {
                    throw ConfigError("\(source): unknown setting '\(unknown)'")
                }
            }
            document = try YAMLDecoder().decode(Document.self, from: text)
        } catch let error as ConfigError {
            throw error
        } catch {
            throw ConfigError("\(source): \(error)")
        }
        guard !document.nodes.isEmpty else { throw ConfigError("\(source): 'nodes' is empty") }
        let placement: Placement
        if let text = document.placement {
            guard let parsed = Placement(parsing: text) else {
                throw ConfigError(
                    "\(source): placement '\(text)' is not simple:N, zones:ZONE=COUNT,... or spread:N/PER-ZONE")
            }
            if let factor = document.replicationFactor, factor != parsed.replicationFactor {
                throw ConfigError(
                    "\(source): replication-factor \(factor) disagrees with placement \(parsed) (N = \(parsed.replicationFactor))"
                )
            }
            placement = parsed
        } else {
            placement = .simple(replicas: document.replicationFactor ?? min(3, document.nodes.count))
        }
        let tokensPerNode = document.tokensPerNode ?? TokenAllocator.tokensPerNodeDefault
        guard (1...Limits.tokensPerNodeMax).contains(tokensPerNode) else {
            throw ConfigError("\(source): tokens-per-node must be 1...\(Limits.tokensPerNodeMax)")
        }
        var seen: Set<String> = []
        var allocated: [RingNode] = []
        var nodes: [ClusterMap.Node] = []
        for entry in document.nodes {
            guard !entry.id.isEmpty, entry.id.utf8.count <= Limits.nameBytesMax else {
                throw ConfigError("\(source): node id '\(entry.id)' must be 1-\(Limits.nameBytesMax) bytes")
            }
            guard seen.insert(entry.id).inserted else {
                throw ConfigError("\(source): node '\(entry.id)' is listed twice")
            }
            guard HostPort(parsing: entry.address, defaultPort: -1).map({ $0.port >= 0 }) == true,
                entry.address.utf8.count <= Limits.addressBytesMax
            else {
                throw ConfigError("\(source): node '\(entry.id)' address '\(entry.address)' must be HOST:PORT")
            }
            let tokens: [UInt64]
            if let listed = entry.tokens {
                tokens = try listed.map { text throws(ConfigError) in
                    guard let token = parseToken(text) else {
                        throw ConfigError("\(source): node '\(entry.id)' has an invalid token '\(text)'")
                    }
                    return token
                }
            } else {
                tokens = TokenAllocator.tokensForJoiningNode(
                    entry.id, existing: allocated, tokensPerNode: tokensPerNode)
            }
            let zone = entry.zone ?? ""
            guard zone.utf8.count <= Limits.nameBytesMax else {
                throw ConfigError("\(source): node '\(entry.id)' zone must be at most \(Limits.nameBytesMax) bytes")
            }
            allocated.append(RingNode(id: entry.id, tokens: tokens))
            nodes.append(ClusterMap.Node(id: entry.id, address: entry.address, tokens: tokens, zone: zone))
        }
        let map = ClusterMap(
            clusterID: document.clusterID ?? defaultClusterID,
            epoch: document.epoch ?? 1,
            placement: placement,
            nodes: nodes
        )
        do {
            _ = try map.ring()
        } catch {
            throw ConfigError("\(source): \(error)")
        }
        return map
    }

    /// Writes a cluster file for `map`, listing every node's tokens explicitly.
    public static func render(_ map: ClusterMap) -> String {
        var lines = [
            "# QuorumKV cluster file: every client and node reading it computes the same ring.",
            "cluster-id: \(map.clusterID)",
            "epoch: \(map.epoch)",
            "replication-factor: \(map.replicationFactor)",
        ]
        if map.placement.usesZones { lines.append("placement: \(map.placement)") }
        lines.append("nodes:")
        for node in map.nodes {
            lines.append("  - id: \(node.id)")
            lines.append("    address: \(node.address)")
            if !node.zone.isEmpty { lines.append("    zone: \(node.zone)") }
            let tokens = node.tokens.map { "\"0x\(String($0, radix: 16))\"" }.joined(separator: ", ")
            lines.append("    tokens: [\(tokens)]")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func parseToken(_ text: String) -> UInt64? {
        if text.hasPrefix("0x") || text.hasPrefix("0X") {
            return UInt64(text.dropFirst(2), radix: 16)
        }
        return UInt64(text)
    }
}

/// A cluster or node file that cannot be used, with the reason in one line.
public struct ConfigError: Error, Hashable, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
