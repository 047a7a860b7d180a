import KVCore
import KVNode
import KVStorage

extension Simulation {
    /// At acknowledgement: at least W replicas hold the write (or something newer) on disk; with a
    /// sloppy quorum, a replica whose hint a fallback holds counts.
    func checkAcknowledgedWrite(key: [UInt8], keyspace: UInt32, version: Version, operation: Int) {
        let holders = copies(of: key, keyspace: keyspace, atLeast: version)
        let writeQuorum = writeQuorum(ofKeyspace: keyspace)
        if holders.count < writeQuorum {
            violate(
                "op\(operation): write of \(describe(key, keyspace: keyspace)) at \(version) acknowledged but durable on \(holders.count) replica(s) \(holders), fewer than W=\(writeQuorum)"
            )
        }
    }

    /// After a crash and restart, no acknowledged write lost its W durable copies (sync mode).
    func checkDurability(afterCrashOf node: Int) {
        for write in acknowledgedWrites {
            let holders = copies(of: write.key, keyspace: write.keyspace, atLeast: write.version)
            if holders.count < writeQuorum(ofKeyspace: write.keyspace) {
                violate(
                    "after \(nodes[node].id) restarted, acknowledged op\(write.historyID) (\(describe(write.key, keyspace: write.keyspace)) at \(write.version)) is durable on only \(holders)"
                )
            }
        }
    }

    /// The replicas holding the write on disk, plus (sloppy quorum) those whose hint a fallback holds.
    func copies(of key: [UInt8], keyspace: UInt32, atLeast version: Version) -> [String] {
        let holders = durableHolders(of: key, keyspace: keyspace, atLeast: version)
        guard configuration.sloppyQuorum else { return holders }
        return Array(Set(holders).union(hintedTargets(of: key, keyspace: keyspace, atLeast: version))).sorted()
    }

    /// A replica that purged a tombstone (or an expired value) at least as new as `version`, and holds
    /// nothing since, counts.
    func durableHolders(of key: [UInt8], keyspace: UInt32, atLeast version: Version) -> [String] {
        replicas(of: key, keyspace: keyspace).filter { id in
            let node = nodeIndex(id)
            guard let record = view(node, keyspace).durableRecord(key) else {
                return purgedAtLeast(version, node: node, key: key, keyspace: keyspace)
            }
            return record.version >= version
        }
    }

    /// Whether `node` purged a tombstone or an expired value of `key` at `version` or newer.
    func purgedAtLeast(_ version: Version, node: Int, key: [UInt8], keyspace: UInt32 = Keyspace.defaultID) -> Bool {
        purged[NodeKey(node: node, key: key, keyspace: keyspace)].map { $0.version >= version } ?? false
    }

    /// A replica's version of a key never goes backwards, crashes included; and a value older than a
    /// tombstone or an expired value the replica purged, which existed before the purge, never comes
    /// back.
    func observe(node: Int, key: [UInt8], keyspace: UInt32 = Keyspace.defaultID) {
        guard let record = try? view(node, keyspace).get(key: key) else { return }
        let current = record.version
        let stored = VersionedKey(key: key, version: current, keyspace: keyspace)
        let storedAt = firstStored[stored] ?? now
        firstStored[stored] = storedAt
        let slot = NodeKey(node: node, key: key, keyspace: keyspace)
        if let purge = purged[slot], !record.tombstone, current < purge.version, storedAt < purge.at {
            violate(
                "a purged delete came back: \(nodes[node].id) purged \(show(key))'s tombstone or expired value \(purge.version) and now holds the older value \(current)"
            )
        }
        if let previous = highestSeen[slot], current < previous {
            violate("\(nodes[node].id) went back from \(previous) to \(current) on \(show(key))")
        }
        highestSeen[slot] = max(current, highestSeen[slot] ?? current)
    }

    /// At the end of the main run, before the late clients write every key again (which would hide a
    /// lost write): every acknowledged write is durable on W replicas of the final ring.
    func checkAcknowledgedWritesDurable() {
        for write in acknowledgedWrites {
            let holders = durableHolders(of: write.key, keyspace: write.keyspace, atLeast: write.version)
            if holders.count < writeQuorum(ofKeyspace: write.keyspace) {
                violate("acknowledged op\(write.historyID) is durable on only \(holders) at the end")
            }
        }
    }

    /// At the end: every operation finished, no version went backwards, and the history satisfies the
    /// per-key register property that R+W>N promises.
    func checkEnd() {
        if configuration.membershipProfile != nil {
            checkMembershipEnd()
        }
        for client in clients where client.current != nil || client.remaining > 0 {
            violate("\(client.name) still has work at the end: an operation hung")
        }
        for client in clients where !client.handingOff.isEmpty {
            violate(
                "\(client.name) never settled the hand-off of \(client.handingOff.keys.sorted().map(\.description))")
        }
        if configuration.hintedHandoff {
            checkHintsDrained()
        }
        for (slot, version) in highestSeen {
            if let current = try? view(slot.node, slot.keyspace).get(key: slot.key)?.version, current < version {
                violate(
                    "\(nodes[slot.node].id) ended below \(version) on \(describe(slot.key, keyspace: slot.keyspace))")
            }
        }
        let pending = history.operations.filter { $0.completedAt == nil }
        if !pending.isEmpty {
            violate("\(pending.count) operation(s) never completed, e.g. \(pending[0])")
        }
        // Per keyspace, where R+W>N: a sloppy quorum gives up the overlap that the register check relies
        // on (by design). The history knows each keyspace's keys apart (`historyKey`).
        for keyspace in keyspaceIDs
        where readQuorum(ofKeyspace: keyspace) + writeQuorum(ofKeyspace: keyspace)
            > ring(ofKeyspace: keyspace).replicationFactor && !configuration.sloppyQuorum
        {
            let operations = history.operations.filter {
                (keyspaceOfOperation[$0.id] ?? Keyspace.defaultID) == keyspace
            }
            for violation in RegisterChecker.check(
                operations, tombstonesMayBePurged: configuration.tombstoneGrace != nil)
            {
                violate("\(violation)")
            }
        }
        // Last, so that it cannot hide what the checks above look for.
        if configuration.antiEntropyAtEnd {
            for keyspace in keyspaceIDs {
                antiEntropyPass(keyspace: keyspace)
                checkReplicasConverged(keyspace: keyspace)
            }
        }
        for keyspace in keyspaceIDs {
            checkPlacementAtEnd(keyspace: keyspace)
        }
        checkPartsHoldOnlyTheirKeys()
    }
}

extension Simulation {
    /// Before each try of a client operation: the key's replicas in the ring(s) the client plans with
    /// (its map's current ring and, during a change, the next one; or the fixed ring) keep the ring's
    /// placement rule (`placementBreak`).
    func checkPlacement(ofKey key: [UInt8], client index: Int, keyspace: UInt32 = Keyspace.defaultID) {
        guard configuration.membershipProfile != nil else {
            let qualified = historyKey(key, keyspace: keyspace)
            checkPlacement(ofKey: qualified, in: ring(ofKeyspace: keyspace), "on the ring", replicasOf: key)
            return
        }
        let map = membership.clients[index]
        let view = viewed(map, as: keyspace)
        let qualified = historyKey(key, keyspace: keyspace)
        checkPlacement(
            ofKey: qualified, in: membership.ring(of: view), "in \(clients[index].name)'s map \(map.epoch)",
            replicasOf: key)
        if map.isChanging {
            checkPlacement(
                ofKey: qualified, in: membership.nextRing(of: view),
                "in \(clients[index].name)'s next ring of \(map.epoch)", replicasOf: key)
        }
    }

    /// At the end, after the anti-entropy pass: every key written has replicas that keep the final
    /// ring's rule, and every node holding the key's latest acknowledged write (or something newer) is
    /// one of them: data never settles outside the replicas the rule chose.
    func checkPlacementAtEnd(keyspace: UInt32 = Keyspace.defaultID) {
        var latest: [[UInt8]: Version] = [:]
        let ring = ring(ofKeyspace: keyspace)
        for write in acknowledgedWrites where write.keyspace == keyspace {
            latest[write.key] = max(write.version, latest[write.key] ?? write.version)
        }
        for (key, version) in latest.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            checkPlacement(
                ofKey: historyKey(key, keyspace: keyspace), in: ring, "in the final ring", replicasOf: key)
            let replicas = replicas(of: key, keyspace: keyspace)
            let strays = nodes.indices.filter { node in
                !replicas.contains(nodes[node].id)
                    && (try? view(node, keyspace).get(key: key)).flatMap { $0?.version }.map { $0 >= version }
                        ?? false
            }.map { nodes[$0] }
            if !strays.isEmpty {
                violate(
                    "at the end \(strays.map(\.id)) hold \(describe(key, keyspace: keyspace)) at \(version) or newer but are not among its replicas \(replicas) by the placement \(ring.placement)"
                )
            }
        }
    }

    /// Reports, once per key, replicas of `key` in `ring` that break the ring's rule. `key` is the
    /// keyspace-qualified key (`historyKey`) and `replicasOf` the bytes hashed, when they differ.
    func checkPlacement(
        ofKey key: [UInt8], in ring: Ring, _ context: @autoclosure () -> String, replicasOf bytes: [UInt8]? = nil
    ) {
        guard !placementBroken.contains(key) else { return }
        let replicas = ring.preferenceList(forKey: bytes ?? key)
        guard let reason = Self.placementBreak(replicas, in: ring) else { return }
        placementBroken.insert(key)
        violate("\(show(key))'s replicas \(replicas) \(context()) break the placement \(ring.placement): \(reason)")
    }

    /// Why `replicas` break `ring.placement`, given the zones of the ring's nodes; nil when they keep it.
    /// What each rule promises, not how the ring walks to it (`Placement`, RING.md "Placement"):
    ///
    /// - every rule: N distinct nodes of the ring;
    /// - `zones`: exactly its count from each zone it names, none from any other;
    /// - `spread(N, M)`: at most M from any zone when the ring's zones have room for N that way (the sum
    ///   over zones of the smaller of M and the zone's nodes is at least N); otherwise every zone holds
    ///   at least that smaller number (a zone takes more only once every zone is full).
    static func placementBreak(_ replicas: [String], in ring: Ring) -> String? {
        let placement = ring.placement
        let zoneOfNode = Dictionary(uniqueKeysWithValues: ring.nodes.map { ($0.id, $0.zone) })
        guard Set(replicas).count == replicas.count else { return "a node is listed twice" }
        guard replicas.count == placement.replicationFactor else {
            return "\(replicas.count) replicas, not N=\(placement.replicationFactor)"
        }
        if let stranger = replicas.first(where: { zoneOfNode[$0] == nil }) { return "\(stranger) is not on the ring" }
        var held: [String: Int] = [:]
        for replica in replicas { held[zoneOfNode[replica]!, default: 0] += 1 }
        var nodesIn: [String: Int] = [:]
        for node in ring.nodes { nodesIn[node.zone, default: 0] += 1 }
        switch placement {
        case .simple:
            return nil
        case .zones(let counts):
            for wanted in counts where held[wanted.zone, default: 0] != wanted.count {
                return "zone '\(wanted.zone)' holds \(held[wanted.zone, default: 0]), not \(wanted.count)"
            }
            let named = Set(counts.map(\.zone))
            if let other = held.keys.sorted().first(where: { !named.contains($0) }) {
                return "zone '\(other)' holds \(held[other]!), and the rule names no such zone"
            }
            return nil
        case .spread(let replicaCount, let perZone):
            let room = nodesIn.values.reduce(0) { $0 + min($1, perZone) }
            if room >= replicaCount {
                if let crowded = held.keys.sorted().first(where: { held[$0]! > perZone }) {
                    return "zone '\(crowded)' holds \(held[crowded]!), more than \(perZone), though the zones have room"
                }
            } else if let short = nodesIn.keys.sorted().first(where: {
                held[$0, default: 0] < min(nodesIn[$0]!, perZone)
            }) {
                return "zone '\(short)' holds \(held[short, default: 0]) while other zones hold more than \(perZone)"
            }
            return nil
        }
    }
}
