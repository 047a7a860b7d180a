import KVCore
import Testing

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
        var proposer = MapProposer(base: Self.base, proposed: proposed, ballot: Ballot(round: 1, proposer: "a"))
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
            step = proposer.accepted(from: voter, acceptors[voter]!.accept(proposal))
        }
        #expect(step == .chosen(proposed))
        // A majority (3 of 5) was enough: the last two voters were never asked.
        #expect(acceptors.values.filter { $0.accepted != nil }.count == 3)
        for voter in proposer.voters {
            let learned = acceptors[voter]!.learn(proposed)
            #expect(learned)
        }
        #expect(acceptors["n1"]!.committed == proposed)
        #expect(acceptors["n1"]!.promised == nil && acceptors["n1"]!.accepted == nil)
    }

    @Test func aVoterAheadOfTheBaseIsAConflict() throws {
        let proposed = try Self.moved("n2", to: "127.0.0.99:7411")
        var proposer = MapProposer(base: Self.base, proposed: proposed, ballot: Ballot(round: 1, proposer: "a"))
        var ahead = MapAcceptor(committed: Self.base)
        let learned = ahead.learn(try Self.moved("n3", to: "127.0.0.98:7411"))
        #expect(learned)
        let step = proposer.promise(from: "n1", ahead.prepare(epoch: 8, ballot: proposer.ballot))
        #expect(step == .failed(.conflict(expected: 7, current: 8)))
        #expect("\(ClusterChangeError.conflict(expected: 7, current: 8))".contains("retry"))
    }

    @Test func aHigherPromiseRefusesTheLowerBallot() throws {
        var acceptor = MapAcceptor(committed: Self.base)
        let high = Ballot(round: 5, proposer: "b")
        #expect(acceptor.prepare(epoch: 8, ballot: high) == .granted(accepted: nil))
        let low = Ballot(round: 4, proposer: "a")
        #expect(acceptor.prepare(epoch: 8, ballot: low) == .rejected(promised: high))
        let proposal = MapProposal(ballot: low, map: try Self.moved("n2", to: "127.0.0.99:7411"))
        #expect(acceptor.accept(proposal) == .rejected(promised: high))
        #expect(acceptor.accepted == nil)
        var proposer = MapProposer(base: Self.base, proposed: proposal.map, ballot: low)
        #expect(
            proposer.promise(from: "n1", .rejected(promised: high))
                == .failed(.concurrentChange(epoch: 8, proposer: "b")))
    }

    @Test func tooFewAnswersEndWithNoMajority() throws {
        let proposed = try Self.moved("n2", to: "127.0.0.99:7411")
        var proposer = MapProposer(base: Self.base, proposed: proposed, ballot: Ballot(round: 1, proposer: "a"))
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

    @Test func learnAdoptsOnlyLaterValidMapsOfTheSameCluster() throws {
        var acceptor = MapAcceptor(committed: Self.base)
        var other = try Self.moved("n2", to: "127.0.0.99:7411")
        other.clusterID = "elsewhere"
        var broken = try Self.moved("n2", to: "127.0.0.99:7411")
        broken.replicationFactor = 9
        for refused in [other, Self.base, broken] {
            let learned = acceptor.learn(refused)
            #expect(!learned)
        }
        #expect(acceptor.committed == Self.base)
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
            proposers[p] = MapProposer(base: Self.base, proposed: maps[p], ballot: ballot)
            inFlight += proposers[p].voters.map {
                InFlight(proposer: p, attempt: attempts[p], voter: $0, kind: .prepare)
            }
        }
        for p in 0..<3 {
            proposers.append(
                MapProposer(base: Self.base, proposed: maps[p], ballot: Ballot(round: 0, proposer: "p\(p)")))
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
                    : proposers[p].accepted(from: message.voter, acceptors[message.voter]!.accept(proposal))
            }
            switch step {
            case .wait:
                break
            case .accept(let proposal):
                #expect(maps.contains(proposal.map))
                inFlight += proposers[p].voters.map {
                    InFlight(proposer: p, attempt: attempts[p], voter: $0, kind: .accept(proposal))
                }
            case .chosen(let map):
                chosen.append(map)
            case .failed:
                if attempts[p] < 4 { start(p) }
            }
        }
        #expect(Set(chosen).count <= 1, "seed \(seed): chose \(Set(chosen).map { $0.nodes.map(\.address) })")
    }
}
