/// One node's place on the ring: its id and the tokens of its virtual nodes.
///
/// Each token `t` makes the node the owner of the range `(p, t]`, where `p` is the next smaller token on
/// the ring (wrapping). `TokenAllocator` chooses tokens that keep the ring balanced.
public struct RingNode: Sendable, Hashable {
    public var id: String
    /// The node's virtual-node tokens, in any order.
    public var tokens: [UInt64]
    /// The node's zone (datacenter or rack), for placements that spread replicas over zones; empty
    /// when none was given.
    public var zone: String

    public init(id: String, tokens: [UInt64], zone: String = "") {
        self.id = id
        self.tokens = tokens
        self.zone = zone
    }
}
