/// One change an operator asks of the cluster map; `ClusterMap.applying(_:)` makes the next epoch's map.
public enum ClusterChange: Sendable, Hashable, CustomStringConvertible {
    /// The node now listens at another `host:port` (moved to another host, or renumbered); it keeps
    /// its tokens and data.
    case setAddress(node: String, address: String)
    /// A new node joins at `address` in `zone` (empty: none) with `tokensPerNode` tokens placed by
    /// `TokenAllocator`; it receives its ranges, then owns them.
    case join(node: String, address: String, tokensPerNode: Int, zone: String = "", ring: String = "")
    /// The node hands its ranges to the others, then is removed (decommission).
    case leave(node: String)
    /// A new node takes over the tokens and zone of `node` (usually dead): it receives those ranges
    /// from the other replicas, then `node` is removed.
    case replace(node: String, with: String, address: String)
    /// N changes, the rule staying what it is; nodes that become replicas of a range receive it before
    /// reads use the new N.
    case setReplicationFactor(Int)
    /// The placement rule changes (zones, or at most so many replicas per zone); nodes that become
    /// replicas of a range receive it before reads use the new rule, as with `setReplicationFactor`.
    case setPlacement(Placement)
    /// `node` holds every range it had to receive for the change in progress; the last one ends it.
    case streamed(node: String)
    /// A keyspace is created (`Keyspace`), altered (levels, TTL) or dropped.
    case createKeyspace(String, KeyspaceSettings)
    case alterKeyspace(String, KeyspaceSettings)
    case dropKeyspace(String)
    /// The part of keyspace `name` that starts at `lowKey` moves to `ring` (empty: the main ring): the
    /// new ring's nodes receive its ranges while writes go to both rings, then it lives there.
    case moveKeyspaceRange(String, lowKey: [UInt8], ring: String)

    public var description: String {
        switch self {
        case .setAddress(let node, let address): "set the address of \(node) to \(address)"
        case .join(let node, let address, _, let zone, let ring):
            "\(node) joins at \(address)" + (zone.isEmpty ? "" : " in zone \(zone)")
                + (ring.isEmpty ? "" : " on ring \(ring)")
        case .leave(let node): "\(node) leaves"
        case .replace(let node, let new, _): "\(new) replaces \(node)"
        case .setReplicationFactor(let n): "N becomes \(n)"
        case .setPlacement(let placement): "the placement becomes \(placement)"
        case .streamed(let node): "\(node) received its ranges"
        case .createKeyspace(let name, _): "keyspace \(name) is created"
        case .alterKeyspace(let name, _): "keyspace \(name) is altered"
        case .dropKeyspace(let name): "keyspace \(name) is dropped"
        case .moveKeyspaceRange(let name, let lowKey, let ring):
            "keyspace \(name)'s keys from '\(Keyspace.describe(key: lowKey))' move to ring \(Keyspace.ringName(ring))"
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
    /// - Throws: `ClusterChangeError.invalid` when the change does not fit this map (unknown node,
    ///   address in use, another change in progress, too few nodes for N, …).
    public func applying(_ change: ClusterChange) throws(ClusterChangeError) -> ClusterMap {
        var next = self
        next.epoch = epoch + 1
        switch change {
        case .setAddress(let id, let address):
            let index = try member(id)
            try checkAddress(address, for: id)
            guard nodes[index].address != address else { throw .invalid("\(id) is already at \(address)") }
            next.nodes[index].address = address
            return next
        case .createKeyspace(let name, let settings):
            var created = try creatingKeyspace(name, settings)
            created.epoch = epoch + 1
            return created
        case .alterKeyspace(let name, let settings):
            let placementChanges = try keyspaceParts(name).contains { part in
                settings.placement.map { $0 != part.placement } ?? false
            }
            if placementChanges { try checkNoChangeInProgress() }
            next = try alteringKeyspace(name, settings)
            next.epoch = epoch + 1
            guard placementChanges else { return next }
        case .moveKeyspaceRange(let name, let lowKey, let ring):
            try checkNoChangeInProgress()
            next = try movingKeyspaceRange(name, lowKey: lowKey, to: ring)
            next.epoch = epoch + 1
        case .dropKeyspace(let name):
            var dropped = try droppingKeyspace(name)
            dropped.epoch = epoch + 1
            return dropped
        case .streamed(let id):
            guard streaming.contains(id) else {
                throw .invalid("\(id) is not receiving ranges (streaming: \(streaming.joined(separator: ", ")))")
            }
            next.streaming.removeAll { $0 == id }
            if next.streaming.isEmpty { next.finishChange() }
            return next
        case .join(let id, let address, let tokensPerNode, let zone, let ring):
            try checkNoChangeInProgress()
            try checkNewID(id)
            try checkAddress(address, for: id)
            try checkZone(zone)
            guard ring.isEmpty || Keyspace.isValidName(ring), ring != Keyspace.mainRingName else {
                throw .invalid(
                    "'\(ring)' is not a ring name: 1-\(Limits.nameBytesMax) letters, digits, '_' or '-', starting with a letter (the main ring is named by leaving it out)"
                )
            }
            guard (1...Limits.tokensPerNodeMax).contains(tokensPerNode) else {
                throw .invalid("tokens per node must be 1...\(Limits.tokensPerNodeMax)")
            }
            // Each ring is balanced on its own: the tokens split its own nodes' ranges.
            let owners = nodes.filter { $0.state.ownsRanges && $0.ring == ring }.map(\.ringNode)
            let tokens = TokenAllocator.tokensForJoiningNode(id, existing: owners, tokensPerNode: tokensPerNode)
            next.nodes.append(Node(id: id, address: address, tokens: tokens, state: .joining, zone: zone, ring: ring))
        case .leave(let id):
            try checkNoChangeInProgress()
            let index = try member(id)
            guard nodes[index].state == .normal || nodes[index].state == .down else {
                throw .invalid("\(id) is \(nodes[index].state), not an owner that can leave")
            }
            next.nodes[index].state = .leaving
        case .replace(let id, let new, let address):
            try checkNoChangeInProgress()
            let index = try member(id)
            guard nodes[index].state.ownsRanges else {
                throw .invalid("\(id) is \(nodes[index].state): there is nothing to replace")
            }
            try checkNewID(new)
            try checkAddress(address, for: new)
            next.nodes[index].state = .leaving
            next.nodes.append(
                Node(
                    id: new, address: address, tokens: nodes[index].tokens, state: .joining, zone: nodes[index].zone,
                    ring: nodes[index].ring))
        case .setReplicationFactor(let factor):
            try checkNoChangeInProgress()
            guard factor != replicationFactor else { throw .invalid("N is already \(factor)") }
            guard let pending = placement.withReplicationFactor(factor) else {
                throw .invalid(
                    "the placement is \(placement): N is the sum of its zones' counts; change them with set-placement")
            }
            next.pendingPlacement = pending
        case .setPlacement(let rule):
            try checkNoChangeInProgress()
            guard rule != placement else { throw .invalid("the placement is already \(rule)") }
            next.pendingPlacement = rule
        }
        do {
            _ = try next.ring()
            _ = try next.nextRing()
        } catch {
            throw .invalid("the cluster after this change would not be a valid ring: \(error)")
        }
        for keyspace in next.keyspaces where !keyspace.dropped {
            do {
                _ = try next.nextRing(of: keyspace)
            } catch {
                throw .invalid(
                    "keyspace \(keyspace.name)'s ring after this change would not be valid: \(error) (alter or drop "
                        + "the keyspace first)")
            }
        }
        next.streaming = next.receivers()
        next.changeEpoch = next.epoch
        if next.streaming.isEmpty { next.finishChange() }
        return next
    }

    /// The index of member `id` (not removed).
    private func member(_ id: String) throws(ClusterChangeError) -> Int {
        guard let index = nodes.firstIndex(where: { $0.id == id }), nodes[index].state != .removed else {
            throw .invalid("no node '\(id)' in the cluster (nodes: \(voters.joined(separator: ", ")))")
        }
        return index
    }

    private func checkNewID(_ id: String) throws(ClusterChangeError) {
        guard !id.isEmpty, id.utf8.count <= Limits.nameBytesMax else {
            throw .invalid("a node id must be 1-\(Limits.nameBytesMax) bytes")
        }
        guard node(id) == nil else {
            throw .invalid("'\(id)' is already in the cluster map (ids of removed nodes are not reused)")
        }
    }

    private func checkAddress(_ address: String, for id: String) throws(ClusterChangeError) {
        guard let parsed = HostPort(parsing: address, defaultPort: -1), parsed.port > 0,
            address.utf8.count <= Limits.addressBytesMax
        else {
            throw .invalid("'\(address)' is not HOST:PORT")
        }
        if let other = nodes.first(where: { $0.id != id && $0.state != .removed && $0.address == address }) {
            throw .invalid("\(address) is the address of \(other.id)")
        }
    }

    private func checkZone(_ zone: String) throws(ClusterChangeError) {
        guard zone.utf8.count <= Limits.nameBytesMax else {
            throw .invalid("a zone name must be at most \(Limits.nameBytesMax) bytes")
        }
    }

    private func checkNoChangeInProgress() throws(ClusterChangeError) {
        guard !isChanging else {
            throw .invalid(
                "another change is in progress (\(changeSummary)); wait until it is done (kvctl cluster show)")
        }
    }

    /// The change in progress in a few words.
    public var changeSummary: String {
        var parts: [String] = []
        for node in nodes where node.state == .joining { parts.append("\(node.id) joining") }
        for node in nodes where node.state == .leaving { parts.append("\(node.id) leaving") }
        if let pending = pendingPlacement {
            parts.append(
                pending.usesZones || placement.usesZones
                    ? "placement \(placement) → \(pending)" : "N \(replicationFactor) → \(pending.replicationFactor)")
        }
        for keyspace in keyspaces where !keyspace.dropped {
            let named =
                "keyspace \(keyspace.name)"
                + (keyspace.lowKey.isEmpty ? "" : " from '\(Keyspace.describe(key: keyspace.lowKey))'")
            if let pending = keyspace.pendingPlacement {
                parts.append("\(named) placement \(keyspace.placement) → \(pending)")
            }
            if let pending = keyspace.pendingRing {
                parts.append("\(named) ring \(Keyspace.ringName(keyspace.ring)) → \(Keyspace.ringName(pending))")
            }
        }
        if !streaming.isEmpty { parts.append("waiting for \(streaming.joined(separator: ", ")) to receive ranges") }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }
}
