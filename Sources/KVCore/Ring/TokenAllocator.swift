/// Deterministic token assignment that keeps the ring balanced as nodes join one by one.
///
/// The first node's tokens are evenly spaced: token `i` of `k` is `floor(i * 2^64 / k)`. Every later node
/// places its tokens one at a time, each at the midpoint of one existing range: the midpoint that best
/// balances what each node replicates for replication factors 1, 2 and 3 at once (the smallest sum over
/// nodes and factors of the squared, normalised distance from each node's fair share; ties go to the
/// smallest token). Existing nodes keep their tokens, so a join moves only the ranges the new node
/// takes. `proto-spec/RING.md` states the rule precisely, with the figures it achieves.
///
/// Balancing several replication factors at once keeps the tokens independent of the cluster's
/// replication factor (any of 1 to 3 is balanced; 1 is balanced even before a 4th node joins), and each
/// choice is scored by the few ranges it changes, so one token costs O(V) for V vnodes.
public enum TokenAllocator {
    /// Virtual nodes per node unless the cluster chooses otherwise. 16 keeps every node's replica share
    /// within 1.1x of the mean for 3 to 12 nodes and N = 3 (RING.md), with a small cluster map.
    public static let tokensPerNodeDefault = 16

    /// Tokens for nodes that join in the given order; the same input always gives the same output.
    ///
    /// Node `i` gets exactly the tokens `tokensForJoiningNode` gives it when joining the first `i` nodes.
    /// - Precondition: the ids are distinct and `tokensPerNode` is in `1...Limits.tokensPerNodeMax`.
    public static func allocate(nodeIDs: [String], tokensPerNode: Int = tokensPerNodeDefault) -> [RingNode] {
        var state = AllocationState(existing: [])
        for id in nodeIDs {
            state.join(id, tokenCount: tokensPerNode)
        }
        return state.nodes
    }

    /// Tokens for one more node joining an existing ring, by the rule `allocate` applies to each node in
    /// turn.
    ///
    /// - Precondition: `existing` is a valid ring's nodes (distinct ids and tokens, none without tokens),
    ///   `id` is not among them, and `tokensPerNode` is in `1...Limits.tokensPerNodeMax`.
    public static func tokensForJoiningNode(
        _ id: String,
        existing: [RingNode],
        tokensPerNode: Int = tokensPerNodeDefault
    ) -> [UInt64] {
        var state = AllocationState(existing: existing)
        state.join(id, tokenCount: tokensPerNode)
        return state.nodes[state.nodes.count - 1].tokens
    }
}
