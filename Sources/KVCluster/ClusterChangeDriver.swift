public import KVCore
public import KVWire

/// Runs one Paxos instance for the next cluster map (`MapProposer`) over RPC: `MapPrepare` and
/// `MapAccept` to every voter at once, then `MapCommit` to every member. The SDK uses it for
/// `kvctl cluster …`, and a node to report that it received its ranges (`ClusterChange.streamed`).
public enum ClusterChangeDriver {
    /// One RPC to one node, by id.
    public typealias Call = @Sendable (_ node: String, _ request: Message) async throws -> Message

    /// Decides the map after `base`: `proposed`, or a map some voter had already accepted. An
    /// acceptance counts only with the voter's signature, which `verifier` checks; the signatures of
    /// the majority go with the commit as the map's proof.
    ///
    /// - Returns: the chosen map, committed to every member of `base` and of itself (those that
    ///   missed the commit learn it by gossip).
    /// - Throws: `ClusterChangeError` when nothing was decided; `.superseded` when another attempt's
    ///   map was chosen (and committed) instead of `proposed`.
    public static func decide(
        base: ClusterMap, proposed: ClusterMap, ballot: Ballot, verifier: any MapVoteVerifier, call: @escaping Call
    ) async throws -> ClusterMap {
        var proposer = MapProposer(base: base, proposed: proposed, ballot: ballot, verifier: verifier)
        let prepare = Message.mapPrepareRequest(MapPrepareRequest(epoch: proposed.epoch, ballot: ballot))
        var step = await poll(proposer.voters, with: prepare, call: call) { voter, answer in
            switch answer {
            case .success(.mapPrepareResponse(let response)):
                guard let vote = response.mapVote else { return proposer.failed(voter, "answered a malformed vote") }
                return proposer.promise(from: voter, vote)
            case .success(let other):
                return proposer.failed(voter, "answered MapPrepare with \(other.type)")
            case .failure(let error):
                return proposer.failed(voter, "\(error)")
            }
        }
        if case .accept(let proposal) = step {
            let accept = Message.mapAcceptRequest(MapAcceptRequest(ballot: proposal.ballot, map: MapBody(proposal.map)))
            step = await poll(proposer.voters, with: accept, call: call) { voter, answer in
                switch answer {
                case .success(.mapAcceptResponse(let response)):
                    guard let vote = response.mapVote else {
                        return proposer.failed(voter, "answered a malformed vote")
                    }
                    return proposer.accepted(from: voter, vote, signature: response.signature?.mapVoteSignature)
                case .success(let other):
                    return proposer.failed(voter, "answered MapAccept with \(other.type)")
                case .failure(let error):
                    return proposer.failed(voter, "\(error)")
                }
            }
        }
        switch step {
        case .chosen(let map, let proof):
            let everyone = Set(base.nodes.map(\.id)).union(map.voters).sorted()
            let commit = Message.mapCommitRequest(MapCommitRequest(map: MapBody(map), proof: MapProofBody(proof)))
            _ = await poll(everyone, with: commit, call: call) { _, _ in .wait }
            guard map == proposed else { throw ClusterChangeError.superseded(epoch: map.epoch) }
            return map
        case .failed(let error):
            throw error
        case .wait, .accept:
            throw ClusterChangeError.noMajority(
                epoch: proposed.epoch, granted: 0, needed: proposer.majority, failures: ["no answer"])
        }
    }

    /// Sends `request` to every node in `nodes` at once and feeds each answer to `handle` as it
    /// arrives, until `handle` returns a step other than `.wait` or every node answered.
    ///
    /// - Returns: the last step `handle` returned.
    public static func poll(
        _ nodes: [String], with request: Message, call: @escaping Call,
        handle: (String, Result<Message, any Error>) -> MapProposer.Step
    ) async -> MapProposer.Step {
        await withTaskGroup(of: Answer.self) { group in
            for node in nodes {
                group.addTask {
                    do {
                        return Answer(node: node, result: .success(try await call(node, request)))
                    } catch {
                        return Answer(node: node, result: .failure(error))
                    }
                }
            }
            var step = MapProposer.Step.wait
            while let answer = await group.next() {
                step = handle(answer.node, answer.result)
                guard step == .wait else {
                    group.cancelAll()
                    break
                }
            }
            return step
        }
    }

    /// One node's answer to a polled request.
    private struct Answer: Sendable {
        var node: String
        var result: Result<Message, any Error>
    }
}
