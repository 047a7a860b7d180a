extension ClusterMap {
    /// The keyspace named `name`, unless dropped: `default` is the map's own placement (with the
    /// `quorum` levels the SDK starts from and no TTL).
    public func keyspace(named name: String) -> Keyspace? {
        if name == Keyspace.defaultName { return defaultKeyspace }
        return keyspaces.first { $0.name == name && !$0.dropped }
    }

    /// The keyspace of id `id`, unless dropped.
    public func keyspace(id: UInt32) -> Keyspace? {
        if id == Keyspace.defaultID { return defaultKeyspace }
        return keyspaces.first { $0.id == id && !$0.dropped }
    }

    /// Whether keyspace `id` was dropped in this map (false for one the map never had: a node whose map
    /// is behind may not know it yet).
    public func hasDropped(keyspace id: UInt32) -> Bool {
        keyspaces.contains { $0.id == id && $0.dropped }
    }

    /// The default keyspace: the map's placement.
    public var defaultKeyspace: Keyspace {
        Keyspace(
            id: Keyspace.defaultID, name: Keyspace.defaultName, placement: placement, pendingPlacement: pendingPlacement
        )
    }

    /// The map as keyspace `keyspace` sees it: its placement and pending placement in place of the
    /// map's own, so every rule written for the map (rings, `ReplicaAdmission`, `movements()`,
    /// `transfers(to:)`) applies to the keyspace unchanged. The default keyspace sees the map itself.
    public func viewed(as keyspace: Keyspace) -> ClusterMap {
        var map = self
        map.placement = keyspace.placement
        map.pendingPlacement = keyspace.pendingPlacement
        return map
    }

    /// The ring of `keyspace`: the nodes that own ranges, with its placement.
    public func ring(of keyspace: Keyspace) throws(RingError) -> Ring {
        try viewed(as: keyspace).ring()
    }

    /// The ring of `keyspace` once the change in progress is done.
    public func nextRing(of keyspace: Keyspace) throws(RingError) -> Ring {
        try viewed(as: keyspace).nextRing()
    }

    /// The map with keyspace `name` created with `settings` (defaults: `simple:3` or fewer when the
    /// cluster has fewer nodes, `quorum` reads and writes, no TTL), under the next unused id. A new
    /// keyspace holds nothing, so nothing streams.
    func creatingKeyspace(_ name: String, _ settings: KeyspaceSettings) throws(ClusterChangeError) -> ClusterMap {
        guard Keyspace.isValidName(name) else {
            throw .invalid(
                "'\(name)' is not a keyspace name: 1-\(Limits.nameBytesMax) letters, digits, '_' or '-', starting with a letter"
            )
        }
        guard keyspace(named: name) == nil else { throw .invalid("keyspace '\(name)' exists already") }
        guard keyspaces.count(where: { !$0.dropped }) < Limits.keyspacesMax, keyspaces.count < Limits.keyspaceIDsMax
        else {
            throw .invalid("a cluster holds at most \(Limits.keyspacesMax) keyspaces (\(Limits.keyspaceIDsMax) ever)")
        }
        // Ids come from peers' maps: bounded before the next one is counted.
        let highest = keyspaces.map(\.id).max() ?? Keyspace.defaultID
        guard highest < UInt32(Limits.keyspaceIDsMax) else {
            throw .invalid("keyspace ids run out at \(Limits.keyspaceIDsMax); the map holds id \(highest)")
        }
        let owners = nodes.count(where: \.state.ownsRanges)
        let keyspace = Keyspace(
            id: highest + 1, name: name,
            placement: settings.placement ?? .simple(replicas: max(1, min(3, owners))),
            readLevel: settings.readLevel ?? .quorum, writeLevel: settings.writeLevel ?? .quorum,
            timeToLive: settings.timeToLive ?? nil)
        try Self.check(keyspace, on: self)
        var next = self
        next.keyspaces.append(keyspace)
        return next
    }

    /// The map with keyspace `name`'s levels and TTL changed. Its placement does not change yet: that
    /// moves data, which keyspaces other than `default` cannot do before the nodes serve them (the
    /// default keyspace's placement changes with `setPlacement`).
    func alteringKeyspace(_ name: String, _ settings: KeyspaceSettings) throws(ClusterChangeError) -> ClusterMap {
        guard name != Keyspace.defaultName else {
            throw .invalid("the default keyspace's placement changes with set-placement or set-rf")
        }
        guard let index = keyspaces.firstIndex(where: { $0.name == name && !$0.dropped }) else {
            throw .invalid("no keyspace '\(name)'")
        }
        var keyspace = keyspaces[index]
        if let placement = settings.placement, placement != keyspace.placement {
            throw .invalid("changing the placement of keyspace '\(name)' is not possible yet")
        }
        keyspace.readLevel = settings.readLevel ?? keyspace.readLevel
        keyspace.writeLevel = settings.writeLevel ?? keyspace.writeLevel
        if let timeToLive = settings.timeToLive { keyspace.timeToLive = timeToLive }
        guard keyspace != keyspaces[index] else { throw .invalid("keyspace '\(name)' is already so") }
        try Self.check(keyspace, on: self)
        var next = self
        next.keyspaces[index] = keyspace
        return next
    }

    /// The map with keyspace `name` dropped: its name is free again, its id never given again.
    func droppingKeyspace(_ name: String) throws(ClusterChangeError) -> ClusterMap {
        guard name != Keyspace.defaultName else { throw .invalid("the default keyspace cannot be dropped") }
        guard let index = keyspaces.firstIndex(where: { $0.name == name && !$0.dropped }) else {
            throw .invalid("no keyspace '\(name)'")
        }
        var next = self
        next.keyspaces[index].dropped = true
        return next
    }

    /// A keyspace's settings must fit the cluster: its rule a valid ring of the owners, its levels
    /// its N, its TTL within `Limits.timeToLiveMax`.
    private static func check(_ keyspace: Keyspace, on map: ClusterMap) throws(ClusterChangeError) {
        let ring: Ring
        do {
            ring = try map.ring(of: keyspace)
        } catch {
            throw .invalid("keyspace '\(keyspace.name)': \(error)")
        }
        for level in [keyspace.readLevel, keyspace.writeLevel] where !level.countsZones {
            do {
                _ = try level.required(replicationFactor: ring.replicationFactor)
            } catch {
                throw .invalid("keyspace '\(keyspace.name)': \(error)")
            }
        }
        if let ttl = keyspace.timeToLive, ttl <= .zero || ttl > Limits.timeToLiveMax {
            throw .invalid("keyspace '\(keyspace.name)': time to live \(ttl) is not in (0, \(Limits.timeToLiveMax)]")
        }
    }
}
