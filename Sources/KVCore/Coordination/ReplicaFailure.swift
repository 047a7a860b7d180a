/// One replica that did not take part in a quorum, and why: a transport error, a refusal, a storage
/// failure, or no answer before the deadline.
public struct ReplicaFailure: Sendable, Hashable, CustomStringConvertible {
    public var node: String
    /// One human-readable cause, e.g. `connection refused` or `no answer within 2s`.
    public var reason: String

    public init(node: String, reason: String) {
        self.node = node
        self.reason = reason
    }

    /// `node (reason)`, the form ``QuorumError`` lists failures in.
    public var description: String { "\(node) (\(reason))" }
}
