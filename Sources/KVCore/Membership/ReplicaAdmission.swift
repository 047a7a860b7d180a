/// Which client requests a replica serves, by its cluster map: the one rule `kvd`'s replica service
/// and the simulator's nodes both apply.
///
/// - A key the node replicates in the map's current ring: reads and writes. Its copy is complete
///   (ownership only switches once every receiver reported that it holds its ranges).
/// - A key the node replicates only in the next ring (it is receiving that range for the change in
///   progress): writes only. Its copy is still incomplete, so a read there could miss an
///   acknowledged write (`kvsim --seed 70164 --membership` returned an older tombstone this way); a
///   client whose map says it is a replica must learn the newer map and read from the current ring.
/// - Any other key: nothing (`notReplica`), so a client with an older map learns the newer one.
///
/// A client write made with a map older than the change in progress is refused too: it may have
/// skipped the new replicas.
public struct ReplicaAdmission: Sendable {
    /// What a replica does with a client's request for one key.
    public enum Access: Sendable, Hashable {
        /// The key is on the current ring: reads and writes.
        case readWrite
        /// The key's range is being received: writes only.
        case writeOnly
        /// The node does not keep the key in its map.
        case none

        public var allowsReads: Bool { self == .readWrite }
        public var allowsWrites: Bool { self != .none }
    }

    public let node: String
    public let epoch: UInt64
    /// The epoch that began the last change of the rings (in progress or done); nil when none.
    public let changeEpoch: UInt64?
    private let current: Ring
    /// The ring once the change is done; nil when nothing is changing.
    private let next: Ring?

    /// - Throws: `RingError` when the map does not make a ring.
    public init(node: String, map: ClusterMap) throws(RingError) {
        self.node = node
        self.epoch = map.epoch
        self.changeEpoch = map.changeEpoch
        self.current = try map.ring()
        self.next = map.isChanging ? try map.nextRing() : nil
    }

    /// What the node does with a client's request for `token`.
    public func access(_ token: Token) -> Access {
        if current.isReplica(node, of: token) { return .readWrite }
        if let next, next.isReplica(node, of: token) { return .writeOnly }
        return .none
    }

    /// Whether a client write computed with the map of `writeEpoch` (0: not stated) is accepted: not
    /// when a change of the rings began after that map (in progress or done).
    public func acceptsWrite(madeAt writeEpoch: UInt64) -> Bool {
        guard writeEpoch != 0, let changeEpoch else { return true }
        return writeEpoch >= changeEpoch
    }

    /// Why a request is refused, for the `notReplica` answer; nil when it is served.
    public func refusal(_ token: Token, write: Bool, writeEpoch: UInt64 = 0) -> String? {
        switch access(token) {
        case .none:
            return "\(node) is not a replica of this key in cluster map epoch \(epoch): fetch the map and retry"
        case .writeOnly where !write:
            return
                "\(node) is still receiving this key's range for the change in progress (cluster map epoch \(epoch)): read it from the current replicas; fetch the map and retry"
        case .readWrite, .writeOnly:
            guard write, !acceptsWrite(madeAt: writeEpoch) else { return nil }
            return
                "the write was made with cluster map epoch \(writeEpoch), older than the last change of the rings (begun at epoch \(changeEpoch ?? 0)): fetch the map and retry"
        }
    }
}
