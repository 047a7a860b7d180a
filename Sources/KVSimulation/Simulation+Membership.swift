import Foundation
import KVCore
import KVNode
import KVStorage

/// Membership changes in the simulator, driving the production values `kvd`'s `Membership` and
/// `RangeStreamer` and the SDK's `KVClient` drive:
///
/// - a simulated operator makes each change of `MembershipProfile.changes` on the latest map with the
///   production `ClusterMap.applying(_:)`, and decides it with the production `MapProposer` against
///   every node's production `MapAcceptor` (kept across crashes, as `kvd` fsyncs it), through
///   `MapPrepare`/`MapAccept`/`MapCommit` messages that are lost, duplicated and delayed like any;
/// - nodes and clients learn maps by gossip: a ping carries the epoch, a later epoch is fetched;
/// - a node listed in the map's `streaming` drives the production `RangeTransfer`: it pulls each range
///   page by page (`SimulatedStore.streamPage`, through messages) from its sources, recording the
///   transfer's checkpoint in the store's metadata after every page (it survives a crash), compares
///   each received range with its old replicas (the production `MerkleComparison`, as anti-entropy
///   does) until a majority compared, then proposes `.streamed` with its own `MapProposer`; old owners
///   drop the pieces `RangeTransfer.drops` lists after comparing each with its current owners;
/// - nodes refuse client requests they do not admit (`notReplica`, by the production
///   `ReplicaAdmission` of their map), and a refused client fetches that node's map; writes during a
///   change need a quorum in each ring (the production `WritePlan`, as the SDK plans them) and state the
///   epoch they were planned with;
/// - as the SDK, a client whose try failed waits for the map it is fetching (at most a request
///   deadline) and runs the operation again on a newer map when the production `NewerMapRetry` allows
///   it (`Simulation+NewerMapRetry.swift`);
/// - once the clients are done and the membership settled, late clients start with faults off: a
///   fresh one from the first map (it fetches the current map first) and a sleeper from a map several
///   epochs old (it learns only from refusals); each reads and writes every key and must succeed
///   (`Simulation+LateClients.swift`).
///
/// Simplifications: the operator reads the maps of the nodes that are up directly (its `ClusterMap`
/// fetch is not a message), and Merkle comparisons (verifying a received range, confirming a drop) run
/// in one step against the peer's store, as `Simulation+AntiEntropy` does, when the peer is up.
extension Simulation {
    // MARK: - Set-up and ticks

    func startMembership() {
        let profile = configuration.membershipProfile!
        queue.push(.membership(.operatorTick), at: now + 200 + random.next() % profile.operatorTickMillis)
        for index in nodes.indices {
            queue.push(.membership(.nodeGossip(node: index)), at: now + 1 + random.next() % profile.nodeGossipMillis)
            queue.push(.membership(.streamTick(node: index)), at: now + 1 + random.next() % profile.streamTickMillis)
        }
        for index in clients.indices {
            queue.push(
                .membership(.clientGossip(client: index)), at: now + 1 + random.next() % profile.clientGossipMillis)
        }
    }

    func handleMembership(_ event: MembershipEvent) {
        let profile = configuration.membershipProfile!
        switch event {
        case .operatorTick:
            operatorTick()
        case .nodeGossip(let index):
            if nodes[index].isUp {
                let map = membership.acceptors[index].committed
                for peer in map.nodes where peer.state != .removed && peer.id != nodes[index].id {
                    sendMembership(.ping(epoch: map.epoch), from: .node(index), to: .node(nodeIndex(peer.id)))
                }
            }
            if !membership.quiet {
                queue.push(.membership(.nodeGossip(node: index)), at: now + profile.nodeGossipMillis)
            }
        case .clientGossip(let index):
            let candidates = membership.clients[index].nodes.filter { $0.state != .removed }
            if !candidates.isEmpty {
                let peer = candidates[Int(random.next() % UInt64(candidates.count))]
                sendMembership(
                    .ping(epoch: membership.clients[index].epoch), from: .client(index), to: .node(nodeIndex(peer.id)))
            }
            if !membership.quiet {
                queue.push(.membership(.clientGossip(client: index)), at: now + profile.clientGossipMillis)
            }
        case .streamTick(let index):
            streamStep(index)
            if !membership.quiet {
                queue.push(.membership(.streamTick(node: index)), at: now + profile.streamTickMillis)
            }
        case .streamTimeout(let index, let request):
            guard membership.streams[index].inFlight?.request == request else { return }
            log("\(nodes[index].id) stream request \(request) had no answer")
            sourceFailed(index)
        case .mapWaitOver(let index, let operation):
            mapWaitOver(index, operation: operation)
        case .firstMapWaitOver(let index):
            guard clients[index].awaitsFirstMap else { return }
            log(
                "\(clients[index].name) had no map from the node it asked: starts with epoch \(membership.clients[index].epoch)"
            )
            clients[index].awaitsFirstMap = false
            startOperation(index)
        case .proposalTimeout(let id, let phase):
            guard let run = membership.proposals[id], run.phase == phase else { return }
            for voter in run.proposer.voters {
                guard var current = membership.proposals[id] else { return }
                let step = current.proposer.failed(voter, "no answer")
                membership.proposals[id] = current
                proposalStep(id, step)
            }
        }
    }

    // MARK: - The operator

    /// Starts the next planned change when nothing is changing; once clients are done, stops the
    /// membership ticks when every node settled (or the settle time is up, a violation).
    func operatorTick() {
        let profile = configuration.membershipProfile!
        if clientsActive, membership.operatorAttempt == nil, membership.planned < profile.changes.count {
            let maps = nodes.indices.filter { nodes[$0].isUp }.map { membership.acceptors[$0].committed }
            if let base = maps.max(by: { $0.epoch < $1.epoch }), !base.isChanging {
                let change = profile.changes[membership.planned]
                do {
                    let proposed = try base.applying(change)
                    log("operator proposes epoch \(proposed.epoch): \(change)")
                    if membership.sleeperMap == nil {
                        membership.sleeperMap = membership.clients.first
                    }
                    membership.operatorAttempt = startProposal(owner: .operator, base: base, proposed: proposed)
                } catch {
                    log("operator cannot make \(change) on epoch \(base.epoch): \(error)")
                    membership.planned += 1
                }
            }
        }
        if !clientsActive {
            let unsettled = unsettledReasons()
            if unsettled.isEmpty {
                membership.quiet = true
                log("membership settled at epoch \(membership.latest.epoch)")
                return
            }
            let deadline = membership.settleDeadline ?? now + profile.settleMillis
            membership.settleDeadline = deadline
            if now > deadline {
                membership.quiet = true
                membership.settleFailed = true
                violate(
                    "membership did not settle within \(profile.settleMillis) ms after the clients finished: \(unsettled.joined(separator: "; "))"
                )
                return
            }
        }
        queue.push(.membership(.operatorTick), at: now + profile.operatorTickMillis)
    }

    /// Why the cluster is not settled yet: a change in progress, nodes behind the latest map, ranges not
    /// dropped, a decision running. Empty when settled.
    func unsettledReasons() -> [String] {
        var reasons: [String] = []
        let latest = membership.latest
        if latest.isChanging {
            let progress = latest.streaming.map { id in "\(id): \(checkpointSummary(nodeIndex(id)))" }
            reasons.append(
                "epoch \(latest.epoch) still has a change in progress (\(latest.changeSummary)) [\(progress.joined(separator: ", "))]"
            )
        }
        if !membership.proposals.isEmpty {
            reasons.append("\(membership.proposals.count) map decision(s) still running")
        }
        for node in latest.nodes {
            let index = nodeIndex(node.id)
            let epoch = membership.acceptors[index].committed.epoch
            if epoch != latest.epoch {
                reasons.append("\(node.id) is at epoch \(epoch), not \(latest.epoch)")
            } else if let held = loadHeld(index), let kept = keptRanges(index, in: latest), Set(held) != Set(kept) {
                reasons.append("\(node.id) still holds ranges it does not keep")
            }
        }
        return reasons
    }

    // MARK: - Deciding a map

    /// Starts deciding `proposed` (epoch E + 1) among the voters of `base`; returns the decision's id.
    func startProposal(owner: Endpoint, base: ClusterMap, proposed: ClusterMap) -> Int {
        membership.nextProposal += 1
        let id = membership.nextProposal
        let round: UInt64 =
            if case .node(let index) = owner { nodes[index].localNow } else { now }
        let ballot = Ballot(round: round, proposer: "\(name(owner))#\(id)")
        let proposer = MapProposer(
            base: base, proposed: proposed, ballot: ballot, verifier: SimulatedMapVotes(voter: ""))
        membership.proposals[id] = ProposalRun(proposer: proposer, owner: owner, phase: 1)
        for voter in proposer.voters {
            sendMembership(
                .prepare(proposal: id, epoch: proposed.epoch, ballot: ballot), from: owner, to: .node(nodeIndex(voter)))
        }
        queue.push(
            .membership(.proposalTimeout(proposal: id, phase: 1)),
            at: now + UInt64(configuration.requestDeadline / .milliseconds(1)))
        return id
    }

    func proposalStep(_ id: Int, _ step: MapProposer.Step) {
        guard var run = membership.proposals[id] else { return }
        switch step {
        case .wait:
            return
        case .accept(let proposal):
            run.phase = 2
            membership.proposals[id] = run
            for voter in run.proposer.voters {
                sendMembership(.accept(proposal: id, proposal), from: run.owner, to: .node(nodeIndex(voter)))
            }
            queue.push(
                .membership(.proposalTimeout(proposal: id, phase: 2)),
                at: now + UInt64(configuration.requestDeadline / .milliseconds(1)))
        case .chosen(let map, let proof):
            finishProposal(id, run)
            let own = map == run.proposer.proposed
            log(
                "\(name(run.owner)) decided epoch \(map.epoch)\(own ? "" : " (another attempt's map)"): \(map.changeSummary)"
            )
            recordMap(map)
            if own, run.owner == .operator {
                membership.planned += 1
            }
            for node in map.nodes {
                sendMembership(.commit(map, proof), from: run.owner, to: .node(nodeIndex(node.id)))
            }
        case .failed(let error):
            finishProposal(id, run)
            log("\(name(run.owner)) could not decide epoch \(run.proposer.proposed.epoch): \(error)")
        }
    }

    func finishProposal(_ id: Int, _ run: ProposalRun) {
        membership.proposals[id] = nil
        switch run.owner {
        case .operator:
            membership.operatorAttempt = nil
        case .node(let index):
            membership.streams[index].proposal = nil
            // A rival receiver's proposal may be running: retry after a random pause.
            membership.streams[index].notBefore = now + 50 + random.next() % 300
        case .client:
            break
        }
    }

    /// A map was chosen or adopted: it must be the only map of its epoch.
    func recordMap(_ map: ClusterMap) {
        if let known = membership.adopted[map.epoch] {
            if known != map {
                violate(
                    "two maps for epoch \(map.epoch): \(known.changeSummary) \(known.nodes.map { "\($0.id):\($0.state)" }) and \(map.changeSummary) \(map.nodes.map { "\($0.id):\($0.state)" })"
                )
            }
            return
        }
        membership.adopted[map.epoch] = map
        statistics.epochsChosen = membership.adopted.count - 1
        if map.epoch > membership.latest.epoch {
            membership.latest = map
            ring = membership.ring(of: map)
        }
    }

    // MARK: - Messages

    func sendMembership(_ message: MembershipMessage, from: Endpoint, to: Endpoint) {
        var client = Envelope.nodeToNode
        var node = 0
        for side in [from, to] {
            switch side {
            case .client(let index): client = index
            case .node(let index): node = index
            case .operator: break
            }
        }
        send(
            Envelope(
                client: client, node: node, operation: -1, attempt: 0,
                payload: .membership(message, from: from, to: to)))
    }

    func deliverMembership(_ message: MembershipMessage, from: Endpoint, to: Endpoint) {
        switch to {
        case .operator:
            if case .vote(let id, let phase, let voter, let result, let signature) = message {
                feedVote(id, phase, voter, result, signature)
            }
        case .client(let index):
            guard case .node(let node) = from else { return }
            switch message {
            case .pong(let epoch) where epoch > membership.clients[index].epoch:
                refreshMap(ofClient: index, from: node)
            case .map(let map, _):
                // Clients take the latest map a node holds without a proof check, as the SDK does.
                if map.epoch > membership.clients[index].epoch {
                    log("\(clients[index].name) installs epoch \(map.epoch)")
                    membership.clients[index] = map
                }
                mapArrived(atClient: index, from: node)
            default:
                break
            }
        case .node(let index):
            guard nodes[index].isUp else {
                // A client or voter asking a crashed node is refused at once; the rest is lost.
                switch message {
                case .prepare(let id, _, _), .accept(let id, _):
                    sendMembership(
                        .vote(
                            proposal: id, phase: message.phase, voter: nodes[index].id,
                            .failure(ReplyFailure(reason: "connection refused")), signature: nil), from: to, to: from)
                case .streamRequest(let request, _, _):
                    sendMembership(
                        .streamPage(request: request, .failure(ReplyFailure(reason: "connection refused"))),
                        from: to, to: from)
                default:
                    break
                }
                return
            }
            deliverToNode(index, message, from: from)
        }
    }

    func deliverToNode(_ index: Int, _ message: MembershipMessage, from: Endpoint) {
        let me = Endpoint.node(index)
        let epoch = membership.acceptors[index].committed.epoch
        switch message {
        case .prepare(let id, let proposedEpoch, let ballot):
            let vote = membership.acceptors[index].prepare(epoch: proposedEpoch, ballot: ballot)
            sendMembership(
                .vote(proposal: id, phase: 1, voter: nodes[index].id, .success(vote), signature: nil), from: me,
                to: from)
        case .accept(let id, let proposal):
            let (vote, signature) = membership.acceptors[index].accept(
                proposal, signer: SimulatedMapVotes(voter: nodes[index].id))
            sendMembership(
                .vote(proposal: id, phase: 2, voter: nodes[index].id, .success(vote), signature: signature), from: me,
                to: from)
        case .vote(let id, let phase, let voter, let result, let signature):
            feedVote(id, phase, voter, result, signature)
        case .commit(let map, let proof):
            // Behind by more than one epoch: fetch the maps in between from the committing node.
            if adopt(index, map, proof: proof) == .gap(next: epoch + 1), case .node = from {
                sendMembership(.fetch(epoch: epoch + 1), from: me, to: from)
            }
        case .map(let map, let proof):
            // A node's gossip fetch: adopted, it asks the same node for the epoch after.
            if let proof, adopt(index, map, proof: proof) == .adopted {
                sendMembership(.fetch(epoch: map.epoch + 1), from: me, to: from)
            }
        case .ping(let theirs):
            sendMembership(.pong(epoch: epoch), from: me, to: from)
            if theirs > epoch, case .node = from { sendMembership(.fetch(epoch: epoch + 1), from: me, to: from) }
        case .pong(let theirs):
            if theirs > epoch { sendMembership(.fetch(epoch: epoch + 1), from: me, to: from) }
        case .fetch(let wanted):
            let acceptor = membership.acceptors[index]
            if wanted == 0 || wanted == acceptor.committed.epoch {
                sendMembership(.map(acceptor.committed, proof: acceptor.proof), from: me, to: from)
            } else if let kept = membership.histories[index][wanted] {
                sendMembership(.map(kept.map, proof: kept.proof), from: me, to: from)
            }
        case .streamRequest(let request, let range, let after):
            let answer: Result<StreamPage, ReplyFailure>
            do {
                answer = .success(
                    try nodes[index].store.streamPage(
                        in: range, after: after, recordsMax: configuration.membershipProfile!.pageRecordsMax,
                        bytesMax: 1 << 20))
            } catch {
                answer = .failure(ReplyFailure(reason: "\(error)"))
            }
            sendMembership(.streamPage(request: request, answer), from: me, to: from)
        case .streamPage(let request, let result):
            receivePage(index, request: request, result)
        }
    }

    func feedVote(
        _ id: Int, _ phase: Int, _ voter: String, _ result: Result<MapVote, ReplyFailure>,
        _ signature: MapVoteSignature?
    ) {
        guard var run = membership.proposals[id], run.phase == phase else { return }
        if case .node(let owner) = run.owner, !nodes[owner].isUp { return }
        let step: MapProposer.Step
        switch (phase, result) {
        case (1, .success(let vote)): step = run.proposer.promise(from: voter, vote)
        case (_, .success(let vote)): step = run.proposer.accepted(from: voter, vote, signature: signature)
        case (_, .failure(let failure)): step = run.proposer.failed(voter, failure.reason)
        }
        membership.proposals[id] = run
        proposalStep(id, step)
    }

    /// A node learns a later map (a commit, or gossip) with the production rule: only the next
    /// epoch, with a majority's signatures.
    @discardableResult
    func adopt(_ index: Int, _ map: ClusterMap, proof: MapProof) -> MapLearning {
        let learning = membership.acceptors[index].learn(map, proof: proof, verifier: SimulatedMapVotes(voter: ""))
        switch learning {
        case .adopted:
            membership.histories[index][map.epoch] = (map, proof)
            log("\(nodes[index].id) adopts epoch \(map.epoch): \(map.changeSummary)")
            recordMap(map)
        case .refused(let reason):
            violate("\(nodes[index].id) refused a chosen map of epoch \(map.epoch): \(reason)")
        case .notNewer, .gap:
            break
        }
        return learning
    }

    /// Why `node` refuses a client's request for `key` (a write made with the map of `writeEpoch`):
    /// the production `ReplicaAdmission` of its map. Nil when it serves it (always, without membership).
    func refusal(at node: Int, key: [UInt8], write: Bool, writeEpoch: UInt64 = 0) -> ReplyFailure? {
        guard configuration.membershipProfile != nil else { return nil }
        var admission = membership.admission(of: nodes[node].id, in: membership.acceptors[node].committed)
        admission.servesReadsWhileReceiving = configuration.mutation == .readsWhileReceiving
        guard admission.refusal(Token(key: key), write: write, writeEpoch: writeEpoch) != nil else { return nil }
        return ReplyFailure(reason: ReplyFailure.notReplica)
    }

    func name(_ endpoint: Endpoint) -> String {
        switch endpoint {
        case .node(let index): nodes[index].id
        case .client(let index): clients[index].name
        case .operator: "operator"
        }
    }

    // MARK: - Clients

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
            dropRangesNoLongerHeld(index, map)
        }
    }

    /// The production `RangeTransfer` of the node's map, resumed from its durable checkpoint.
    func transfer(_ index: Int, _ map: ClusterMap) -> RangeTransfer {
        var transfer = RangeTransfer(
            node: nodes[index].id, map: map, changeID: membership.changeID(map), resuming: loadCheckpoint(index))
        transfer.switchesBeforeStreaming = configuration.mutation == .switchBeforeStream
        return transfer
    }

    /// Drives the node's `RangeTransfer` one step: asks a page, verifies, or reports.
    func receive(_ index: Int, _ map: ClusterMap) {
        let id = nodes[index].id
        var transfer = transfer(index, map)
        if transfer.isNew {
            saveCheckpoint(index, transfer.checkpoint)
            log(
                "\(id) receives \(transfer.checkpoint.ranges.count) range(s) for epoch \(map.epoch): \(map.changeSummary)"
            )
        }
        switch transfer.step {
        case .pull(let position, let candidates):
            let progress = transfer.checkpoint.ranges[position]
            guard !candidates.isEmpty else {
                log("\(id) has no old replica to receive \(progress.range) from")
                return
            }
            let source = candidates[membership.streams[index].sourceCursor % candidates.count]
            membership.nextRequest += 1
            let request = membership.nextRequest
            membership.streams[index].inFlight = StreamState.InFlight(
                request: request, position: position, source: source)
            sendMembership(
                .streamRequest(request: request, range: progress.range, after: progress.after), from: .node(index),
                to: .node(nodeIndex(source)))
            queue.push(
                .membership(.streamTimeout(node: index, request: request)),
                at: now + UInt64(configuration.requestDeadline / .milliseconds(1)))
        case .verify:
            // Whatever the source lacked or a page missed is copied now from the old replicas that
            // are up (a comparison with one that is down fails, as the node's does).
            var compared: [TokenRangeSpan: Int] = [:]
            for progress in transfer.checkpoint.ranges {
                for replica in transfer.sources(of: progress.range).map(nodeIndex) where nodes[replica].isUp {
                    compare(progress.range, local: index, remote: replica)
                    compared[progress.range, default: 0] += 1
                }
            }
            if let range = transfer.verified(compared: compared) {
                log("\(id) cannot compare \(range) with a majority of its old replicas: too many down")
                return
            }
            saveCheckpoint(index, transfer.checkpoint)
            proposeStreamed(index, map)
        case .report:
            proposeStreamed(index, map)
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
        var transfer = transfer(index, map)
        guard !transfer.isNew, map.streaming.contains(nodes[index].id) else { return }
        for streamed in page.records {
            do {
                _ = try nodes[index].replica.put(key: streamed.key, record: streamed.record)
                observe(node: index, key: streamed.key)
            } catch {
                violate("\(nodes[index].id) cannot apply a streamed record: \(error)")
            }
        }
        statistics.keysStreamed += page.records.count
        transfer.applied(
            index: inFlight.position, count: page.records.count, lastKey: page.records.last?.key, done: page.done,
            from: inFlight.source)
        saveCheckpoint(index, transfer.checkpoint)
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

    func loadCheckpoint(_ index: Int) -> RangeTransfer.Checkpoint? {
        guard let bytes = try? nodes[index].store.metadata(MembershipState.checkpointName) else { return nil }
        return try? JSONDecoder().decode(RangeTransfer.Checkpoint.self, from: Data(bytes))
    }

    func saveCheckpoint(_ index: Int, _ checkpoint: RangeTransfer.Checkpoint) {
        do {
            try nodes[index].store.setMetadata(
                MembershipState.checkpointName, Array(try JSONEncoder().encode(checkpoint)))
        } catch {
            violate("\(nodes[index].id) cannot record its transfer: \(error)")
        }
    }

    func checkpointSummary(_ index: Int) -> String {
        guard let checkpoint = loadCheckpoint(index) else { return "no transfer recorded" }
        let done = checkpoint.ranges.count { $0.done }
        return "\(done)/\(checkpoint.ranges.count) ranges, \(checkpoint.verified ? "verified" : "not verified")"
            + (nodes[index].isUp ? "" : ", down")
    }

    // MARK: - Dropping ranges

    /// The ranges `node` keeps in `map` (the production `RangeTransfer.kept`).
    func keptRanges(_ index: Int, in map: ClusterMap) -> [TokenRangeSpan]? {
        RangeTransfer.kept(by: nodes[index].id, current: membership.ring(of: map), next: membership.nextRing(of: map))
    }

    /// The production `RangeTransfer.drops`: each piece no longer kept is compared with each of its
    /// current owners, and deleted only when every comparison completed.
    func dropRangesNoLongerHeld(_ index: Int, _ map: ClusterMap) {
        guard let kept = keptRanges(index, in: map) else { return }
        guard let held = loadHeld(index) else {
            saveHeld(index, kept)
            return
        }
        let drops = RangeTransfer.drops(held: held, kept: kept, node: nodes[index].id, ring: membership.ring(of: map))
        guard !drops.isEmpty else {
            if Set(held) != Set(kept) { saveHeld(index, kept) }
            return
        }
        var remaining = held
        for drop in drops {
            if let down = drop.owners.first(where: { !nodes[nodeIndex($0)].isUp }) {
                log("\(nodes[index].id) keeps \(drop.piece) until \(down) is back")
                return
            }
            let held = (try? nodes[index].store.merkleListing(of: drop.piece)) ?? []
            for owner in drop.owners {
                compare(drop.piece, local: index, remote: nodeIndex(owner))
            }
            self.drop(index, drop.piece, held: held, owners: drop.owners)
            remaining = TokenRangeSpan.subtracting([drop.piece], from: remaining)
            saveHeld(index, remaining)
        }
        saveHeld(index, kept)
    }

    /// Deletes `piece` from a node; every owner must hold what the node held before comparing with
    /// them (`held`), or newer, by then. (What it pulled from one owner need not reach the others.)
    func drop(_ index: Int, _ piece: TokenRangeSpan, held: [MerkleEntry], owners: [String]) {
        do {
            let listing = try nodes[index].store.merkleListing(of: piece)
            for entry in held {
                for owner in owners {
                    let held = nodes[nodeIndex(owner)].store.durableRecord(entry.key)?.version
                    if held.map({ $0 < entry.version }) ?? true {
                        violate(
                            "\(nodes[index].id) dropped \(piece) holding \(show(entry.key)) at \(entry.version) while its owner \(owner) holds \(held.map { "\($0)" } ?? "nothing")"
                        )
                    }
                }
            }
            let deleted = try nodes[index].store.deleteRange(piece)
            for entry in listing {
                // Gone on purpose: if the node replicates the key again, it may receive an older version.
                highestSeen[NodeKey(node: index, key: entry.key)] = nil
            }
            statistics.rangesDropped += 1
            log("\(nodes[index].id) dropped \(piece) (\(deleted) key(s)), compared with \(owners)")
        } catch {
            violate("\(nodes[index].id) cannot drop \(piece): \(error)")
        }
    }

    func loadHeld(_ index: Int) -> [TokenRangeSpan]? {
        guard let bytes = try? nodes[index].store.metadata(MembershipState.heldName),
            let numbers = try? JSONDecoder().decode([UInt64].self, from: Data(bytes)), numbers.count % 2 == 0
        else { return nil }
        return stride(from: 0, to: numbers.count, by: 2).map {
            TokenRangeSpan(start: numbers[$0], end: numbers[$0 + 1])
        }
    }

    func saveHeld(_ index: Int, _ spans: [TokenRangeSpan]) {
        do {
            let bytes = try JSONEncoder().encode(spans.flatMap { [$0.start, $0.end] })
            try nodes[index].store.setMetadata(MembershipState.heldName, Array(bytes))
        } catch {
            violate("\(nodes[index].id) cannot record the ranges it holds: \(error)")
        }
    }

    // MARK: - End of run

    /// At the end: no change in progress, every member at the latest epoch with only the ranges it
    /// keeps (the reasons are the ones `operatorTick` reports when the settle time runs out).
    func checkMembershipEnd() {
        guard !membership.settleFailed else { return }
        for reason in unsettledReasons() {
            violate("at the end of the run: \(reason)")
        }
    }
}

/// Who sends or receives a membership message.
enum Endpoint: Hashable {
    case node(Int)
    case client(Int)
    case `operator`
}

/// Map consensus (`MapPrepare`, `MapAccept`, their votes, `MapCommit`), gossip (`Ping` with the epoch,
/// `ClusterMap` fetches) and `Stream` pages.
enum MembershipMessage: CustomStringConvertible {
    case prepare(proposal: Int, epoch: UInt64, ballot: Ballot)
    case accept(proposal: Int, MapProposal)
    case vote(proposal: Int, phase: Int, voter: String, Result<MapVote, ReplyFailure>, signature: MapVoteSignature?)
    case commit(ClusterMap, MapProof)
    case ping(epoch: UInt64)
    case pong(epoch: UInt64)
    /// A map fetch: `epoch` 0 for the latest (clients), else that epoch (a node behind).
    case fetch(epoch: UInt64)
    /// A node's map of the epoch fetched, with its proof (nil for the first map).
    case map(ClusterMap, proof: MapProof?)
    case streamRequest(request: Int, range: TokenRangeSpan, after: [UInt8]?)
    case streamPage(request: Int, Result<StreamPage, ReplyFailure>)

    /// The decision phase of a prepare (1) or accept (2).
    var phase: Int {
        if case .accept = self { return 2 }
        return 1
    }

    var description: String {
        switch self {
        case .prepare(let id, let epoch, let ballot): "map prepare #\(id) epoch \(epoch) \(ballot)"
        case .accept(let id, let proposal): "map accept #\(id) epoch \(proposal.map.epoch)"
        case .vote(let id, let phase, let voter, let result, _): "map vote #\(id).\(phase) of \(voter): \(result)"
        case .commit(let map, _): "map commit epoch \(map.epoch)"
        case .ping(let epoch): "ping epoch \(epoch)"
        case .pong(let epoch): "pong epoch \(epoch)"
        case .fetch(let epoch): epoch == 0 ? "map fetch" : "map fetch epoch \(epoch)"
        case .map(let map, _): "map epoch \(map.epoch)"
        case .streamRequest(let request, let range, _): "stream #\(request) \(range)"
        case .streamPage(let request, .success(let page)):
            "stream page #\(request) \(page.records.count) record(s)\(page.done ? ", done" : "")"
        case .streamPage(let request, .failure(let failure)): "stream page #\(request) failed: \(failure.reason)"
        }
    }
}

/// Membership timers.
enum MembershipEvent {
    case operatorTick
    case nodeGossip(node: Int)
    case clientGossip(client: Int)
    case streamTick(node: Int)
    /// A stream request has had no answer for a request deadline.
    case streamTimeout(node: Int, request: Int)
    /// A decision's phase has had no answer from some voters for a request deadline.
    case proposalTimeout(proposal: Int, phase: Int)
    /// A client's try failed a request deadline ago while it was fetching a map: decide without it.
    case mapWaitOver(client: Int, operation: OperationTry)
    /// A late client's first map fetch has had no answer for a request deadline: start without it.
    case firstMapWaitOver(client: Int)
}

/// One map decision running.
struct ProposalRun {
    var proposer: MapProposer
    var owner: Endpoint
    var phase: Int
}

/// A node's transfer state that a crash forgets (its checkpoint is in the store's metadata).
struct StreamState {
    struct InFlight {
        var request: Int
        var position: Int
        var source: String
    }

    var inFlight: InFlight?
    /// Which of a range's sources the next request asks (moves on after a failure).
    var sourceCursor = 0
    /// The id of the node's `.streamed` decision running.
    var proposal: Int?
    var notBefore: UInt64 = 0
}

/// Everything membership adds to a run.
struct MembershipState {
    /// The store metadata of a node's `RangeTransfer.Checkpoint`, and of the ranges it holds.
    static let checkpointName = "stream.progress"
    static let heldName = "stream.held"

    /// Each node's voter state and committed map: durable (`kvd` fsyncs it before answering).
    var acceptors: [MapAcceptor]
    /// Each node's adopted maps with their proofs, by epoch (`kvd`'s map history), for peers behind.
    var histories: [[UInt64: (map: ClusterMap, proof: MapProof)]]
    /// Each client's map.
    var clients: [ClusterMap]
    /// Each client's map fetches outstanding: when it last asked each node (by index).
    var clientFetches: [[Int: UInt64]]
    /// The map the run started with (epoch 1).
    let firstMap: ClusterMap
    /// The map client c1 held when the operator proposed its first change: the sleeper's.
    var sleeperMap: ClusterMap?
    /// The latest map chosen or adopted anywhere: the invariants' ring.
    var latest: ClusterMap
    /// The one map of every epoch seen.
    var adopted: [UInt64: ClusterMap]
    var proposals: [Int: ProposalRun] = [:]
    var nextProposal = 0
    var nextRequest = 0
    /// The planned changes made so far.
    var planned = 0
    var operatorAttempt: Int?
    var streams: [StreamState]
    var settleDeadline: UInt64?
    /// Set when the membership ticks stop.
    var quiet = false
    /// Set when the settle time ran out (already reported).
    var settleFailed = false
    private let rings = RingCache()

    init(firstMap: ClusterMap, nodes: Int, clients: Int) {
        acceptors = Array(repeating: MapAcceptor(committed: firstMap), count: nodes)
        histories = Array(repeating: [:], count: nodes)
        self.clients = Array(repeating: firstMap, count: clients)
        clientFetches = Array(repeating: [:], count: clients)
        self.firstMap = firstMap
        latest = firstMap
        adopted = [firstMap.epoch: firstMap]
        streams = Array(repeating: StreamState(), count: nodes)
    }

    /// A crash forgets a node's transfer in flight and the decisions it was running.
    mutating func forgetVolatileState(of node: Int) {
        streams[node] = StreamState()
        proposals = proposals.filter { $0.value.owner != .node(node) }
    }

    func ring(of map: ClusterMap) -> Ring { rings.rings(of: map).current }

    func nextRing(of map: ClusterMap) -> Ring { rings.rings(of: map).next }

    /// Which client requests `node` serves with `map` (`kvd`'s rule).
    func admission(of node: String, in map: ClusterMap) -> ReplicaAdmission { rings.admission(of: node, in: map) }

    /// The replicas of `key` in `map`'s current ring, then those only in its next ring.
    func owners(ofKey key: [UInt8], in map: ClusterMap) -> [String] {
        let rings = rings.rings(of: map)
        let current = rings.current.preferenceList(forKey: key)
        return current + rings.next.preferenceList(forKey: key).filter { !current.contains($0) }
    }

    /// What identifies a change (the production `RangeTransfer.changeID`), from the cached rings.
    func changeID(_ map: ClusterMap) -> String {
        let rings = rings.rings(of: map)
        return RangeTransfer.changeID(current: rings.current, next: rings.next)
    }
}

/// Rings and admissions built once per map.
final class RingCache {
    private var built: [ClusterMap: (current: Ring, next: Ring)] = [:]
    private var admissions: [ClusterMap: [String: ReplicaAdmission]] = [:]

    func admission(of node: String, in map: ClusterMap) -> ReplicaAdmission {
        if let admission = admissions[map]?[node] { return admission }
        do {
            let admission = try ReplicaAdmission(node: node, map: map)
            admissions[map, default: [:]][node] = admission
            return admission
        } catch {
            preconditionFailure("a chosen map is not a valid ring: \(error)")
        }
    }

    func rings(of map: ClusterMap) -> (current: Ring, next: Ring) {
        if let rings = built[map] { return rings }
        do {
            let rings = (try map.ring(), try map.nextRing())
            built[map] = rings
            return rings
        } catch {
            preconditionFailure("a chosen map is not a valid ring: \(error)")
        }
    }
}

extension ReplyFailure {
    /// The reason a node gives for a key it does not keep in its map.
    static let notReplica = "notReplica"
}

extension Envelope {
    /// A node's refusal of a client's request for a key it does not keep.
    var isNotReplicaRefusal: Bool {
        switch payload {
        case .putReply(.failure(let failure)), .getReply(.failure(let failure)):
            failure.reason == ReplyFailure.notReplica
        default:
            false
        }
    }
}

/// Map votes in a run: a voter's "signature" is a hash of its name and the proposal, which the
/// proposer and every node check as they would a real one (`MapProposer`, `MapAcceptor.learn`).
struct SimulatedMapVotes: MapVoteSigner, MapVoteVerifier {
    /// The signing voter (unused for checking).
    let voter: String

    func sign(_ proposal: MapProposal) -> MapVoteSignature? {
        MapVoteSignature(voter: voter, certificate: [], signature: Self.signature(voter, proposal))
    }

    func verify(_ signature: MapVoteSignature, of proposal: MapProposal) -> Bool {
        signature.signature == Self.signature(signature.voter, proposal)
    }

    private static func signature(_ voter: String, _ proposal: MapProposal) -> [UInt8] {
        let text = "\(voter)|\(proposal.ballot)|\(proposal.map)"
        var value = XXH64.hash(Array(text.utf8), seed: 0).bigEndian
        return withUnsafeBytes(of: &value) { Array($0) }
    }
}
