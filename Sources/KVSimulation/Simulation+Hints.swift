import KVCore
import KVNode
import KVStorage

/// Hinted handoff in the simulator: fallbacks store hints in the production `HintStore`
/// (`InMemoryStore`, synced like the data, so it survives crashes), and replay them with the
/// production `HintReplayRound` over simulated node-to-node messages.
extension Simulation {
    /// A `Hint` arriving at a fallback: the production `HintAdmission` over the node's committed map,
    /// its hint log and its store's repair marks.
    func storeHint(at node: Int, target: String, key: [UInt8], record: StoredRecord, keyspace: UInt32) -> Result<
        (stored: Bool, clock: UInt64), ReplyFailure
    > {
        guard nodes[node].isUp else { return .failure(ReplyFailure(reason: "connection refused")) }
        var admission = HintAdmission(nodeID: nodes[node].id, queueMax: configuration.hintQueueMax)
        admission.marksNothing = configuration.mutation == .refusedHintMarksNothing
        // The keyspace's map, ring and store (its repair marks) as the node serves it.
        let served = served(node, keyspace)
        let admitted: (outcome: HintAdmission.Outcome, clock: UInt64)
        do {
            admitted = try admission.admit(
                target: target, key: key, record: record, keyspace: keyspace, map: served.map,
                ring: membership.ring(of: served.map), replica: served.replica, hints: nodes[node].hints,
                marks: served.store, nowMillis: nodes[node].localNow)
        } catch {
            log("\(nodes[node].id) refuses a hint for \(target): \(error)")
            return .failure(ReplyFailure(reason: "\(error)"))
        }
        switch admitted.outcome {
        case .stored:
            statistics.hintsStored += 1
            hintsStored.append(HintRecord(target: target, key: key, version: record.version, keyspace: keyspace))
            log("\(nodes[node].id) stores a hint for \(target) \(describe(key, keyspace: keyspace)) \(record.version)")
            return .success((true, admitted.clock))
        case .refused(let why, let mark):
            statistics.hintsRefused += 1
            hintsMissed.append(
                MissedHint(holder: node, target: target, key: key, version: record.version, keyspace: keyspace))
            log("\(nodes[node].id) refuses a hint for \(target) (\(why)): \(mark)")
            return .success((false, admitted.clock))
        }
    }

    /// Every replay interval, an up node starts a round for each target it holds hints for and has no
    /// round running; the ticks go on while clients run or hints remain.
    func replayTick(_ index: Int) {
        let queues = nodes[index].hints.hintQueueSizes()
        if nodes[index].isUp {
            for target in queues.keys.sorted() where nodes[index].rounds[target] == nil {
                startReplay(index, target: target)
            }
        }
        if clientsActive || !queues.isEmpty || !nodes[index].rounds.isEmpty {
            queue.push(.replayTick(node: index), at: now + configuration.replayInterval.wholeMillisecondsClamped)
        }
    }

    func startReplay(_ index: Int, target: String) {
        let batch: [(id: HintID, hint: StoredHint)]
        do {
            batch = try nodes[index].hints.hints(for: target, limit: configuration.replayBatch)
        } catch {
            violate("\(nodes[index].id) cannot read its hints for \(target): \(error)")
            return
        }
        nextReplayRound += 1
        var round = HintReplayRound(
            batch: batch, nowMillis: nodes[index].localNow,
            window: configuration.hintWindow,
            targetReachable: true, concurrency: configuration.replayConcurrency)
        round.deletesOnSend = configuration.mutation == .deleteHintsBeforeAcknowledgement
        let actions = round.start()
        nodes[index].rounds[target] = ReplayRound(id: nextReplayRound, round: round)
        performReplay(index, target: target, actions)
    }

    /// An answer (or a timeout) for a replayed hint of round `round`; ignored when that round is over
    /// or was lost in a crash.
    func feedReplay(_ index: Int, target: String, round id: Int, _ event: HintReplayRound.Event) {
        guard nodes[index].isUp, var running = nodes[index].rounds[target], running.id == id else { return }
        let actions = running.round.handle(event)
        nodes[index].rounds[target] = running
        performReplay(index, target: target, actions)
    }

    func performReplay(_ index: Int, target: String, _ actions: [HintReplayRound.Action]) {
        guard let running = nodes[index].rounds[target] else { return }
        let holder = nodes[index].id
        for action in actions {
            switch action {
            case .expire(let id, let hint):
                deleteHint(index, id, hint)
                statistics.hintsExpired += 1
                hintsExpired.insert(
                    HintRecord(target: target, key: hint.key, version: hint.record.version, keyspace: hint.keyspace))
                let served = served(index, hint.keyspace)
                let mark = RepairMarking.markDue(
                    target: target, key: hint.key, ring: membership.ring(of: served.map), in: served.store,
                    atMillis: nodes[index].localNow)
                hintsMissed.append(
                    MissedHint(
                        holder: index, target: target, key: hint.key, version: hint.record.version,
                        keyspace: hint.keyspace))
                log("\(holder) expires the hint for \(target) \(show(hint.key)) \(hint.record.version): \(mark)")
            case .send(let id, let hint):
                send(
                    Envelope(
                        client: Envelope.nodeToNode, node: nodeIndex(target), operation: -1, attempt: 0,
                        payload: .replay(key: hint.key, record: hint.record, round: running.id, id: id),
                        holder: index, keyspace: hint.keyspace))
                queue.push(
                    .replayTimeout(node: index, target: target, round: running.id, id: id),
                    at: now + requestDeadlineMillis)
            case .delete(let id, let hint):
                deleteHint(index, id, hint)
                statistics.hintsReplayed += 1
                log("\(holder) replayed the hint for \(target) \(show(hint.key)) \(hint.record.version)")
            }
        }
        if nodes[index].rounds[target]?.round.isFinished == true {
            nodes[index].rounds[target] = nil
        }
    }

    /// Deletes a hint; unless it expired, its target must hold its write (or a newer one) on disk by
    /// then: a hint leaves its holder only once it is safe elsewhere.
    func deleteHint(_ index: Int, _ id: HintID, _ hint: StoredHint) {
        let record = HintRecord(
            target: hint.target, key: hint.key, version: hint.record.version, keyspace: hint.keyspace)
        let expired =
            nodes[index].localNow > hint.storedAtMillis
            && nodes[index].localNow - hint.storedAtMillis > configuration.hintWindow.wholeMillisecondsClamped
        if !expired {
            let held = view(nodeIndex(hint.target), hint.keyspace).durableRecord(hint.key)?.version
            if held.map({ $0 < record.version }) ?? true {
                violate(
                    "\(nodes[index].id) deleted its hint for \(hint.target) (\(show(hint.key)) at \(record.version)) but the target holds \(held.map { "\($0)" } ?? "nothing")"
                )
            }
        }
        do {
            try nodes[index].hints.deleteHint(id)
        } catch {
            violate("\(nodes[index].id) cannot delete a hint: \(error)")
        }
    }

    /// Targets holding a hint of `key` at `version` or newer, on any node: with a sloppy quorum these
    /// count as copies of an acknowledged write until the hint is replayed.
    func hintedTargets(of key: [UInt8], keyspace: UInt32, atLeast version: Version) -> Set<String> {
        var targets: Set<String> = []
        for node in nodes {
            for target in node.hints.hintQueueSizes().keys {
                let held = (try? node.hints.hints(for: target, limit: configuration.hintQueueMax)) ?? []
                if held.contains(where: {
                    $0.hint.key == key && $0.hint.keyspace == keyspace && $0.hint.record.version >= version
                }) {
                    targets.insert(target)
                }
            }
        }
        return targets
    }

    /// At the end: every hint queue is empty, and every hint stored reached its target (which holds
    /// that version or newer), unless it expired; a hint refused or expired left its holder a repair
    /// mark over the key's range for its target, unless the write reached the target anyway.
    func checkHintsDrained() {
        for missed in hintsMissed {
            let target = nodeIndex(missed.target)
            let targetStore = view(target, missed.keyspace)
            if let held = targetStore.durableRecord(missed.key)?.version, held >= missed.version { continue }
            let token = Token(key: missed.key)
            let marked = view(missed.holder, missed.keyspace).rangesDue().contains {
                $0.replica == missed.target && $0.range.contains(token)
            }
            if !marked {
                violate(
                    "\(nodes[missed.holder].id) refused or expired a hint for \(missed.target) (\(describe(missed.key, keyspace: missed.keyspace)) at \(missed.version)) and marked no range for anti-entropy; the target holds \(targetStore.durableRecord(missed.key).map { "\($0.version)" } ?? "nothing")"
                )
            }
        }
        for node in nodes {
            let queued = node.hints.hintQueueSizes()
            if !queued.isEmpty {
                violate("\(node.id) still holds hints at the end: \(queued.sorted { $0.key < $1.key })")
            }
        }
        for hint in hintsStored where !hintsExpired.contains(hint) {
            let target = nodeIndex(hint.target)
            let held = view(target, hint.keyspace).durableRecord(hint.key)?.version
            if held.map({ $0 < hint.version })
                ?? !purgedAtLeast(hint.version, node: target, key: hint.key, keyspace: hint.keyspace)
            {
                violate(
                    "the hint for \(hint.target) (\(show(hint.key)) at \(hint.version)) never reached it: it holds \(held.map { "\($0)" } ?? "nothing")"
                )
            }
        }
    }
}
