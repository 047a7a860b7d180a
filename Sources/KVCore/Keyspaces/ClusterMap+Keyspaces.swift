extension ClusterMap {
    /// The keyspace named `name` (its first part when it is split), unless dropped: `default` is the
    /// map's own placement (with the `quorum` levels the SDK starts from and no TTL).
    public func keyspace(named name: String) -> Keyspace? {
        if name == Keyspace.defaultName { return defaultKeyspace }
        return keyspaces.first { $0.name == name && !$0.dropped && $0.lowKey.isEmpty }
    }

    /// The part of keyspace `name` that holds `key`: the one with the greatest `lowKey` not above it.
    public func keyspace(named name: String, forKey key: [UInt8]) -> Keyspace? {
        if name == Keyspace.defaultName { return defaultKeyspace }
        return Keyspace.part(of: parts(named: name), forKey: key)
    }

    /// Every keyspace's parts (`parts(named:)`) by name, `default` included: for a driver that looks
    /// parts up at every operation (`Keyspace.part(of:forKey:)`) instead of scanning the map each time.
    public var partsByName: [String: [Keyspace]] {
        var names = Set(keyspaces.lazy.filter { !$0.dropped }.map(\.name))
        names.insert(Keyspace.defaultName)
        return Dictionary(uniqueKeysWithValues: names.map { ($0, parts(named: $0)) })
    }

    /// The parts of keyspace `name` (one when it is not split), by `lowKey`; empty when there is none.
    public func parts(named name: String) -> [Keyspace] {
        if name == Keyspace.defaultName { return [defaultKeyspace] }
        return keyspaces.filter { $0.name == name && !$0.dropped }.sorted {
            $0.lowKey.lexicographicallyPrecedes($1.lowKey)
        }
    }

    /// Whether `key` belongs to `part` of its keyspace (it does to a keyspace that is not split).
    public func holds(_ part: Keyspace, key: [UInt8]) -> Bool {
        keyRange(of: part).contains(key)
    }

    /// The keys `part` holds: from its `lowKey` up to the next part's (excluded); every key for a
    /// keyspace that is not split.
    public func keyRange(of part: Keyspace) -> KeyRange {
        let parts = parts(named: part.name)
        guard let index = parts.firstIndex(where: { $0.id == part.id }) else { return KeyRange(low: [], high: []) }
        return KeyRange(low: part.lowKey, high: index + 1 < parts.count ? parts[index + 1].lowKey : nil)
    }

    /// Every ring of the map with owners (`ringNames`; a ring whose every node is still joining has no
    /// tokens yet), the main one with the map's placement and each other with the placement of a
    /// keyspace part living on it (else simple with the map's N, at most as many replicas as it has
    /// owners): what `kvctl ring` shows and each node's share in `kvctl status`.
    public func ringsByName() throws(RingError) -> [(name: String, ring: Ring)] {
        var rings: [(name: String, ring: Ring)] = []
        for name in ringNames {
            if name.isEmpty {
                rings.append((name, try ring()))
                continue
            }
            let owners = nodes.count { $0.state.ownsRanges && $0.ring == name }
            guard owners > 0 else { continue }
            let placement =
                keyspaces.first { !$0.dropped && $0.ring == name }?.placement
                ?? .simple(replicas: max(1, min(replicationFactor, owners)))
            let view = Keyspace(id: Keyspace.defaultID, name: name, placement: placement, ring: name)
            rings.append((name, try ring(of: view)))
        }
        return rings
    }

    /// Every keyspace of the map not dropped: the default first, then each other keyspace (each part of
    /// a split one) in the map's order.
    public var liveKeyspaces: [Keyspace] {
        [defaultKeyspace] + keyspaces.filter { !$0.dropped }
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
        map.viewRing = keyspace.ring
        map.viewNextRing = keyspace.pendingRing
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

    /// The parts of keyspace `name`, or why there are none.
    func keyspaceParts(_ name: String) throws(ClusterChangeError) -> [Keyspace] {
        guard name != Keyspace.defaultName else {
            throw .invalid("the default keyspace's placement changes with set-placement or set-rf")
        }
        let parts = parts(named: name)
        guard !parts.isEmpty else { throw .invalid("no keyspace '\(name)'") }
        return parts
    }

    /// The map with keyspace `name` created with `settings` (defaults: `simple:3` or fewer when the
    /// cluster has fewer nodes, `quorum` reads and writes, no TTL, the main ring), under the next unused
    /// id, and one more id for each split. A new keyspace holds nothing, so nothing streams.
    func creatingKeyspace(_ name: String, _ settings: KeyspaceSettings) throws(ClusterChangeError) -> ClusterMap {
        guard Keyspace.isValidName(name) else {
            throw .invalid(
                "'\(name)' is not a keyspace name: 1-\(Limits.nameBytesMax) letters, digits, '_' or '-', starting with a letter"
            )
        }
        guard keyspace(named: name) == nil else { throw .invalid("keyspace '\(name)' exists already") }
        let lowKeys = settings.splits.map(\.lowKey)
        guard lowKeys.allSatisfy({ !$0.isEmpty && $0.count <= Limits.keyBytesMax }), Set(lowKeys).count == lowKeys.count
        else {
            throw .invalid("a keyspace's split keys must be distinct, not empty, at most \(Limits.keyBytesMax) bytes")
        }
        let created = 1 + settings.splits.count
        guard keyspaces.count(where: { !$0.dropped }) + created <= Limits.keyspacesMax,
            keyspaces.count + created <= Limits.keyspaceIDsMax
        else {
            throw .invalid("a cluster holds at most \(Limits.keyspacesMax) keyspaces (\(Limits.keyspaceIDsMax) ever)")
        }
        // Ids come from peers' maps: bounded before the next one is counted.
        let highest = keyspaces.map(\.id).max() ?? Keyspace.defaultID
        guard highest < UInt32(Limits.keyspaceIDsMax) - UInt32(created) else {
            throw .invalid("keyspace ids run out at \(Limits.keyspaceIDsMax); the map holds id \(highest)")
        }
        let ring = settings.ring ?? ""
        let owners = nodes.count { $0.state.ownsRanges && $0.ring == ring }
        let first = Keyspace(
            id: highest + 1, name: name,
            placement: settings.placement ?? .simple(replicas: max(1, min(3, owners))),
            readLevel: settings.readLevel ?? .quorum, writeLevel: settings.writeLevel ?? .quorum,
            timeToLive: settings.timeToLive ?? nil, ring: ring)
        var parts = [first]
        for (offset, split) in settings.splits.sorted(by: { $0.lowKey.lexicographicallyPrecedes($1.lowKey) })
            .enumerated()
        {
            var part = first
            part.id = highest + 2 + UInt32(offset)
            part.ring = split.ring
            part.lowKey = split.lowKey
            parts.append(part)
        }
        for part in parts { try Self.check(part, on: self) }
        var next = self
        next.keyspaces += parts
        return next
    }

    /// The map with keyspace `name`'s levels and TTL changed, in every part; a new placement is pending
    /// in every part (the change streams as `set-placement` does for the default keyspace).
    func alteringKeyspace(_ name: String, _ settings: KeyspaceSettings) throws(ClusterChangeError) -> ClusterMap {
        guard settings.ring == nil, settings.splits.isEmpty else {
            throw .invalid("a keyspace's rings change with kvctl keyspace move, not alter")
        }
        var next = self
        var changed = false
        for part in try keyspaceParts(name) {
            guard let index = keyspaces.firstIndex(where: { $0.id == part.id }) else { continue }
            var keyspace = part
            if let placement = settings.placement, placement != keyspace.placement {
                keyspace.pendingPlacement = placement
            }
            keyspace.readLevel = settings.readLevel ?? keyspace.readLevel
            keyspace.writeLevel = settings.writeLevel ?? keyspace.writeLevel
            if let timeToLive = settings.timeToLive { keyspace.timeToLive = timeToLive }
            var settled = keyspace
            settled.placement = keyspace.pendingPlacement ?? keyspace.placement
            settled.pendingPlacement = nil
            try Self.check(settled, on: self)
            changed = changed || keyspace != part
            next.keyspaces[index] = keyspace
        }
        guard changed else { throw .invalid("keyspace '\(name)' is already so") }
        return next
    }

    /// The map with keyspace `name` dropped, every part: its name is free again, its ids never given
    /// again.
    func droppingKeyspace(_ name: String) throws(ClusterChangeError) -> ClusterMap {
        guard name != Keyspace.defaultName else { throw .invalid("the default keyspace cannot be dropped") }
        let ids = Set(try keyspaceParts(name).map(\.id))
        var next = self
        for index in next.keyspaces.indices where ids.contains(next.keyspaces[index].id) {
            next.keyspaces[index].dropped = true
        }
        return next
    }

    /// The map with the part of keyspace `name` starting at `lowKey` moving to `ring`.
    func movingKeyspaceRange(_ name: String, lowKey: [UInt8], to ring: String) throws(ClusterChangeError)
        -> ClusterMap
    {
        guard let part = try keyspaceParts(name).first(where: { $0.lowKey == lowKey }),
            let index = keyspaces.firstIndex(where: { $0.id == part.id })
        else {
            throw .invalid(
                "keyspace '\(name)' has no part starting at '\(Keyspace.describe(key: lowKey))' (its parts start at "
                    + parts(named: name).map { "'\(Keyspace.describe(key: $0.lowKey))'" }.joined(separator: ", ") + ")")
        }
        guard part.ring != ring else {
            throw .invalid("that part of keyspace '\(name)' is on ring \(Keyspace.ringName(ring)) already")
        }
        var moved = part
        moved.ring = ring
        try Self.check(moved, on: self)
        var next = self
        next.keyspaces[index].pendingRing = ring
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

extension Keyspace {
    /// The part of `parts` (one keyspace's, by `lowKey`) that holds `key`: the last whose `lowKey` is
    /// not after it; nil when there is no part.
    public static func part(of parts: [Keyspace], forKey key: [UInt8]) -> Keyspace? {
        parts.last { !key.lexicographicallyPrecedes($0.lowKey) }
    }
}
