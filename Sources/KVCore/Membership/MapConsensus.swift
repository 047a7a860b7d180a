/// How the nodes agree on each next cluster map: one instance of single-decree Paxos per epoch.
///
/// The voters of epoch `E + 1` are the members of map `E` that are not removed (`ClusterMap.voters`);
/// every node at epoch `E` holds the same map `E`, because that map was itself decided this way. A
/// proposer (the SDK, for `kvctl cluster …`) picks a ballot, asks the voters to promise it
/// (`MapPrepare`), proposes its map, or the map a voter had already accepted, to them (`MapAccept`),
/// and once a majority accepted, the map is chosen and committed everywhere (`MapCommit`, then gossip)
/// with the voters' signatures as its proof (`MapProof`).
/// Two operators changing the map at once cannot both win: the loser is told why (`ClusterChangeError`).
///
/// Both halves are values with no I/O; the node persists `MapAcceptor` before it answers.

/// A proposal's rank: higher rounds win, the proposer's name (unique per attempt) breaks ties.
public struct Ballot: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var round: UInt64
    public var proposer: String

    public init(round: UInt64, proposer: String) {
        self.round = round
        self.proposer = proposer
    }

    public static func < (lhs: Ballot, rhs: Ballot) -> Bool {
        guard lhs.round == rhs.round else { return lhs.round < rhs.round }
        return lhs.proposer.utf8.lexicographicallyPrecedes(rhs.proposer.utf8)
    }

    public var description: String { "\(round)/\(proposer)" }

    /// How far ahead of a voter's wall clock a round may be. Rounds are their proposers' wall-clock
    /// milliseconds (`kvctl`'s, a node's), so an honest one is near the voter's clock; a round far
    /// ahead would outbid every honest proposer after it, as a promise of round 2^64−1 from one node
    /// certificate blocked every later change to the map, restarts included.
    public static let roundAheadMax: UInt64 = 10 * 60 * 1000

    /// Why a voter whose wall clock reads `nowMillis` refuses to vote on this ballot from the holder of
    /// the certificate named `sender` (nil: it does not): a round more than `roundAheadMax` ahead, or a
    /// proposer other than `"<sender>#<digits>"`, the form every proposer gives its ballots (which the
    /// error a rival proposer gets then names: a certificate's name, safe to print).
    public func refusal(from sender: String, nowMillis: UInt64) -> String? {
        if isAhead(of: nowMillis) {
            return
                "ballot round \(round) is more than \(Self.roundAheadMax) ms ahead of this node's clock (\(nowMillis))"
        }
        let attempt = proposer.utf8.dropFirst(sender.utf8.count + 1)
        guard proposer.utf8.starts(with: sender.utf8 + [UInt8(ascii: "#")]), !attempt.isEmpty, attempt.count <= 10,
            attempt.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
        else {
            return "a ballot from \(sender) must name it as its proposer (\(sender)#<digits>)"
        }
        return nil
    }

    /// Whether the round is more than `roundAheadMax` ahead of `nowMillis`.
    func isAhead(of nowMillis: UInt64) -> Bool {
        nowMillis < UInt64.max - Self.roundAheadMax && round > nowMillis + Self.roundAheadMax
    }
}

/// A map some voter accepted under a ballot.
public struct MapProposal: Sendable, Hashable {
    public var ballot: Ballot
    public var map: ClusterMap

    public init(ballot: Ballot, map: ClusterMap) {
        self.ballot = ballot
        self.map = map
    }
}

/// A voter's answer to `MapPrepare` or `MapAccept`.
public enum MapVote: Sendable, Hashable {
    /// Promised (prepare; with the proposal it accepted earlier for this epoch, if any) or accepted.
    case granted(accepted: MapProposal?)
    /// The voter's map is not the one the vote is about: it is at `epoch`.
    case stale(epoch: UInt64)
    /// The voter promised a higher ballot.
    case rejected(promised: Ballot)
}

/// One node's side: its committed map (with the proof it was chosen, once it came from a peer), and its
/// promise and accepted proposal for the next epoch.
public struct MapAcceptor: Sendable, Hashable {
    public private(set) var committed: ClusterMap
    /// The proof that `committed` was chosen; nil for a map from the cluster file.
    public private(set) var proof: MapProof?
    public private(set) var promised: Ballot?
    public private(set) var accepted: MapProposal?

    public init(committed: ClusterMap, proof: MapProof? = nil, promised: Ballot? = nil, accepted: MapProposal? = nil) {
        self.committed = committed
        self.proof = proof
        self.promised = promised
        self.accepted = accepted
    }

    /// Forgets a promise no honest proposer could have asked for by `nowMillis` (`Ballot.roundAheadMax`),
    /// which a build before that bound kept: every later ballot would lose to it. An accepted proposal
    /// is kept whatever its ballot: it may have been chosen, and the next proposer must find it.
    public mutating func forgetPromise(aheadOf nowMillis: UInt64) {
        if let promised, promised.isAhead(of: nowMillis) { self.promised = nil }
    }

    /// Phase 1: promise `ballot` for `epoch` (the next one) unless a higher ballot was promised.
    public mutating func prepare(epoch: UInt64, ballot: Ballot) -> MapVote {
        guard epoch.isNext(after: committed.epoch) else { return .stale(epoch: committed.epoch) }
        if let promised, ballot < promised { return .rejected(promised: promised) }
        promised = ballot
        return .granted(accepted: accepted)
    }

    /// Phase 2: accept `proposal` for the next epoch unless a higher ballot was promised; a granted
    /// vote comes with `signer`'s signature of the proposal (nil when it cannot sign).
    public mutating func accept(_ proposal: MapProposal, signer: some MapVoteSigner) -> (
        MapVote, MapVoteSignature?
    ) {
        guard proposal.map.epoch.isNext(after: committed.epoch), proposal.map.clusterID == committed.clusterID else {
            return (.stale(epoch: committed.epoch), nil)
        }
        if let promised, proposal.ballot < promised { return (.rejected(promised: promised), nil) }
        promised = proposal.ballot
        accepted = proposal
        return (.granted(accepted: nil), signer.sign(proposal))
    }

    /// Adopts a chosen map a peer sent (a commit, or gossip from a node that is ahead): only the next
    /// epoch, only a valid ring within `Limits`, and only with a proof signed by a majority of this
    /// map's voters (`MapProof.refusal`).
    public mutating func learn(_ map: ClusterMap, proof: MapProof, verifier: some MapVoteVerifier) -> MapLearning {
        guard map.clusterID == committed.clusterID else {
            return .refused("the map is of cluster '\(map.clusterID)', not '\(committed.clusterID)'")
        }
        guard map.epoch > committed.epoch else { return .notNewer }
        guard map.epoch.isNext(after: committed.epoch) else { return .gap(next: committed.epoch + 1) }
        do {
            _ = try map.ring()
        } catch {
            return .refused("epoch \(map.epoch) is not a valid ring: \(error)")
        }
        if let reason = proof.refusal(of: map, after: committed, verifier: verifier) {
            return .refused("no proof that epoch \(map.epoch) was chosen: \(reason)")
        }
        committed = map
        self.proof = proof
        promised = nil
        accepted = nil
        return .adopted
    }

    /// Adopts a later map this node's operator gave it (the cluster file), which needs no proof.
    ///
    /// - Returns: whether the map was adopted (false: not newer, another cluster, or not a valid ring).
    @discardableResult
    public mutating func install(_ map: ClusterMap) -> Bool {
        guard map.clusterID == committed.clusterID, map.epoch > committed.epoch, (try? map.ring()) != nil else {
            return false
        }
        committed = map
        proof = nil
        promised = nil
        accepted = nil
        return true
    }
}

/// The proposer's side of deciding one epoch, fed the voters' answers.
public struct MapProposer: Sendable {
    /// What the proposer does next.
    public enum Step: Sendable, Hashable {
        /// Wait for more answers.
        case wait
        /// Phase 1 is won: send `MapAccept` with this proposal to every voter.
        case accept(MapProposal)
        /// The map is chosen: commit it everywhere with its proof. When it is not the proposer's own
        /// map, the change was superseded (`ClusterChangeError.superseded`) after the proposer
        /// completed it.
        case chosen(ClusterMap, MapProof)
        /// Nothing was decided, for this reason.
        case failed(ClusterChangeError)
    }

    public let base: ClusterMap
    public let proposed: ClusterMap
    public let ballot: Ballot
    public let voters: [String]
    private let verifier: any MapVoteVerifier
    private var phase: Phase
    private var granted: Set<String> = []
    private var answered: Set<String> = []
    private var failures: [String] = []
    private var highestAccepted: MapProposal?
    private var signatures: [MapVoteSignature] = []

    private enum Phase {
        case preparing, accepting(MapProposal), done
    }

    /// The number of voters that must agree.
    public var majority: Int { voters.count / 2 + 1 }

    /// - Parameters:
    ///   - base: the map the change was made on (epoch `E`); its voters decide epoch `E + 1`.
    ///   - proposed: `base` with the change made (epoch `E + 1`).
    ///   - verifier: checks each acceptance's signature; an acceptance without a valid one does not count.
    public init(base: ClusterMap, proposed: ClusterMap, ballot: Ballot, verifier: any MapVoteVerifier) {
        precondition(proposed.epoch.isNext(after: base.epoch), "a proposal is for the epoch after its base")
        self.base = base
        self.proposed = proposed
        self.ballot = ballot
        self.verifier = verifier
        self.voters = base.voters
        self.phase = .preparing
    }

    /// A voter's answer to `MapPrepare`.
    public mutating func promise(from voter: String, _ vote: MapVote) -> Step {
        guard case .preparing = phase, voters.contains(voter), answered.insert(voter).inserted else { return .wait }
        switch vote {
        case .granted(let accepted):
            granted.insert(voter)
            if let accepted, highestAccepted.map({ accepted.ballot > $0.ballot }) ?? true {
                highestAccepted = accepted
            }
            guard granted.count >= majority else { return .wait }
            // A map some voter already accepted may have been chosen: it must be proposed, not ours.
            let proposal = MapProposal(ballot: ballot, map: highestAccepted?.map ?? proposed)
            granted = []
            answered = []
            failures = []
            phase = .accepting(proposal)
            return .accept(proposal)
        case .stale(let epoch):
            return staleVote(voter, epoch)
        case .rejected(let promised):
            phase = .done
            return .failed(.concurrentChange(epoch: proposed.epoch, proposer: promised.proposer))
        }
    }

    /// A voter's answer to `MapAccept`, with its signature of the proposal when it granted it.
    public mutating func accepted(from voter: String, _ vote: MapVote, signature: MapVoteSignature?) -> Step {
        guard case .accepting(let proposal) = phase, voters.contains(voter), answered.insert(voter).inserted else {
            return .wait
        }
        switch vote {
        case .granted:
            guard let signature, signature.voter == voter, verifier.verify(signature, of: proposal) else {
                failures.append("\(voter): accepted without a valid signature")
                return givingUpIfHopeless()
            }
            granted.insert(voter)
            signatures.append(signature)
            guard granted.count >= majority else { return .wait }
            phase = .done
            return .chosen(proposal.map, MapProof(ballot: proposal.ballot, signatures: signatures))
        case .stale(let epoch):
            return staleVote(voter, epoch)
        case .rejected(let promised):
            phase = .done
            return .failed(.concurrentChange(epoch: proposed.epoch, proposer: promised.proposer))
        }
    }

    /// A voter that could not be asked (unreachable, timed out, refused).
    public mutating func failed(_ voter: String, _ reason: String) -> Step {
        guard voters.contains(voter), answered.insert(voter).inserted else { return .wait }
        failures.append("\(voter): \(reason)")
        return givingUpIfHopeless()
    }

    private mutating func staleVote(_ voter: String, _ epoch: UInt64) -> Step {
        if epoch > base.epoch {
            phase = .done
            return .failed(.conflict(expected: base.epoch, current: epoch))
        }
        // Behind the base: it will learn map E by gossip; it cannot vote on E + 1 yet.
        failures.append("\(voter): still at epoch \(epoch)")
        return givingUpIfHopeless()
    }

    private mutating func givingUpIfHopeless() -> Step {
        let open = voters.count - answered.count
        guard granted.count + open < majority else { return .wait }
        phase = .done
        return .failed(
            .noMajority(epoch: proposed.epoch, granted: granted.count, needed: majority, failures: failures))
    }
}
