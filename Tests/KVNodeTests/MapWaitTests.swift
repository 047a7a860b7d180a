import KVCore
import KVNode
import KVStorage
import KVWire
import NIOCore
import Synchronization
import Testing

/// A client's write made with a later cluster map than the node's waits for the node to learn it,
/// then is admitted by that map; one whose map never comes is answered by the node's own once the
/// wait is over.
@Suite struct MapWaitTests {
    static func put(_ key: String, epoch: UInt64, keyspace: UInt32) -> Message {
        .putRequest(
            PutRequest(
                key: ByteBuffer(string: key), value: ByteBuffer(string: "v"), version: Version(hlc: 5, writer: 1),
                tombstone: false, origin: .client, epoch: epoch, expiresAtMillis: nil, keyspace: keyspace))
    }

    /// The proof that every one of `voters` accepted `map`.
    static func proof(of map: ClusterMap, by voters: [String]) -> MapProof {
        let ballot = Ballot(round: 1, proposer: "admin#1")
        return MapProof(
            ballot: ballot,
            signatures: voters.map { TestMapVotes(voter: $0).sign(MapProposal(ballot: ballot, map: map))! })
    }

    /// Epoch 2 creates keyspace `later`: a write to it made with epoch 2 reaches a node still at epoch
    /// 1, which would refuse it (no such keyspace in its map). It waits, the node learns epoch 2, and
    /// the write is applied.
    @Test func aClientWriteMadeWithALaterMapWaitsForItAndIsApplied() async throws {
        let first = ServiceFixture.cluster
        let second = try first.applying(.createKeyspace("later", KeyspaceSettings(placement: .simple(replicas: 3))))
        let later = try #require(second.keyspace(named: "later")).id
        let store = InMemoryStore()
        let membership = try Membership(initial: first, store: store, votes: TestMapVotes())
        let (service, _) = try KeyspaceServingTests.service(first, store: store, membership: membership)

        // Not taken on the event loop: it goes to `handle`, which may wait.
        #expect(
            !service.answerWithoutTask(Self.put("k", epoch: 2, keyspace: later), from: ServiceFixture.client) { _ in })
        let answer = Task {
            try await service.handle(Self.put("k", epoch: 2, keyspace: later), from: ServiceFixture.client)
        }
        // The write's task waits once it is counted (no event of its own: polled, with a deadline that
        // only catches a hang; the unit stage's other suites can hold the cooperative threads for
        // tens of seconds).
        let deadline = ContinuousClock.now + .seconds(120)
        while membership.waitingForLaterMaps == 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(membership.waitingForLaterMaps == 1)

        #expect(try membership.learn(second, proof: Self.proof(of: second, by: first.voters)) == .adopted)
        guard case .putResponse(let response) = try await answer.value else {
            Issue.record("the write was not answered with a PutResponse")
            return
        }
        #expect(response.outcome == .applied)
        #expect(membership.waitingForLaterMaps == 0)
        #expect(try store.keyspace(later).get(key: Array("k".utf8))?.value == Array("v".utf8))
    }

    /// A write stating an epoch no map reaches waits out the bound, then the node's own map answers:
    /// here it keeps the key, so the write is applied; a number from a client never holds it longer.
    @Test func aWriteWhoseMapNeverComesIsAnsweredByTheNodesMapAfterTheWait() async throws {
        let store = InMemoryStore()
        let (service, _) = try KeyspaceServingTests.service(ServiceFixture.cluster, store: store)
        let started = ContinuousClock.now
        let answer = try await service.handle(Self.put("k", epoch: .max, keyspace: 0), from: ServiceFixture.client)
        let waited = ContinuousClock.now - started
        guard case .putResponse(let response) = answer else {
            Issue.record("answered \(answer)")
            return
        }
        #expect(response.outcome == .applied)
        // At least the wait; the upper bound only catches a hang (its timer runs on the cooperative
        // threads, which the unit stage's other suites held for 35 s once).
        #expect(waited >= .seconds(3) && waited < .seconds(300), "waited \(waited)")
    }

    /// At most `waitersMax` requests wait for a later map at once; the next is answered at once, and
    /// the map, when it comes, ends every wait.
    @Test func theWaitsAreBoundedInCount() async throws {
        let first = ServiceFixture.cluster
        let second = try first.applying(.setAddress(node: "n2", address: "127.0.0.1:9"))
        let membership = try Membership(initial: first, store: InMemoryStore(), votes: TestMapVotes())
        let limit = Membership.waitersMax
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<limit {
                group.addTask { await membership.untilEpoch(2, atMost: .seconds(120)) }
            }
            let deadline = ContinuousClock.now + .seconds(120)
            while membership.waitingForLaterMaps < limit, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(membership.waitingForLaterMaps == limit)
            // One more: answered at once, not there (without the bound it would be one more waiter).
            let answered = Atomic<Bool>(false)
            let extra = Task {
                let there = await membership.untilEpoch(2, atMost: .seconds(120))
                answered.store(true, ordering: .releasing)
                return there
            }
            while !answered.load(ordering: .acquiring), membership.waitingForLaterMaps == limit,
                ContinuousClock.now < deadline
            {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(membership.waitingForLaterMaps == limit)
            #expect(try membership.learn(second, proof: Self.proof(of: second, by: first.voters)) == .adopted)
            #expect(await extra.value == false)
            var found = 0
            for try await there in group where there { found += 1 }
            #expect(found == limit)
            #expect(membership.waitingForLaterMaps == 0)
        }
    }
}
