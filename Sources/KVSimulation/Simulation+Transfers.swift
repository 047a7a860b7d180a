import Foundation
import KVCore
import KVNode
import KVStorage

/// Range transfers in the simulator: each receiving node drives the production `RangeTransfer` one step
/// at a time through simulated messages, and each old owner drops the pieces it lists.
///
/// With keyspaces, each keyspace moves its own ranges on its own ring, as `kvd`'s `RangeStreamer` lanes
/// do: the keyspace's `RangeTransfer` runs against the map as the keyspace sees it
/// (`ClusterMap.viewed(as:)`), pulls from and applies to the keyspace's store (`NodeKeyspaces`), and
/// keeps its checkpoint and held ranges in that store's metadata; the lanes go one after the other,
/// the default first, and the node proposes `.streamed` only once every keyspace's ranges are in and
/// verified. Drops run per keyspace likewise.
extension Simulation {
    // MARK: - Receiving ranges

    /// What a node does with its map now: receive the ranges it must take over, or drop the ones it no
    /// longer keeps. One step at a time: a page in flight or a decision running waits.
    func streamStep(_ index: Int) {
        let stream = membership.streams[index]
        guard nodes[index].isUp, stream.inFlight == nil, stream.proposal == nil, now >= stream.notBefore else { return }
        let map = membership.acceptors[index].committed
        if map.streaming.contains(nodes[index].id) {
            receive(index, map)
        } else {
            for keyspace in keyspaceIDs(of: map) {
                dropRangesNoLongerHeld(index, map, keyspace: keyspace)
            }
        }
    }

    /// The production `RangeTransfer` of keyspace `keyspace` in the node's map (`map` as the keyspace
    /// sees it), resumed from the keyspace's durable checkpoint.
    func transfer(_ index: Int, _ map: ClusterMap, keyspace: UInt32) -> RangeTransfer {
        let view = viewed(map, as: keyspace)
        var transfer = RangeTransfer(
            node: nodes[index].id, map: view, changeID: membership.changeID(view),
            resuming: loadCheckpoint(index, keyspace: keyspace))
        transfer.switchesBeforeStreaming = configuration.mutation == .switchBeforeStream
        return transfer
    }

    /// Drives each keyspace's transfer in turn, in the order of the production `KeyspaceTransfers` (the
    /// default first), until one waits; proposes `.streamed` when it says so (once every keyspace's
    /// ranges are in and verified).
    func receive(_ index: Int, _ map: ClusterMap) {
        var transfers = KeyspaceTransfers(map: map)
        transfers.reportsAfterDefaultOnly = configuration.mutation == .reportAfterDefaultKeyspaceOnly
        while case .receive(let keyspace) = transfers.step {
            guard receive(index, map, keyspace: keyspace.id) else { return }
            transfers.received(keyspace.id)
        }
        proposeStreamed(index, map)
    }

    /// Drives keyspace `keyspace`'s `RangeTransfer` one step: asks a page, or verifies. True once its
    /// ranges are all in and verified (the transfer reports).
    func receive(_ index: Int, _ map: ClusterMap, keyspace: UInt32) -> Bool {
        let id = nodes[index].id
        var transfer = transfer(index, map, keyspace: keyspace)
        if transfer.isNew {
            saveCheckpoint(index, transfer.checkpoint, keyspace: keyspace)
            log(
                "\(id) receives \(transfer.checkpoint.ranges.count) range(s)\(inKeyspace(keyspace)) for epoch \(map.epoch): \(map.changeSummary)"
            )
        }
        switch transfer.step {
        case .pull(let position, let candidates):
            let progress = transfer.checkpoint.ranges[position]
            guard !candidates.isEmpty else {
                log("\(id) has no old replica to receive \(progress.range)\(inKeyspace(keyspace)) from")
                return false
            }
            let source = candidates[membership.streams[index].sourceCursor % candidates.count]
            membership.nextRequest += 1
            let request = membership.nextRequest
            membership.streams[index].inFlight = StreamState.InFlight(
                request: request, keyspace: keyspace, position: position, source: source)
            sendMembership(
                .streamRequest(request: request, range: progress.range, after: progress.after, keyspace: keyspace),
                from: .node(index), to: .node(nodeIndex(source)))
            queue.push(
                .membership(.streamTimeout(node: index, request: request)),
                at: now + requestDeadlineMillis)
            return false
        case .verify:
            // Whatever the source lacked or a page missed is copied now from the old replicas that
            // are up (a comparison with one that is down fails, as the node's does).
            var compared: [TokenRangeSpan: Int] = [:]
            for progress in transfer.checkpoint.ranges {
                for replica in transfer.sources(of: progress.range).map(nodeIndex) where nodes[replica].isUp {
                    compare(progress.range, local: index, remote: replica, keyspace: keyspace)
                    compared[progress.range, default: 0] += 1
                }
            }
            if let range = transfer.verified(compared: compared) {
                log(
                    "\(id) cannot compare \(range)\(inKeyspace(keyspace)) with enough of its old replicas: too many down"
                )
                return false
            }
            saveCheckpoint(index, transfer.checkpoint, keyspace: keyspace)
            return true
        case .report:
            return true
        }
    }

    func receivePage(_ index: Int, request: Int, _ result: Result<StreamPage, ReplyFailure>) {
        guard let inFlight = membership.streams[index].inFlight, inFlight.request == request else { return }
        membership.streams[index].inFlight = nil
        let map = membership.acceptors[index].committed
        guard case .success(let page) = result else {
            if case .failure(let failure) = result {
                log("\(nodes[index].id) could not stream from \(inFlight.source): \(failure.reason)")
            }
            sourceFailed(index)
            return
        }
        let keyspace = inFlight.keyspace
        var transfer = transfer(index, map, keyspace: keyspace)
        guard !transfer.isNew, map.streaming.contains(nodes[index].id) else { return }
        for streamed in page.records {
            do {
                _ = try served(index, keyspace).replica.put(key: streamed.key, record: streamed.record)
                observe(node: index, key: streamed.key, keyspace: keyspace)
            } catch {
                violate("\(nodes[index].id) cannot apply a streamed record: \(error)")
            }
        }
        statistics.keysStreamed += page.records.count
        statistics.keysStreamedByKeyspace[keyspace, default: 0] += page.records.count
        transfer.applied(
            index: inFlight.position, count: page.records.count, lastKey: page.records.last?.key, done: page.done,
            from: inFlight.source)
        saveCheckpoint(index, transfer.checkpoint, keyspace: keyspace)
        streamStep(index)
    }

    /// The source did not answer or failed: the next attempt asks the range's next source.
    func sourceFailed(_ index: Int) {
        membership.streams[index].inFlight = nil
        membership.streams[index].sourceCursor += 1
    }

    func proposeStreamed(_ index: Int, _ map: ClusterMap) {
        do {
            let proposed = try map.applying(.streamed(node: nodes[index].id))
            log("\(nodes[index].id) proposes that it received its ranges (epoch \(proposed.epoch))")
            membership.streams[index].proposal = startProposal(owner: .node(index), base: map, proposed: proposed)
        } catch {
            log("\(nodes[index].id) cannot propose streamed: \(error)")
        }
    }

    func loadCheckpoint(_ index: Int, keyspace: UInt32) -> RangeTransfer.Checkpoint? {
        guard let bytes = try? served(index, keyspace).store.metadata(MembershipState.checkpointName) else {
            return nil
        }
        return try? JSONDecoder().decode(RangeTransfer.Checkpoint.self, from: Data(bytes))
    }

    func saveCheckpoint(_ index: Int, _ checkpoint: RangeTransfer.Checkpoint, keyspace: UInt32) {
        do {
            try served(index, keyspace).store.setMetadata(
                MembershipState.checkpointName, Array(try JSONEncoder().encode(checkpoint)))
        } catch {
            violate("\(nodes[index].id) cannot record its transfer\(inKeyspace(keyspace)): \(error)")
        }
    }

    /// The node's transfer progress, per keyspace.
    func checkpointSummary(_ index: Int) -> String {
        let lanes = keyspaceIDs(of: membership.acceptors[index].committed).map { keyspace in
            guard let checkpoint = loadCheckpoint(index, keyspace: keyspace) else {
                return "no transfer recorded\(inKeyspace(keyspace))"
            }
            let done = checkpoint.ranges.count { $0.done }
            return
                "\(done)/\(checkpoint.ranges.count) ranges\(inKeyspace(keyspace)), \(checkpoint.verified ? "verified" : "not verified")"
        }
        return lanes.joined(separator: "; ") + (nodes[index].isUp ? "" : ", down")
    }

    // MARK: - Dropping ranges

    /// The ranges `node` keeps in `map` (the production `RangeTransfer.kept`; `map` as a keyspace sees it).
    func keptRanges(_ index: Int, in map: ClusterMap) -> [TokenRangeSpan]? {
        RangeTransfer.kept(by: nodes[index].id, current: membership.ring(of: map), next: membership.nextRing(of: map))
    }

    /// The production `RangeTransfer.drops` of keyspace `keyspace` (on `map` as the keyspace sees it):
    /// each piece no longer kept is compared with each of its current owners, and deleted only when every
    /// comparison completed.
    func dropRangesNoLongerHeld(_ index: Int, _ map: ClusterMap, keyspace: UInt32) {
        let view = viewed(map, as: keyspace)
        guard let kept = keptRanges(index, in: view) else { return }
        guard let held = loadHeld(index, keyspace: keyspace) else {
            saveHeld(index, kept, keyspace: keyspace)
            return
        }
        let drops = RangeTransfer.drops(held: held, kept: kept, node: nodes[index].id, ring: membership.ring(of: view))
        guard !drops.isEmpty else {
            if Set(held) != Set(kept) { saveHeld(index, kept, keyspace: keyspace) }
            return
        }
        var remaining = held
        let store = served(index, keyspace).store
        for drop in drops {
            if let down = drop.owners.first(where: { !nodes[nodeIndex($0)].isUp }) {
                log("\(nodes[index].id) keeps \(drop.piece)\(inKeyspace(keyspace)) until \(down) is back")
                return
            }
            let held = (try? store.merkleListing(of: drop.piece)) ?? []
            for owner in drop.owners {
                compare(drop.piece, local: index, remote: nodeIndex(owner), keyspace: keyspace)
            }
            self.drop(index, drop.piece, held: held, owners: drop.owners, keyspace: keyspace)
            remaining = TokenRangeSpan.subtracting([drop.piece], from: remaining)
            saveHeld(index, remaining, keyspace: keyspace)
        }
        saveHeld(index, kept, keyspace: keyspace)
    }

    /// Deletes `piece` of keyspace `keyspace` from a node; every owner must hold what the node held before
    /// comparing with them (`held`), or newer, by then. (What it pulled from one owner need not reach
    /// the others.)
    func drop(_ index: Int, _ piece: TokenRangeSpan, held: [MerkleEntry], owners: [String], keyspace: UInt32) {
        let store = served(index, keyspace).store
        do {
            let listing = try store.merkleListing(of: piece)
            for entry in held {
                for owner in owners {
                    let held = view(nodeIndex(owner), keyspace).durableRecord(entry.key)?.version
                    if held.map({ $0 < entry.version }) ?? true {
                        violate(
                            "\(nodes[index].id) dropped \(piece)\(inKeyspace(keyspace)) holding \(describe(entry.key, keyspace: keyspace)) at \(entry.version) while its owner \(owner) holds \(held.map { "\($0)" } ?? "nothing")"
                        )
                    }
                }
            }
            let deleted = try store.deleteRange(piece)
            for entry in listing {
                // Gone on purpose: if the node replicates the key again, it may receive an older version.
                highestSeen[NodeKey(node: index, key: entry.key, keyspace: keyspace)] = nil
            }
            statistics.rangesDropped += 1
            log(
                "\(nodes[index].id) dropped \(piece)\(inKeyspace(keyspace)) (\(deleted) key(s)), compared with \(owners)"
            )
        } catch {
            violate("\(nodes[index].id) cannot drop \(piece)\(inKeyspace(keyspace)): \(error)")
        }
    }

    func loadHeld(_ index: Int, keyspace: UInt32) -> [TokenRangeSpan]? {
        guard let bytes = try? served(index, keyspace).store.metadata(MembershipState.heldName),
            let numbers = try? JSONDecoder().decode([UInt64].self, from: Data(bytes)), numbers.count % 2 == 0
        else { return nil }
        return stride(from: 0, to: numbers.count, by: 2).map {
            TokenRangeSpan(start: numbers[$0], end: numbers[$0 + 1])
        }
    }

    func saveHeld(_ index: Int, _ spans: [TokenRangeSpan], keyspace: UInt32) {
        do {
            let bytes = try JSONEncoder().encode(spans.flatMap { [$0.start, $0.end] })
            try served(index, keyspace).store.setMetadata(MembershipState.heldName, Array(bytes))
        } catch {
            violate("\(nodes[index].id) cannot record the ranges it holds\(inKeyspace(keyspace)): \(error)")
        }
    }
}
