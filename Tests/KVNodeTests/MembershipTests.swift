import KVCore
import KVStorage
import KVWire
import NIOCore
import Synchronization
import Testing

@testable import KVNode

/// Test signatures (see KVCoreTests' `TestMapVotes`): a voter's name and the proposal.
struct TestMapVotes: MapVoteSigner, MapVoteVerifier {
    var voter = ""

    func sign(_ proposal: MapProposal) -> MapVoteSignature? {
        MapVoteSignature(voter: voter, certificate: [], signature: Array("\(voter)|\(proposal)".utf8))
    }

    func verify(_ signature: MapVoteSignature, of proposal: MapProposal) -> Bool {
        signature.signature == Array("\(signature.voter)|\(proposal)".utf8)
    }
}

struct MembershipTests {
    static let file = ClusterMap(
        clusterID: "test", epoch: 1, replicationFactor: 1,
        nodes: [
            ClusterMap.Node(id: "n1", address: "127.0.0.1:7411", tokens: [1]),
            ClusterMap.Node(id: "n2", address: "127.0.0.2:7411", tokens: [2]),
        ])

    @Test func votesAndMapsSurviveARestart() throws {
        let store = InMemoryStore()
        let membership = try Membership(initial: Self.file, store: store, votes: TestMapVotes())
        let ballot = Ballot(round: 9, proposer: "admin#1")
        #expect(try membership.prepare(epoch: 2, ballot: ballot, nowMillis: 100).0 == .granted(accepted: nil))
        let next = try Self.file.applying(.setAddress(node: "n2", address: "127.0.0.3:7411"))
        #expect(
            try membership.accept(MapProposal(ballot: ballot, map: next), nowMillis: 100).0.0 == .granted(accepted: nil)
        )

        // Restarted: the promise and the accepted map are still there, so a lower ballot is refused
        // and a new proposer must carry the accepted map on.
        let restarted = try Membership(initial: Self.file, store: store, votes: TestMapVotes())
        #expect(restarted.acceptor.promised == ballot)
        #expect(
            try restarted.prepare(epoch: 2, ballot: Ballot(round: 3, proposer: "b"), nowMillis: 100).0
                == .rejected(promised: ballot))
        let later = Ballot(round: 10, proposer: "b")
        #expect(
            try restarted.prepare(epoch: 2, ballot: later, nowMillis: 100).0
                == .granted(accepted: MapProposal(ballot: ballot, map: next)))

        var heard: [UInt64] = []
        let observed = Mutex<[UInt64]>([])
        restarted.onChange { map in observed.withLock { $0.append(map.epoch) } }
        let proof = MapProof(
            ballot: ballot,
            signatures: ["n1", "n2"].map { TestMapVotes(voter: $0).sign(MapProposal(ballot: ballot, map: next))! })
        #expect(try restarted.learn(next, proof: MapProof(ballot: ballot, signatures: [])) != .adopted)
        #expect(try restarted.learn(next, proof: proof) == .adopted)
        heard = observed.withLock { $0 }
        #expect(heard == [2])
        // The stored map (epoch 2) wins over the cluster file (epoch 1) at the next start, with its
        // proof; both epochs are served to peers that are behind.
        let stored = try Membership(initial: Self.file, store: store, votes: TestMapVotes())
        #expect(stored.current == next && stored.acceptor.proof == proof)
        #expect(try stored.map(atEpoch: 2)?.0 == next)
        #expect(try stored.map(atEpoch: 0)?.1 == proof)
        #expect(try stored.map(atEpoch: 1) == nil)  // the first map came from the file, not a peer
        #expect(try stored.map(atEpoch: 3) == nil)
        // A file an operator moved past the stored epoch wins over it.
        var edited = next
        edited.epoch = 5
        #expect(try Membership(initial: edited, store: store, votes: TestMapVotes()).current == edited)
    }

    @Test func aDataFolderOfAnotherClusterIsRefused() throws {
        let store = InMemoryStore()
        _ = try Membership(initial: Self.file, store: store, votes: TestMapVotes())
        var other = Self.file
        other.clusterID = "other"
        #expect(throws: NodeError.self) { try Membership(initial: other, store: store, votes: TestMapVotes()) }
    }

    /// What a protocol-version-2 node left in its data folder (stored format 2, `LegacyMapBody`s, the
    /// history in `cluster.map.history.*`) is read by this version, and a zoned map of the next epoch
    /// is stored and served in the new form beside it.
    @Test func aDataFolderOfProtocolVersionTwoIsReadAndZonedMapsFollowIt() throws {
        let store = InMemoryStore()
        let ballot = Ballot(round: 4, proposer: "admin#1")
        let epochTwo = try Self.file.applying(.setAddress(node: "n2", address: "127.0.0.3:7411"))
        let proofTwo = MapProof(
            ballot: ballot,
            signatures: ["n1", "n2"].map {
                TestMapVotes(voter: $0).sign(MapProposal(ballot: ballot, map: epochTwo))!
            })
        var state = ByteBuffer()
        state.writeInteger(UInt8(2))
        state.writeLegacyMapBody(try #require(LegacyMapBody(epochTwo)))
        state.writeInteger(UInt8(1))
        state.writeMapProofBody(MapProofBody(proofTwo))
        state.writeInteger(UInt8(0))  // no promise
        state.writeInteger(UInt8(0))  // no accepted proposal
        try store.setMetadata("cluster.map", Array(state.readableBytesView))
        var history = ByteBuffer()
        history.writeLegacyMapBody(try #require(LegacyMapBody(epochTwo)))
        history.writeInteger(UInt8(1))
        history.writeMapProofBody(MapProofBody(proofTwo))
        try store.setMetadata("cluster.map.history.2", Array(history.readableBytesView))

        let membership = try Membership(initial: Self.file, store: store, votes: TestMapVotes())
        #expect(membership.current == epochTwo && membership.acceptor.proof == proofTwo)

        // The next epoch gives the nodes zones: signed, adopted, stored and served in the new form.
        var zoned = epochTwo
        zoned.epoch = 3
        zoned.nodes[0].zone = "dc1"
        zoned.nodes[1].zone = "dc2"
        zoned.placement = .spread(replicas: 1, perZone: 1)
        let later = Ballot(round: 5, proposer: "admin#1")
        let proofThree = MapProof(
            ballot: later,
            signatures: ["n1", "n2"].map { TestMapVotes(voter: $0).sign(MapProposal(ballot: later, map: zoned))! })
        #expect(try membership.learn(zoned, proof: proofThree) == .adopted)
        let restarted = try Membership(initial: Self.file, store: store, votes: TestMapVotes())
        #expect(restarted.current == zoned && restarted.current.node("n2")?.zone == "dc2")
        #expect(try restarted.map(atEpoch: 2)?.0 == epochTwo)
        #expect(try restarted.map(atEpoch: 2)?.1 == proofTwo)
        #expect(try restarted.map(atEpoch: 3)?.0 == zoned)
    }
}
