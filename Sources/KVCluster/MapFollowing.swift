/// The one rule by which the SDK, a node and the simulator's clients keep up with the cluster map:
/// when a node reports a later epoch than the one in use (in a ping's answer, a request, a refusal),
/// fetch that node's map. One fetch at a time; a later epoch reported meanwhile is remembered, and
/// when the fetch ends (answered or failed) the node that reported the highest one is asked next,
/// unless the map installed by then is as new. Sans-I/O: `MapFollower` runs the fetches for the SDK
/// and `kvd`, the simulator sends them as messages with a request deadline.
public struct MapFollowing: Sendable, Hashable {
    /// The node whose map is being fetched; nil when no fetch runs.
    public private(set) var fetching: String?
    /// The highest epoch reported while `fetching` ran, and the node that reported it.
    private var followUp: FollowUp?

    private struct FollowUp: Sendable, Hashable {
        var epoch: UInt64
        var node: String
    }

    public init() {}

    /// `node` reported `epoch` (`UInt64.max` when it said only that its map is newer, as a
    /// `notReplica` refusal does) while the map in use has `currentEpoch`. Returns the node to fetch
    /// from now, or nil: the map is as new, or a fetch runs already (the report is kept for after it).
    public mutating func notice(_ epoch: UInt64, from node: String, currentEpoch: UInt64) -> String? {
        guard epoch > currentEpoch else { return nil }
        guard fetching == nil else {
            if epoch > followUp?.epoch ?? 0 { followUp = FollowUp(epoch: epoch, node: node) }
            return nil
        }
        fetching = node
        return node
    }

    /// The running fetch ended, answered or not, and the map in use now has `currentEpoch`. Returns
    /// the node to fetch from next, or nil: nothing newer was reported meanwhile, and no fetch runs.
    public mutating func fetchEnded(currentEpoch: UInt64) -> String? {
        defer { followUp = nil }
        guard let followUp, followUp.epoch > currentEpoch else {
            fetching = nil
            return nil
        }
        fetching = followUp.node
        return followUp.node
    }
}
