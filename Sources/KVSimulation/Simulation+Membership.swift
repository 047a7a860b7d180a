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
///   page by page (`InMemoryStore.streamPage`, through messages) from its sources, recording the
///   transfer's checkpoint in the store's metadata after every page (it survives a crash), compares
///   each received range with its old replicas (the production `MerkleComparison`, as anti-entropy
///   does) until a majority compared, then proposes `.streamed` with its own `MapProposer`; old owners
///   drop the pieces `RangeTransfer.drops` lists after comparing each with its current owners;
/// - with keyspaces, all of this runs per keyspace on the map as the keyspace sees it
///   (`ClusterMap.viewed(as:)`), as `kvd`'s `RangeStreamer` lanes and `ReplicaService` do: a transfer,
///   checkpoint, drop and admission per keyspace, and `.streamed` once every keyspace's ranges are in
///   (`Simulation+Transfers.swift`);
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
        queue.push(
            .membership(.operatorTick), at: now + 200 + random.next() % profile.operatorTick.wholeMillisecondsClamped)
        for index in nodes.indices {
            queue.push(
                .membership(.nodeGossip(node: index)),
                at: now + 1 + random.next() % profile.nodeGossip.wholeMillisecondsClamped)
            queue.push(
                .membership(.streamTick(node: index)),
                at: now + 1 + random.next() % profile.streamTick.wholeMillisecondsClamped)
        }
        for index in clients.indices {
            queue.push(
                .membership(.clientGossip(client: index)),
                at: now + 1 + random.next() % profile.clientGossip.wholeMillisecondsClamped)
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
                queue.push(.membership(.nodeGossip(node: index)), at: now + profile.nodeGossip.wholeMillisecondsClamped)
            }
        case .clientGossip(let index):
            let candidates = membership.clients[index].nodes.filter { $0.state != .removed }
            if !candidates.isEmpty {
                let peer = candidates[Int(random.next() % UInt64(candidates.count))]
                sendMembership(
                    .ping(epoch: membership.clients[index].epoch), from: .client(index), to: .node(nodeIndex(peer.id)))
            }
            if !membership.quiet {
                queue.push(
                    .membership(.clientGossip(client: index)), at: now + profile.clientGossip.wholeMillisecondsClamped)
            }
        case .streamTick(let index):
            streamStep(index)
            if !membership.quiet {
                queue.push(.membership(.streamTick(node: index)), at: now + profile.streamTick.wholeMillisecondsClamped)
            }
        case .streamTimeout(let index, let request):
            guard membership.streams[index].inFlight?.request == request else { return }
            log("\(nodes[index].id) stream request \(request) had no answer")
            sourceFailed(index)
        case .mapFetchOver(let index, let fetch):
            mapFetchOver(ofClient: index, fetch: fetch)
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
            let settleMillis = profile.settle.wholeMillisecondsClamped
            let deadline = membership.settleDeadline ?? now + settleMillis
            membership.settleDeadline = deadline
            if now > deadline {
                membership.quiet = true
                membership.settleFailed = true
                violate(
                    "membership did not settle within \(settleMillis) ms after the clients finished: \(unsettled.joined(separator: "; "))"
                )
                return
            }
        }
        queue.push(.membership(.operatorTick), at: now + profile.operatorTick.wholeMillisecondsClamped)
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
                continue
            }
            for keyspace in keyspaceIDs(of: latest) {
                if let held = loadHeld(index, keyspace: keyspace),
                    let kept = keptRanges(index, in: viewed(latest, as: keyspace)), Set(held) != Set(kept)
                {
                    reasons.append("\(node.id) still holds ranges it does not keep\(inKeyspace(keyspace))")
                }
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
            at: now + requestDeadlineMillis)
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
                at: now + requestDeadlineMillis)
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
            case .pong(let epoch):
                noticeEpoch(epoch, ofClient: index, from: node)
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
                case .streamRequest(let request, _, _, _):
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
        case .streamRequest(let request, let range, let after, let keyspace):
            // From the keyspace's store, as `kvd` serves a `Stream` naming its keyspace.
            let answer: Result<StreamPage, ReplyFailure>
            do {
                answer = .success(
                    try served(index, keyspace).store.streamPage(
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
            endMapWaits(at: index)
        case .refused(let reason):
            violate("\(nodes[index].id) refused a chosen map of epoch \(map.epoch): \(reason)")
        case .notNewer, .gap:
            break
        }
        return learning
    }

    /// Why `node` refuses a client's request for `key` of `keyspace` (a write made with the map of
    /// `writeEpoch`): the production `ReplicaAdmission` of its map as the keyspace sees it, as `kvd`
    /// admits per keyspace. Nil when it serves it (always, without membership).
    func refusal(at node: Int, key: [UInt8], keyspace: UInt32, write: Bool, writeEpoch: UInt64 = 0) -> ReplyFailure? {
        // A split keyspace: the key must be this part's, as `kvd` checks (`checkAdmitted`). Clients pick
        // the key's part, so a refusal here is a bug of the run.
        let committed = membership.acceptors[node].committed
        if let part = committed.keyspace(id: keyspace), !committed.holds(part, key: key) {
            violate("\(nodes[node].id) received \(describe(key, keyspace: keyspace)), a key of another part")
            return ReplyFailure(reason: ReplyFailure.notReplica)
        }
        guard configuration.membershipProfile != nil else { return nil }
        let map = viewed(committed, as: keyspace)
        let admission = membership.admission(of: nodes[node].id, in: map)
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
