/// Which keyspaces a node receiving ranges moves, in what order, and when it may report them streamed:
/// the one rule `kvd`'s `RangeStreamer` and the simulator follow.
///
/// Every keyspace of the map (each part of a split keyspace on its own, as each has its own storage
/// view) moves its own ranges on its own ring, seen as `ClusterMap.viewed(as:)`: the default keyspace
/// first, then the others in the map's order, skipping dropped ones. The node reports
/// `ClusterChange.streamed(node:)` only once every one of them is received and verified: the switch
/// that follows makes the new owners answer for every keyspace at once, so a keyspace left behind
/// would lose the acknowledged writes its new replicas never received.
///
/// A driver asks `step`, receives the keyspace it names (over as many rounds as it takes), says so
/// with `received(_:)`, and asks again until the step is `report`.
public struct KeyspaceTransfers: Sendable, Hashable {
    public enum Step: Sendable, Hashable {
        /// Receive and verify this keyspace's ranges next (`RangeTransfer` on the keyspace's view).
        case receive(Keyspace)
        /// Every keyspace is in and verified: propose `.streamed`.
        case report
    }

    /// The keyspaces whose ranges move, in the order they are received: the default first.
    public let keyspaces: [Keyspace]
    /// How many of `keyspaces`, from the first, are received and verified.
    public private(set) var receivedCount = 0
    /// Test-only (the mutation check): report once the default keyspace alone is in, as if the other
    /// keyspaces had nothing to move.
    package var reportsAfterDefaultOnly = false

    public init(map: ClusterMap) {
        self.keyspaces = map.liveKeyspaces
    }

    /// What the node does next.
    public var step: Step {
        let needed = reportsAfterDefaultOnly ? min(1, keyspaces.count) : keyspaces.count
        guard receivedCount < needed else { return .report }
        return .receive(keyspaces[receivedCount])
    }

    /// Keyspace `id`, the one `step` named, is received and verified.
    public mutating func received(_ id: UInt32) {
        precondition(
            receivedCount < keyspaces.count && keyspaces[receivedCount].id == id,
            "keyspace \(id) received out of order")
        receivedCount += 1
    }
}
