import KVCore
import KVNode
import KVStorage

extension Simulation {
    /// At acknowledgement: at least W replicas hold the write (or something newer) on disk; with a
    /// sloppy quorum, a replica whose hint a fallback holds counts.
    func checkAcknowledgedWrite(key: [UInt8], version: Version, operation: Int) {
        let holders = copies(of: key, atLeast: version)
        if holders.count < configuration.writeQuorum {
            violate(
                "op\(operation): write of \(show(key)) at \(version) acknowledged but durable on \(holders.count) replica(s) \(holders), fewer than W=\(configuration.writeQuorum)"
            )
        }
    }

    /// After a crash and restart, no acknowledged write lost its W durable copies (sync mode).
    func checkDurability(afterCrashOf node: Int) {
        for write in acknowledgedWrites {
            let holders = copies(of: write.key, atLeast: write.version)
            if holders.count < configuration.writeQuorum {
                violate(
                    "after \(nodes[node].id) restarted, acknowledged op\(write.historyID) (\(show(write.key)) at \(write.version)) is durable on only \(holders)"
                )
            }
        }
    }

    /// The replicas holding the write on disk, plus (sloppy quorum) those whose hint a fallback holds.
    func copies(of key: [UInt8], atLeast version: Version) -> [String] {
        let holders = durableHolders(of: key, atLeast: version)
        guard configuration.sloppyQuorum else { return holders }
        return Array(Set(holders).union(hintedTargets(of: key, atLeast: version))).sorted()
    }

    /// A replica that purged a tombstone at least as new as `version`, and holds nothing since, counts.
    func durableHolders(of key: [UInt8], atLeast version: Version) -> [String] {
        replicas(of: key).filter { id in
            let node = nodeIndex(id)
            guard let record = nodes[node].store.durableRecord(key) else {
                return purgedAtLeast(version, node: node, key: key)
            }
            return record.version >= version
        }
    }

    /// Whether `node` purged a tombstone of `key` at `version` or newer.
    func purgedAtLeast(_ version: Version, node: Int, key: [UInt8]) -> Bool {
        purged[NodeKey(node: node, key: key)].map { $0.version >= version } ?? false
    }

    /// A replica's version of a key never goes backwards, crashes included; and a value older than a
    /// tombstone the replica purged, which existed before the purge, never comes back.
    func observe(node: Int, key: [UInt8]) {
        guard let record = try? nodes[node].store.get(key: key) else { return }
        let current = record.version
        let stored = VersionedKey(key: key, version: current)
        let storedAt = firstStored[stored] ?? now
        firstStored[stored] = storedAt
        let slot = NodeKey(node: node, key: key)
        if let purge = purged[slot], !record.tombstone, current < purge.version, storedAt < purge.at {
            violate(
                "a purged delete came back: \(nodes[node].id) purged \(show(key))'s tombstone \(purge.version) and now holds the older value \(current)"
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
            let holders = durableHolders(of: write.key, atLeast: write.version)
            if holders.count < configuration.writeQuorum {
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
            if let current = try? nodes[slot.node].store.get(key: slot.key)?.version, current < version {
                violate("\(nodes[slot.node].id) ended below \(version) on \(show(slot.key))")
            }
        }
        let pending = history.operations.filter { $0.completedAt == nil }
        if !pending.isEmpty {
            violate("\(pending.count) operation(s) never completed, e.g. \(pending[0])")
        }
        // A sloppy quorum gives up the overlap that the register check relies on (by design).
        if configuration.readQuorum + configuration.writeQuorum > configuration.replicationFactor
            && !configuration.sloppyQuorum
        {
            for violation in RegisterChecker.check(
                history.operations, tombstonesMayBePurged: configuration.tombstoneGrace != nil)
            {
                violate("\(violation)")
            }
        }
        // Last, so that it cannot hide what the checks above look for.
        if configuration.antiEntropyAtEnd {
            antiEntropyPass()
            checkReplicasConverged()
        }
    }
}
