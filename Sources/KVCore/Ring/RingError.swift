/// Why a set of nodes does not make a valid ring.
///
/// A struct with private cases, so that new checks do not break code that matches on the ones it knows.
public struct RingError: Error, Hashable, CustomStringConvertible {
    private enum Code: Hashable {
        case duplicateNodeID(String)
        case duplicateToken(UInt64, first: String, second: String)
        case nodeWithoutTokens(String)
        case replicationFactorOutOfRange(Int, nodeCount: Int)
        case tooManyTokens(node: String, count: Int)
        case tooManyNodes(count: Int)
        case tooManyTokensInTotal(count: Int)
        case invalidPlacement(Placement)
        case zoneTooSmall(String, nodes: Int, replicas: Int)
    }

    private let code: Code

    private init(_ code: Code) {
        self.code = code
    }

    /// Two nodes share an id.
    public static func duplicateNodeID(_ id: String) -> RingError {
        RingError(.duplicateNodeID(id))
    }

    /// The same token appears twice: on two nodes (named in the order they were given), or twice on one
    /// node (then both names are that node).
    public static func duplicateToken(_ token: UInt64, first: String, second: String) -> RingError {
        RingError(.duplicateToken(token, first: first, second: second))
    }

    /// A node has no tokens, so it would own nothing.
    public static func nodeWithoutTokens(_ id: String) -> RingError {
        RingError(.nodeWithoutTokens(id))
    }

    /// The replication factor is below 1, above the number of nodes or above `Limits.replicationFactorMax`.
    public static func replicationFactorOutOfRange(_ replicationFactor: Int, nodeCount: Int) -> RingError {
        RingError(.replicationFactorOutOfRange(replicationFactor, nodeCount: nodeCount))
    }

    /// A node has more than `Limits.tokensPerNodeMax` tokens.
    public static func tooManyTokens(node: String, count: Int) -> RingError {
        RingError(.tooManyTokens(node: node, count: count))
    }

    /// The ring has more than `Limits.nodesMax` nodes.
    public static func tooManyNodes(count: Int) -> RingError {
        RingError(.tooManyNodes(count: count))
    }

    /// The nodes have more than `Limits.tokensTotalMax` tokens together.
    public static func tooManyTokensInTotal(count: Int) -> RingError {
        RingError(.tooManyTokensInTotal(count: count))
    }

    /// A placement rule that asks for nothing, names a zone twice, or caps zones at less than one.
    public static func invalidPlacement(_ placement: Placement) -> RingError {
        RingError(.invalidPlacement(placement))
    }

    /// A zone has fewer nodes than the placement asks replicas of it.
    public static func zoneTooSmall(_ zone: String, nodes: Int, replicas: Int) -> RingError {
        RingError(.zoneTooSmall(zone, nodes: nodes, replicas: replicas))
    }

    public var description: String {
        switch code {
        case .duplicateNodeID(let id):
            return "duplicate node id \"\(id)\""
        case .duplicateToken(let token, let first, let second):
            let hex = Token(token).description
            if first == second {
                return "token \(hex) appears twice on node \"\(first)\""
            }
            return "token \(hex) is claimed by both node \"\(first)\" and node \"\(second)\""
        case .nodeWithoutTokens(let id):
            return "node \"\(id)\" has no tokens"
        case .replicationFactorOutOfRange(let replicationFactor, let nodeCount) where nodeCount == 0:
            return "a ring needs at least one node (replication factor \(replicationFactor) was asked for)"
        case .replicationFactorOutOfRange(let replicationFactor, let nodeCount):
            return "replication factor \(replicationFactor) is outside 1...\(nodeCount) (the number of nodes)"
        case .tooManyTokens(let node, let count):
            return "node \"\(node)\" has \(count) tokens; at most \(Limits.tokensPerNodeMax) are allowed"
        case .tooManyNodes(let count):
            return "the ring has \(count) nodes; at most \(Limits.nodesMax) are allowed"
        case .tooManyTokensInTotal(let count):
            return "the ring has \(count) tokens; at most \(Limits.tokensTotalMax) are allowed"
        case .invalidPlacement(let placement):
            return
                "placement \(placement) is not valid: each zone named once, each count and the total 1...\(Limits.replicationFactorMax), at least one replica per zone allowed"
        case .zoneTooSmall(let zone, let nodes, let replicas):
            return "zone \"\(zone)\" has \(nodes) nodes on the ring; the placement asks for \(replicas) replicas in it"
        }
    }
}
