import KVCore
import KVNode
import KVStorage

/// Anti-entropy in the simulator, at the end of a run: once every node is back, co-replicas of every
/// vnode range compare their Merkle trees with the production `MerkleComparison` over their stores'
/// production `MerkleStore` answers, and exchange exactly the differing keys it finds (`push` from the
/// local side, `pull` from the remote one, as `AntiEntropySession` copies them) through the production
/// `Replica.put`. Then every replica of every range must hold the same data.
///
/// With `antiEntropyEvery`, nodes also run passes during the run, under faults, and with
/// `tombstoneGrace` they purge tombstones by the production rule (`AntiEntropy`): a range's
/// tombstones older than the grace period, once it was compared with every co-replica, the comparison
/// leaving such tombstones uncopied where their key is absent. `observe` then checks that no value a
/// purged tombstone deleted comes back.
extension Simulation {
    /// Every vnode span of the ring, each once: `(previous token, token]`.
    var vnodeSpans: [TokenRangeSpan] {
        let tokens = ring.nodes.flatMap(\.tokens).sorted()
        return Set(tokens.map { ring.range(containing: Token($0)) }).sorted { $0.end < $1.end }
    }

    /// Compares and repairs every range between its first replica and each other one, twice over, so
    /// that what the first learned from the last reaches the others too. Returns the keys moved.
    @discardableResult
    func antiEntropyPass() -> Int {
        var moved = 0
        for span in vnodeSpans {
            let replicas = ring.preferenceList(for: Token(span.end)).map(nodeIndex)
            guard let first = replicas.first, replicas.allSatisfy({ nodes[$0].isUp }) else { continue }
            for _ in 0..<2 {
                for other in replicas.dropFirst() {
                    moved += compare(span, local: first, remote: other)
                }
            }
        }
        return moved
    }

    /// A node's mid-run pass: each vnode range it replicates is compared with every co-replica (twice
    /// over, so that what a later one gave reaches the earlier ones); when all were up, tombstones older
    /// than the grace period are then purged. Ticks go on while clients run.
    func antiEntropyTick(_ index: Int) {
        if nodes[index].isUp {
            let id = nodes[index].id
            var policy = TombstonePolicy(grace: configuration.tombstoneGrace)
            policy.purgesWithoutConfirmation = configuration.mutation == .purgeWithoutConfirmation
            let rangesMoving =
                configuration.membershipProfile != nil && membership.acceptors[index].committed.isChanging
            let horizon = policy.horizon(nowMillis: nodes[index].localNow, rangesMoving: rangesMoving)
            for span in vnodeSpans {
                let replicas = ring.preferenceList(for: Token(span.end)).map(nodeIndex)
                guard replicas.contains(index) else { continue }
                let coReplicas = replicas.filter { $0 != index }
                // A comparison with a node that is down fails, as the node's sessions do.
                let confirmed = coReplicas.allSatisfy { nodes[$0].isUp }
                if confirmed {
                    for _ in 0..<2 {
                        for other in coReplicas {
                            compare(span, local: index, remote: other, purgeHorizon: horizon)
                        }
                    }
                }
                if let horizon, policy.mayPurge(confirmed: confirmed) {
                    purgeTombstones(of: index, in: span, before: horizon)
                }
            }
            log("\(id) ran an anti-entropy pass")
        }
        if clientsActive, let every = configuration.antiEntropyEvery?.wholeMillisecondsClamped {
            queue.push(.antiEntropyTick(node: index), at: now + every)
        }
    }

    /// Purges `span`'s tombstones older than `horizon` from a node's store (the production
    /// `TombstonePurging`), remembering each for the invariants.
    func purgeTombstones(of index: Int, in span: TokenRangeSpan, before horizon: Version) {
        do {
            let doomed = try nodes[index].store.merkleListing(of: span).filter { $0.tombstone && $0.version < horizon }
            let count = try nodes[index].store.purgeTombstones(in: span, before: horizon)
            if count != doomed.count {
                violate("\(nodes[index].id) purged \(count) tombstones of \(span), \(doomed.count) were listed")
            }
            for entry in doomed {
                let slot = NodeKey(node: index, key: entry.key)
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

    /// One comparison of `span` between two nodes; returns the keys it moved.
    @discardableResult
    func compare(_ span: TokenRangeSpan, local: Int, remote: Int, purgeHorizon: Version? = nil) -> Int {
        var comparison = MerkleComparison(range: span, purgeHorizon: purgeHorizon)
        comparison.findsNothingToPull = configuration.mutation == .antiEntropyNeverPulls
        var action = comparison.start()
        do {
            while case .query(let query) = action {
                guard let mine = try nodes[local].store.merkleAnswer(to: query, in: comparison.tree),
                    let theirs = try nodes[remote].store.merkleAnswer(to: query, in: comparison.tree)
                else {
                    violate("anti-entropy asked \(query) that the stores cannot answer for \(span)")
                    return 0
                }
                action = try comparison.handle(local: mine, remote: theirs)
            }
        } catch {
            violate("anti-entropy between \(nodes[local].id) and \(nodes[remote].id) on \(span) failed: \(error)")
            return 0
        }
        guard case .finish(let difference) = action else { return 0 }
        for entry in difference.push {
            copy(entry.key, from: local, to: remote)
        }
        for entry in difference.pull {
            copy(entry.key, from: remote, to: local)
        }
        statistics.antiEntropyKeys += difference.push.count + difference.pull.count
        if !difference.isEmpty {
            log(
                "anti-entropy \(nodes[local].id)↔\(nodes[remote].id) \(span): pushed \(difference.push.count), pulled \(difference.pull.count)"
            )
        }
        return difference.push.count + difference.pull.count
    }

    func copy(_ key: [UInt8], from source: Int, to target: Int) {
        do {
            guard let record = try nodes[source].store.get(key: key) else {
                violate("anti-entropy listed \(show(key)) on \(nodes[source].id), which does not hold it")
                return
            }
            _ = try nodes[target].replica.put(key: key, record: record)
            observe(node: target, key: key)
        } catch {
            violate("anti-entropy could not copy \(show(key)) to \(nodes[target].id): \(error)")
        }
    }

    /// At the end, after a pass: the replicas of every range hold the same data (equal digests), and a
    /// second pass finds nothing to move.
    func checkReplicasConverged() {
        let again = antiEntropyPass()
        if again > 0 {
            violate("a second anti-entropy pass still moved \(again) key(s)")
        }
        for span in vnodeSpans {
            let replicas = ring.preferenceList(for: Token(span.end)).map(nodeIndex)
            let digests = replicas.map { try? nodes[$0].store.merkleDigest(of: span) }
            if Set(digests.map { $0 ?? 0 }).count > 1 || digests.contains(nil) {
                violate("replicas \(replicas.map { nodes[$0].id }) of \(span) differ after anti-entropy: \(digests)")
            }
        }
    }
}
