import KVCore
import KVNode
import KVStorage

/// Anti-entropy in the simulator, at the end of a run: once every node is back, the first replica of
/// every vnode range repairs it with the others by the production rule (`RangeRepair`), each
/// comparison the production `MerkleComparison` over the stores' production `MerkleStore` answers,
/// exchanging exactly the differing keys it finds (`push` from the local side, `pull` from the remote
/// one, as `AntiEntropySession` copies them) through the production `Replica.put`. Then every replica
/// of every range must hold the same data.
///
/// With `antiEntropyEvery`, nodes also run passes during the run, under faults, and with
/// `tombstoneGrace` they purge tombstones by the production rule (`RangeRepair` with
/// `TombstonePolicy`, as `AntiEntropy`): a range's tombstones older than the grace period, once it was
/// compared with every co-replica, the comparison leaving such tombstones uncopied where their key is
/// absent. `observe` then checks that no value a purged tombstone deleted comes back.
///
/// This file holds drivers only: which co-replica is compared when, what confirms a range and when
/// tombstones may go are `RangeRepair`'s; a comparison with a node that is down fails, as the node's
/// sessions do.
extension Simulation {
    /// Every vnode span of the ring, each once: `(previous token, token]`.
    var vnodeSpans: [TokenRangeSpan] { vnodeSpans(of: ring) }

    /// Every vnode span of `ring`, each once.
    func vnodeSpans(of ring: Ring) -> [TokenRangeSpan] {
        let tokens = ring.nodes.flatMap(\.tokens).sorted()
        return Set(tokens.map { ring.range(containing: Token($0)) }).sorted { $0.end < $1.end }
    }

    /// Repairs every range from its first replica (`repair(_:from:purgeHorizon:policy:)`, no purge).
    /// One pass converges the replicas of a range whose replicas are all up: each comparison copies
    /// both ways, and `RangeRepair` compares the earlier co-replicas again when a later one gave the
    /// first replica records. Returns the records copied both ways (those their target applied).
    @discardableResult
    func antiEntropyPass(keyspace: UInt32 = Keyspace.defaultID) -> Int {
        var moved = 0
        let ring = ring(ofKeyspace: keyspace)
        for span in vnodeSpans(of: ring) {
            guard let first = ring.preferenceList(for: Token(span.end)).first else { continue }
            moved +=
                repair(
                    span, from: nodeIndex(first), purgeHorizon: nil, policy: TombstonePolicy(grace: nil),
                    keyspace: keyspace
                ).moved
        }
        return moved
    }

    /// A node's mid-run pass: each vnode range it replicates is repaired with its co-replicas
    /// (`repair(_:from:purgeHorizon:policy:)`), and its tombstones purged when the repair's outcome
    /// says so. Ticks go on while clients run.
    func antiEntropyTick(_ index: Int) {
        if nodes[index].isUp {
            let id = nodes[index].id
            var policy = TombstonePolicy(grace: configuration.tombstoneGrace)
            policy.purgesWithoutConfirmation = configuration.mutation == .purgeWithoutConfirmation
            let rangesMoving =
                configuration.membershipProfile != nil && membership.acceptors[index].committed.isChanging
            let horizon = policy.horizon(nowMillis: nodes[index].localNow, rangesMoving: rangesMoving)
            // Per keyspace, as kvd's `AntiEntropies` runs one `AntiEntropy` per keyspace.
            for keyspace in keyspaceIDs {
                let ring = ring(ofKeyspace: keyspace)
                for span in vnodeSpans(of: ring) where ring.preferenceList(for: Token(span.end)).contains(id) {
                    let outcome = repair(span, from: index, purgeHorizon: horizon, policy: policy, keyspace: keyspace)
                        .outcome
                    if let before = outcome.purgeBefore {
                        purgeTombstones(of: index, in: span, before: before, keyspace: keyspace)
                    }
                }
            }
            log("\(id) ran an anti-entropy pass")
        }
        if clientsActive, let every = configuration.antiEntropyEvery?.wholeMillisecondsClamped {
            queue.push(.antiEntropyTick(node: index), at: now + every)
        }
    }

    /// Drives the production `RangeRepair` of `span` from node `index` with the span's other replicas:
    /// each comparison it asks for is one `compare`, or a failed one when the co-replica is down.
    /// Returns the records copied both ways (those their target applied) and the repair's outcome.
    func repair(
        _ span: TokenRangeSpan, from index: Int, purgeHorizon: Version?, policy: TombstonePolicy,
        keyspace: UInt32 = Keyspace.defaultID
    ) -> (moved: Int, outcome: RangeRepair.Outcome) {
        let ring = ring(ofKeyspace: keyspace)
        var repair = RangeRepair(
            range: span, coReplicas: ring.preferenceList(for: Token(span.end)).filter { $0 != nodes[index].id },
            purgeHorizon: purgeHorizon, policy: policy)
        var moved = 0
        while true {
            switch repair.step {
            case .compare(let id):
                let other = nodeIndex(id)
                guard nodes[other].isUp else {
                    repair.compared(with: id, keysReceived: 0, failed: true)
                    continue
                }
                let copied = compare(
                    span, local: index, remote: other, purgeHorizon: repair.purgeHorizon, keyspace: keyspace)
                moved += copied.pushed + copied.pulled
                repair.compared(with: id, keysReceived: copied.pulled, failed: false)
            case .finished(let outcome):
                return (moved, outcome)
            }
        }
    }

    /// Purges `span`'s tombstones older than `horizon`, and its values that expired before it, from a
    /// node's store (the production `TombstonePurging`), remembering each for the invariants.
    func purgeTombstones(
        of index: Int, in span: TokenRangeSpan, before horizon: Version, keyspace: UInt32 = Keyspace.defaultID
    ) {
        let store = served(index, keyspace).store
        do {
            let doomed = try store.merkleListing(of: span).filter { entry in
                guard let record = try store.get(key: entry.key) else { return false }
                return TombstonePolicy.isPurgeable(
                    version: record.version, tombstone: record.tombstone, expiresAtMillis: record.expiresAtMillis,
                    below: horizon)
            }
            let count = try store.purgeTombstones(in: span, before: horizon)
            if count != doomed.count {
                violate("\(nodes[index].id) purged \(count) tombstones of \(span), \(doomed.count) were listed")
            }
            statistics.expiredValuesPurged += doomed.count { !$0.tombstone }
            for entry in doomed {
                let slot = NodeKey(node: index, key: entry.key, keyspace: keyspace)
                purged[slot] = (entry.version, now)
                // The version is gone on purpose; a write after the purge may be older.
                highestSeen[slot] = nil
            }
            statistics.tombstonesPurged += count
            if count > 0 { log("\(nodes[index].id) purged \(count) tombstone(s) of \(span)") }
        } catch {
            violate("\(nodes[index].id) cannot purge tombstones of \(span): \(error)")
        }
    }

    /// One comparison of `span` between two nodes: returns the records the remote side applied from
    /// the local one (`pushed`) and the local side from the remote one (`pulled`), as
    /// `AntiEntropySession` counts keys sent and received.
    @discardableResult
    func compare(
        _ span: TokenRangeSpan, local: Int, remote: Int, purgeHorizon: Version? = nil,
        keyspace: UInt32 = Keyspace.defaultID
    ) -> (pushed: Int, pulled: Int) {
        let localStore = served(local, keyspace).store
        let remoteStore = served(remote, keyspace).store
        var comparison = MerkleComparison(range: span, purgeHorizon: purgeHorizon)
        comparison.findsNothingToPull = configuration.mutation == .antiEntropyNeverPulls
        var action = comparison.start()
        do {
            while case .query(let query) = action {
                guard let mine = try localStore.merkleAnswer(to: query, in: comparison.tree),
                    let theirs = try remoteStore.merkleAnswer(to: query, in: comparison.tree)
                else {
                    violate("anti-entropy asked \(query) that the stores cannot answer for \(span)")
                    return (0, 0)
                }
                action = try comparison.handle(local: mine, remote: theirs)
            }
        } catch {
            violate("anti-entropy between \(nodes[local].id) and \(nodes[remote].id) on \(span) failed: \(error)")
            return (0, 0)
        }
        guard case .finish(let difference) = action else { return (0, 0) }
        let pushed = difference.push.count {
            copy($0.key, from: local, to: remote, keyspace: keyspace, purgeHorizon: purgeHorizon)
        }
        let pulled = difference.pull.count {
            copy($0.key, from: remote, to: local, keyspace: keyspace, purgeHorizon: purgeHorizon)
        }
        statistics.antiEntropyKeys += difference.push.count + difference.pull.count
        if !difference.isEmpty {
            log(
                "anti-entropy \(nodes[local].id)↔\(nodes[remote].id) \(span): pushed \(difference.push.count), pulled \(difference.pull.count)"
            )
        }
        return (pushed, pulled)
    }

    /// Copies `key`'s record from one node to another through `Replica.put`: whether the target
    /// applied it (false when it held a newer version). Below `purgeHorizon`, a value that expired
    /// before it goes only where the target holds something for the key, as `AntiEntropySession`
    /// copies (`TombstonePolicy.copiesOnlyOverARecord`).
    @discardableResult
    func copy(
        _ key: [UInt8], from source: Int, to target: Int, keyspace: UInt32 = Keyspace.defaultID,
        purgeHorizon: Version? = nil
    ) -> Bool {
        do throws(any Error) {
            guard let record = try served(source, keyspace).store.get(key: key) else {
                violate("anti-entropy listed \(show(key)) on \(nodes[source].id), which does not hold it")
                return false
            }
            if let purgeHorizon, TombstonePolicy.copiesOnlyOverARecord(record, below: purgeHorizon),
                try served(target, keyspace).store.get(key: key) == nil
            {
                return false
            }
            let applied = try served(target, keyspace).replica.put(key: key, record: record).outcome == .applied
            observe(node: target, key: key, keyspace: keyspace)
            return applied
        } catch {
            violate("anti-entropy could not copy \(show(key)) to \(nodes[target].id): \(error)")
            return false
        }
    }

    /// At the end, after a pass: the replicas of every range hold the same data (equal digests), and a
    /// second pass finds nothing to move.
    func checkReplicasConverged(keyspace: UInt32 = Keyspace.defaultID) {
        let again = antiEntropyPass(keyspace: keyspace)
        let name = keyspace == Keyspace.defaultID ? "" : " of keyspace \(self.keyspace(keyspace).name)"
        if again > 0 {
            violate("a second anti-entropy pass\(name) still moved \(again) key(s)")
        }
        let ring = ring(ofKeyspace: keyspace)
        for span in vnodeSpans(of: ring) {
            let replicas = ring.preferenceList(for: Token(span.end)).map(nodeIndex)
            let digests = replicas.map { try? view($0, keyspace).merkleDigest(of: span) }
            if Set(digests.map { $0 ?? 0 }).count > 1 || digests.contains(nil) {
                violate(
                    "replicas \(replicas.map { nodes[$0].id }) of \(span)\(name) differ after anti-entropy: \(digests)")
            }
        }
    }
}
