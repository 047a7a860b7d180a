/// One change an operator asks of the cluster map; `ClusterMap.applying(_:)` makes the next epoch's map.
public enum ClusterChange: Sendable, Hashable, CustomStringConvertible {
    /// The node now listens at another `host:port` (moved to another host, or renumbered); it keeps
    /// its tokens and data.
    case setAddress(node: String, address: String)

    public var description: String {
        switch self {
        case .setAddress(let node, let address): "set the address of \(node) to \(address)"
        }
    }
}

/// Why a cluster-map change was not made.
public enum ClusterChangeError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The change makes no sense for this map (unknown node, bad address, …).
    case invalid(String)
    /// The map moved on while the change was being decided: it was based on `expected`, the cluster is
    /// at `current`.
    case conflict(expected: UInt64, current: UInt64)
    /// Another change is being decided for the same epoch (its ballot outranks this one).
    case concurrentChange(epoch: UInt64, proposer: String)
    /// A change another operator had started was completed instead of this one.
    case superseded(epoch: UInt64)
    /// Too few voters answered for a majority.
    case noMajority(epoch: UInt64, granted: Int, needed: Int, failures: [String])

    public var description: String {
        switch self {
        case .invalid(let reason):
            reason
        case .conflict(let expected, let current):
            "the cluster map changed while deciding (based on epoch \(expected), the cluster is at \(current)); nothing was changed: look at the new map and retry"
        case .concurrentChange(let epoch, let proposer):
            "another change to epoch \(epoch) is being decided (by \(proposer)); nothing was changed: retry when it is done"
        case .superseded(let epoch):
            "a change another operator had started was completed as epoch \(epoch) instead of this one; nothing of this change was made: look at the new map and retry"
        case .noMajority(let epoch, let granted, let needed, let failures):
            "epoch \(epoch) not decided: \(granted) of the \(needed) votes needed"
                + (failures.isEmpty ? "" : " (\(failures.joined(separator: "; ")))")
        }
    }
}

extension ClusterMap {
    /// The map of the next epoch with `change` made.
    ///
    /// - Throws: `ClusterChangeError.invalid` when the change does not fit this map.
    public func applying(_ change: ClusterChange) throws(ClusterChangeError) -> ClusterMap {
        var next = self
        next.epoch = epoch + 1
        switch change {
        case .setAddress(let id, let address):
            guard let index = nodes.firstIndex(where: { $0.id == id }), nodes[index].state != .removed else {
                throw .invalid("no node '\(id)' in the cluster (nodes: \(voters.joined(separator: ", ")))")
            }
            guard let parsed = HostPort(parsing: address, defaultPort: -1), parsed.port > 0,
                address.utf8.count <= Limits.addressBytesMax
            else {
                throw .invalid("'\(address)' is not HOST:PORT")
            }
            guard nodes[index].address != address else {
                throw .invalid("\(id) is already at \(address)")
            }
            if let other = nodes.first(where: { $0.id != id && $0.state != .removed && $0.address == address }) {
                throw .invalid("\(address) is the address of \(other.id)")
            }
            next.nodes[index].address = address
        }
        return next
    }
}
