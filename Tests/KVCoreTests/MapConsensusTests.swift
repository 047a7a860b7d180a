import KVCore
import Testing

/// Test signatures: a voter "signs" with its name and the proposal's description, which anyone can
/// forge, but which tells a signature of another proposal or of another voter apart.
struct TestMapVotes: MapVoteSigner, MapVoteVerifier {
    var voter = ""

    func sign(_ proposal: MapProposal) -> MapVoteSignature? {
        MapVoteSignature(voter: voter, certificate: [], signature: Self.bytes(voter, proposal))
    }

    func verify(_ signature: MapVoteSignature, of proposal: MapProposal) -> Bool {
        signature.signature == Self.bytes(signature.voter, proposal)
    }

    static func bytes(_ voter: String, _ proposal: MapProposal) -> [UInt8] {
        Array("\(voter)|\(proposal.ballot)|\(proposal.map)".utf8)
    }

    /// The proof that `voters` accepted `map` under `ballot`.
    static func proof(_ map: ClusterMap, ballot: Ballot, voters: [String]) -> MapProof {
        MapProof(
            ballot: ballot,
            signatures: voters.map { TestMapVotes(voter: $0).sign(MapProposal(ballot: ballot, map: map))! })
    }
}

struct MapConsensusTests {
    static let base = ClusterMap(
        clusterID: "test", epoch: 7, replicationFactor: 3,
        nodes: (1...5).map { i in
            ClusterMap.Node(id: "n\(i)", address: "127.0.0.\(i):7411", tokens: [UInt64(i) << 60])
        })

    /// `base` with node `id` moved to `address`.
    static func moved(_ id: String, to address: String) throws -> ClusterMap {
        try base.applying(.setAddress(node: id, address: address))
    }

    @Test func oneProposerWithEveryVoterUpChoosesItsMap() throws {
        let proposed = try Self.moved("n2", to: "127.0.0.99:7411")
        #expect(proposed.epoch == 8)
        var acceptors = Dictionary(
            uniqueKeysWithValues: Self.base.voters.map { ($0, MapAcceptor(committed: Self.base)) })
        var proposer = MapProposer(
            base: Self.base, proposed: proposed, ballot: Ballot(round: 1, proposer: "a"), verifier: TestMapVotes())
        var step = MapProposer.Step.wait
        for voter in proposer.voters where step == .wait {
            step = proposer.promise(from: voter, acceptors[voter]!.prepare(epoch: 8, ballot: proposer.ballot))
        }
        guard case .accept(let proposal) = step else {
            Issue.record("phase 1 ended with \(step)")
            return
        }
        #expect(proposal.map == proposed)
        step = .wait
        for voter in proposer.voters where step == .wait {
            let (vote, signature) = acceptors[voter]!.accept(proposal, signer: TestMapVotes(voter: voter))
            step = proposer.accepted(from: voter, vote, signature: signature)
        }
        let proof = TestMapVotes.proof(proposed, ballot: proposal.ballot, voters: ["n1", "n2", "n3"])
        #expect(step == .chosen(proposed, proof))
        // A majority (3 of 5) was enough: the last two voters were never asked.
        #expect(acceptors.values.filter { $0.accepted != nil }.count == 3)
        for voter in proposer.voters {
            #expect(acceptors[voter]!.learn(proposed, proof: proof, verifier: TestMapVotes()) == .adopted)
        }
        #expect(acceptors["n1"]!.committed == proposed)
        #expect(acceptors["n1"]!.promised == nil && acceptors["n1"]!.accepted == nil)
    }

    @Test func aVoterAheadOfTheBaseIsAConflict() throws {
        let proposed = try Self.moved("n2", to: "127.0.0.99:7411")
        var proposer = MapProposer(
            base: Self.base, proposed: proposed, ballot: Ballot(round: 1, proposer: "a"), verifier: TestMapVotes())
        var ahead = MapAcceptor(committed: Self.base)
        let next = try Self.moved("n3", to: "127.0.0.98:7411")
        let ballot = Ballot(round: 1, proposer: "b")
        let learning = ahead.learn(
            next, proof: TestMapVotes.proof(next, ballot: ballot, voters: ["n1", "n2", "n3"]), verifier: TestMapVotes())
        #expect(learning == .adopted)
        let step = proposer.promise(from: "n1", ahead.prepare(epoch: 8, ballot: proposer.ballot))
        #expect(step == .failed(.conflict(expected: 7, current: 8)))
        #expect("\(ClusterChangeError.conflict(expected: 7, current: 8))".contains("retry"))
    }

    /// A voter votes only on a ballot whose round is near its clock and whose proposer is the sender's
    /// certificate name: one node certificate promised round 2^64−1 and blocked every later change.
    @Test func ballotsFromTheFarFutureOrInAnotherNameAreRefused() throws {
        let now: UInt64 = 1_800_000_000_000
        #expect(Ballot(round: now, proposer: "admin#4294967295").refusal(from: "admin", nowMillis: now) == nil)
        #expect(
            Ballot(round: now + Ballot.roundAheadMax, proposer: "n2#7").refusal(from: "n2", nowMillis: now) == nil)
        let ahead = Ballot(round: now + Ballot.roundAheadMax + 1, proposer: "n2#7")
        #expect(ahead.refusal(from: "n2", nowMillis: now)?.contains("ahead of this node's clock") == true)
        #expect(Ballot(round: .max, proposer: "n2#7").refusal(from: "n2", nowMillis: now) != nil)
        for proposer in ["admin#7", "n2", "n2#", "n2#12345678901", "n2#7\u{1b}[2J", "n2x#7", ""] {
            #expect(
                Ballot(round: now, proposer: proposer).refusal(from: "n2", nowMillis: now)?.contains("n2#<digits>")
                    == true, "\(proposer)")
        }
        // A promise kept from before the bound is forgotten; an accepted proposal is not.
        var acceptor = MapAcceptor(committed: Self.base)
        #expect(acceptor.prepare(epoch: 8, ballot: Ballot(round: .max, proposer: "n9#1")) == .granted(accepted: nil))
        let honest = Ballot(round: now, proposer: "admin#1")
        #expect(
            acceptor.prepare(epoch: 8, ballot: honest) == .rejected(promised: Ballot(round: .max, proposer: "n9#1")))
        acceptor.forgetPromise(aheadOf: now)
        #expect(acceptor.prepare(epoch: 8, ballot: honest) == .granted(accepted: nil))
        acceptor.forgetPromise(aheadOf: now)
        #expect(acceptor.promised == honest)
    }

    @Test func aHigherPromiseRefusesTheLowerBallot() throws {
        var acceptor = MapAcceptor(committed: Self.base)
        let high = Ballot(round: 5, proposer: "b")
        #expect(acceptor.prepare(epoch: 8, ballot: high) == .granted(accepted: nil))
        let low = Ballot(round: 4, proposer: "a")
        #expect(acceptor.prepare(epoch: 8, ballot: low) == .rejected(promised: high))
        let proposal = MapProposal(ballot: low, map: try Self.moved("n2", to: "127.0.0.99:7411"))
        #expect(acceptor.accept(proposal, signer: TestMapVotes(voter: "n1")) == (.rejected(promised: high), nil))
        #expect(acceptor.accepted == nil)
        var proposer = MapProposer(base: Self.base, proposed: proposal.map, ballot: low, verifier: TestMapVotes())
        #expect(
            proposer.promise(from: "n1", .rejected(promised: high))
                == .failed(.concurrentChange(epoch: 8, proposer: "b")))
    }

    @Test func tooFewAnswersEndWithNoMajority() throws {
        let proposed = try Self.moved("n2", to: "127.0.0.99:7411")
        var proposer = MapProposer(
            base: Self.base, proposed: proposed, ballot: Ballot(round: 1, proposer: "a"), verifier: TestMapVotes())
        #expect(proposer.promise(from: "n1", .granted(accepted: nil)) == .wait)
        #expect(proposer.failed("n2", "connection refused") == .wait)
        #expect(proposer.failed("n3", "timed out") == .wait)
        guard case .failed(.noMajority(8, 1, 3, let failures)) = proposer.failed("n4", "timed out") else {
            Issue.record("three of five voters failing must end the attempt")
            return
        }
        #expect(failures.count == 3)
    }

    @Test func changesThatDoNotFitTheMapAreRefused() {
        #expect(throws: ClusterChangeError.self) { try Self.base.applying(.setAddress(node: "n9", address: "h:1")) }
        #expect(throws: ClusterChangeError.self) { try Self.base.applying(.setAddress(node: "n1", address: "nope")) }
        #expect(throws: ClusterChangeError.self) {
            try Self.base.applying(.setAddress(node: "n1", address: "127.0.0.2:7411"))
        }
        #expect(throws: ClusterChangeError.self) {
            try Self.base.applying(.setAddress(node: "n1", address: "127.0.0.1:7411"))
        }
    }

    @Test func installAdoptsOnlyLaterValidMapsOfTheSameCluster() throws {
        var acceptor = MapAcceptor(committed: Self.base)
        var other = try Self.moved("n2", to: "127.0.0.99:7411")
        other.clusterID = "elsewhere"
        var broken = try Self.moved("n2", to: "127.0.0.99:7411")
        broken.placement = .simple(replicas: 9)
        for refused in [other, Self.base, broken] {
            let installed = acceptor.install(refused)
            #expect(!installed)
        }
        #expect(acceptor.committed == Self.base)
        var edited = try Self.moved("n2", to: "127.0.0.99:7411")
        edited.epoch = 20
        let installed = acceptor.install(edited)
        #expect(installed)
        #expect(acceptor.committed == edited && acceptor.proof == nil)
    }

    /// What a holder of one node certificate could send as a commit: each refused, the map unchanged.
    @Test func learnTakesOnlyTheNextEpochWithAMajoritysSignatures() throws {
        let next = try Self.moved("n2", to: "127.0.0.99:7411")
        let ballot = Ballot(round: 3, proposer: "admin#1")
        let majority = ["n1", "n3", "n5"]
        let verifier = TestMapVotes()
        var acceptor = MapAcceptor(committed: Self.base)
        func refusal(_ map: ClusterMap, _ proof: MapProof) -> String? {
            if case .refused(let reason) = acceptor.learn(map, proof: proof, verifier: verifier) { return reason }
            return nil
        }
        // Signed by two of five voters, or by one voter three times.
        #expect(
            refusal(next, TestMapVotes.proof(next, ballot: ballot, voters: ["n1", "n3"]))?.contains("3 are needed")
                == true)
        #expect(
            refusal(next, TestMapVotes.proof(next, ballot: ballot, voters: ["n1", "n1", "n1"]))?.contains("twice")
                == true)
        // Signed by a node that is not a voter, or under another ballot, or of another map.
        #expect(
            refusal(next, TestMapVotes.proof(next, ballot: ballot, voters: ["n1", "n3", "n9"]))?.contains("not a voter")
                == true)
        var forged = TestMapVotes.proof(next, ballot: ballot, voters: majority)
        forged.ballot = Ballot(round: 4, proposer: "admin#1")
        #expect(refusal(next, forged)?.contains("does not verify") == true)
        var rewritten = next
        rewritten.nodes[0].address = "10.0.0.66:7411"
        #expect(refusal(rewritten, TestMapVotes.proof(next, ballot: ballot, voters: majority)) != nil)
        // A later epoch than the next one is a gap whatever its proof; the epoch before, nothing.
        var far = next
        far.epoch = UInt64.max
        #expect(
            acceptor.learn(far, proof: TestMapVotes.proof(far, ballot: ballot, voters: majority), verifier: verifier)
                == .gap(next: 8))
        #expect(
            acceptor.learn(
                Self.base, proof: TestMapVotes.proof(Self.base, ballot: ballot, voters: majority), verifier: verifier)
                == .notNewer)
        // A ring over the limits (N above the maximum) is refused before any signature is checked.
        var wide = next
        wide.placement = .simple(replicas: Limits.replicationFactorMax + 1)
        #expect(
            refusal(wide, TestMapVotes.proof(wide, ballot: ballot, voters: majority))?.contains("not a valid ring")
                == true)
        #expect(acceptor.committed == Self.base)
        // The real thing.
        #expect(
            acceptor.learn(next, proof: TestMapVotes.proof(next, ballot: ballot, voters: majority), verifier: verifier)
                == .adopted)
        #expect(acceptor.committed == next && acceptor.proof?.signatures.count == 3)
    }

    @Test func anAcceptanceWithoutAValidSignatureDoesNotCount() throws {
        let proposed = try Self.moved("n2", to: "127.0.0.99:7411")
        var proposer = MapProposer(
            base: Self.base, proposed: proposed, ballot: Ballot(round: 1, proposer: "a"), verifier: TestMapVotes())
        _ = proposer.promise(from: "n1", .granted(accepted: nil))
        _ = proposer.promise(from: "n2", .granted(accepted: nil))
        guard case .accept = proposer.promise(from: "n3", .granted(accepted: nil)) else {
            Issue.record("three promises of five must win phase 1")
            return
        }
        let proposal = MapProposal(ballot: proposer.ballot, map: proposed)
        let signed = { (voter: String) in TestMapVotes(voter: voter).sign(proposal) }
        #expect(proposer.accepted(from: "n1", .granted(accepted: nil), signature: signed("n1")) == .wait)
        // Unsigned, signed by another voter's name, signed for another proposal.
        #expect(proposer.accepted(from: "n2", .granted(accepted: nil), signature: nil) == .wait)
        #expect(proposer.accepted(from: "n3", .granted(accepted: nil), signature: signed("n1")) == .wait)
        let other = TestMapVotes(voter: "n4").sign(MapProposal(ballot: proposer.ballot, map: Self.base))
        guard case .failed(.noMajority) = proposer.accepted(from: "n4", .granted(accepted: nil), signature: other)
        else {
            Issue.record("four voters without three valid signatures must end without a majority")
            return
        }
    }

    @Test func ringsOverTheLimitsAreRefusedBeforeTheyAreBuilt() {
        let many = (0..<(Limits.tokensTotalMax / Limits.tokensPerNodeMax + 1)).map { i in
            RingNode(id: "n\(i)", tokens: (0..<UInt64(Limits.tokensPerNodeMax)).map { UInt64(i) << 32 | $0 })
        }
        #expect(throws: RingError.tooManyTokensInTotal(count: many.count * Limits.tokensPerNodeMax)) {
            try Ring(nodes: many, replicationFactor: 3)
        }
        let wide = (0..<(Limits.replicationFactorMax + 1)).map { i in RingNode(id: "n\(i)", tokens: [UInt64(i)]) }
        #expect(throws: RingError.self) { try Ring(nodes: wide, replicationFactor: Limits.replicationFactorMax + 1) }
        #expect((try? Ring(nodes: wide, replicationFactor: Limits.replicationFactorMax)) != nil)
    }

    /// Three proposers with different maps race over five voters: every message (a prepare or an
    /// accept to one voter) is delivered in a random order among all those in flight, a quarter of
    /// them are lost, and a proposer that fails tries again with a higher ballot. Whatever the
    /// schedule, at most one map is chosen for the epoch, and it is one that was proposed.
    @Test(arguments: 1...400)
    func racingProposersNeverChooseTwoMaps(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        var acceptors = Dictionary(
            uniqueKeysWithValues: Self.base.voters.map { ($0, MapAcceptor(committed: Self.base)) })
        let maps = try (0..<3).map { i in try Self.moved("n\(i + 1)", to: "127.0.1.\(i):7411") }
        enum Kind { case prepare, accept(MapProposal) }
        struct InFlight {
            var proposer: Int
            var attempt: Int
            var voter: String
            var kind: Kind
        }
        var proposers: [MapProposer] = []
        var attempts = [0, 0, 0]
        var inFlight: [InFlight] = []
        var chosen: [ClusterMap] = []
        func start(_ p: Int) {
            attempts[p] += 1
            let ballot = Ballot(round: UInt64(attempts[p] * 10 + Int.random(in: 0...9, using: &rng)), proposer: "p\(p)")
            proposers[p] = MapProposer(base: Self.base, proposed: maps[p], ballot: ballot, verifier: TestMapVotes())
            inFlight += proposers[p].voters.map {
                InFlight(proposer: p, attempt: attempts[p], voter: $0, kind: .prepare)
            }
        }
        for p in 0..<3 {
            proposers.append(
                MapProposer(
                    base: Self.base, proposed: maps[p], ballot: Ballot(round: 0, proposer: "p\(p)"),
                    verifier: TestMapVotes()))
            start(p)
        }
        var deliveries = 0
        while !inFlight.isEmpty, deliveries < 2000 {
            deliveries += 1
            let message = inFlight.remove(at: Int.random(in: 0..<inFlight.count, using: &rng))
            // Answers to an abandoned attempt are dropped, as a real proposer forgets them.
            guard message.attempt == attempts[message.proposer] else { continue }
            let p = message.proposer
            let lost = UInt64.random(in: 0..<4, using: &rng) == 0
            let step: MapProposer.Step
            switch message.kind {
            case .prepare:
                step =
                    lost
                    ? proposers[p].failed(message.voter, "lost")
                    : proposers[p].promise(
                        from: message.voter, acceptors[message.voter]!.prepare(epoch: 8, ballot: proposers[p].ballot))
            case .accept(let proposal):
                step =
                    lost
                    ? proposers[p].failed(message.voter, "lost")
                    : {
                        let (vote, signature) = acceptors[message.voter]!.accept(
                            proposal, signer: TestMapVotes(voter: message.voter))
                        return proposers[p].accepted(from: message.voter, vote, signature: signature)
                    }()
            }
            switch step {
            case .wait:
                break
            case .accept(let proposal):
                #expect(maps.contains(proposal.map))
                inFlight += proposers[p].voters.map {
                    InFlight(proposer: p, attempt: attempts[p], voter: $0, kind: .accept(proposal))
                }
            case .chosen(let map, _):
                chosen.append(map)
            case .failed:
                if attempts[p] < 4 { start(p) }
            }
        }
        #expect(Set(chosen).count <= 1, "seed \(seed): chose \(Set(chosen).map { $0.nodes.map(\.address) })")
    }
}
