import KVCore
import Testing

/// `WritePlan`: the one rule for where a write goes, which the SDK and the simulator both apply.
@Suite struct WritePlanTests {
    /// n1…n4 at tokens 100…400 (N=3): token 150 is kept by n2, n3, n4; n1 is the fallback.
    let current = try! Ring(
        nodes: [100, 200, 300, 400].enumerated().map { RingNode(id: "n\($0 + 1)", tokens: [$1]) }, replicationFactor: 3)
    let plan = WritePlan(level: .quorum, deadline: .seconds(1), supersededRetriesMax: 4)

    @Test func outsideAChangeTheWriteGoesToThePreferenceList() throws {
        let write = try plan.operation(for: Token(150), current: current, suspected: ["n3"])
        #expect(write.replicas == ["n2", "n3", "n4"])
        #expect(write.required == 2)
        #expect(write.quorums.isEmpty)
        #expect(write.fallbacks == ["n1"])
        #expect(write.suspected == ["n3"])
        #expect(!write.hintsCountTowardQuorum)
    }

    /// N replicas on N nodes: no fallback, so the replicas hold each other's hints (a write a replica
    /// missed was left unseen to anti-entropy), never counted toward a sloppy quorum.
    @Test func withoutFallbacksTheReplicasHoldEachOthersHints() throws {
        let three = try Ring(
            nodes: [100, 200, 300].enumerated().map { RingNode(id: "n\($0 + 1)", tokens: [$1]) }, replicationFactor: 3)
        var sloppy = plan
        sloppy.sloppyQuorum = true
        let write = try sloppy.operation(for: Token(150), current: three)
        #expect(write.replicas == ["n2", "n3", "n1"] && write.fallbacks.isEmpty)
        #expect(write.hintsToCoReplicas && !write.hintsCountTowardQuorum)
        #expect(try plan.operation(for: Token(150), current: current).hintsToCoReplicas == false, "n1 is a fallback")
        var off = plan
        off.hintedHandoff = false
        #expect(try off.operation(for: Token(150), current: three).hintsToCoReplicas == false)

        // n3 fails: its hint goes to the first other replica, then the next when that one refuses.
        var operation = WriteOperation(configuration: write)
        var clock = ClientClock(writer: 1)
        _ = operation.start(clock: &clock, wallMillis: 1_000)
        let version = try #require(operation.version)
        _ = operation.handle(.applied("n2", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        let failed = operation.handle(.failed("n3", attempt: 1, reason: "down"), clock: &clock, wallMillis: 1_000)
        #expect(failed.contains(.hint(to: "n2", for: "n3", version: version, attempt: 1)), "\(failed)")
        let refused = operation.handle(
            .hintFailed("n2", for: "n3", attempt: 1, reason: "full"), clock: &clock, wallMillis: 1_000)
        #expect(refused.contains(.hint(to: "n1", for: "n3", version: version, attempt: 1)), "\(refused)")
        _ = operation.handle(.hintStored("n1", for: "n3", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        #expect(!operation.isComplete, "a hint adds no copy: W=2 still waits for n1's own apply")
        _ = operation.handle(.applied("n1", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        #expect(operation.isComplete && operation.isSettled && operation.hinted == ["n3": "n1"])
    }

    /// n5 joins at token 160 and N rises to 4: the write reaches both lists, with each ring's own W.
    @Test func duringAChangeEachRingNeedsItsOwnQuorum() throws {
        let next = try Ring(
            nodes: [100, 200, 300, 400, 160].enumerated().map { RingNode(id: "n\($0 + 1)", tokens: [$1]) },
            replicationFactor: 4)
        var all = plan
        all.level = .all
        let write = try all.operation(for: Token(150), current: current, next: next)
        #expect(write.replicas == ["n2", "n3", "n4", "n5"])
        #expect(
            write.quorums == [
                WriteCoordinator.Quorum(replicas: ["n2", "n3", "n4"], required: 3),
                WriteCoordinator.Quorum(replicas: ["n5", "n2", "n3", "n4"], required: 4),
            ])
        #expect(write.fallbacks == ["n1"])
        // n1 moves to token 160: it becomes a replica of the next ring and is no fallback any more.
        let moved = try Ring(
            nodes: [160, 200, 300, 400].enumerated().map { RingNode(id: "n\($0 + 1)", tokens: [$1]) },
            replicationFactor: 3)
        let toMoved = try plan.operation(for: Token(150), current: current, next: moved)
        #expect(toMoved.replicas == ["n2", "n3", "n4", "n1"])
        #expect(toMoved.fallbacks.isEmpty)
        // A key whose lists do not change needs no second quorum.
        let unchanged = try all.operation(for: Token(250), current: current, next: current)
        #expect(unchanged.quorums.isEmpty)
    }

    /// Six nodes at tokens 100…600 in zones a, b, c, a, b, c; `spread:3/1`: token 150 is kept by n2 (b),
    /// n3 (c), n4 (a). A failed replica's hint goes to the fallback of its own zone first, then the
    /// others in ring order.
    @Test func aHintGoesToAFallbackInTheFailedReplicasZoneFirst() throws {
        let zones = ["a", "b", "c", "a", "b", "c"]
        let ring = try Ring(
            nodes: (0..<6).map { RingNode(id: "n\($0 + 1)", tokens: [UInt64($0 + 1) * 100], zone: zones[$0]) },
            placement: .spread(replicas: 3, perZone: 1))
        let write = try plan.operation(for: Token(150), current: ring)
        #expect(write.replicas == ["n2", "n3", "n4"])
        #expect(write.fallbacks == ["n5", "n6", "n1"])
        var operation = WriteOperation(configuration: write)
        var clock = ClientClock(writer: 1)
        var actions = operation.start(clock: &clock, wallMillis: 1_000)
        actions += operation.handle(.applied("n2", attempt: 1, clock: 5), clock: &clock, wallMillis: 1_000)
        // n4 (zone a) fails: its hint goes to n1 (zone a), the last fallback in ring order.
        actions = operation.handle(.failed("n4", attempt: 1, reason: "refused"), clock: &clock, wallMillis: 1_000)
        #expect(actions.contains { if case .hint(to: "n1", for: "n4", _, _) = $0 { true } else { false } })
        // n1 refuses it: the next is n5, the first of the others in ring order.
        actions = operation.handle(
            .hintFailed("n1", for: "n4", attempt: 1, reason: "full"), clock: &clock, wallMillis: 1_000)
        #expect(actions.contains { if case .hint(to: "n5", for: "n4", _, _) = $0 { true } else { false } })
        // n3 (zone c) fails: n6 (zone c) first.
        actions = operation.handle(.failed("n3", attempt: 1, reason: "refused"), clock: &clock, wallMillis: 1_000)
        #expect(actions.contains { if case .hint(to: "n6", for: "n3", _, _) = $0 { true } else { false } })
        _ = operation.handle(.hintStored("n6", for: "n3", attempt: 1, clock: 6), clock: &clock, wallMillis: 1_000)
        #expect(operation.hinted["n3"] == "n6")
        // Without zones the order is the ring's for every replica.
        let plain = try plan.operation(for: Token(150), current: current)
        #expect(plain.zones.isEmpty)
    }

    @Test func handoffFollowsTheOptions() throws {
        var sloppy = plan
        sloppy.sloppyQuorum = true
        #expect(try sloppy.operation(for: Token(150), current: current).hintsCountTowardQuorum)
        var none = plan
        none.hintedHandoff = false
        none.sloppyQuorum = true
        let write = try none.operation(for: Token(150), current: current)
        #expect(write.fallbacks.isEmpty && !write.hintsCountTowardQuorum)
    }

    @Test func aLevelBeyondNIsRefused() {
        var four = plan
        four.level = .count(4)
        #expect(throws: QuorumError.self) { try four.operation(for: Token(150), current: current) }
    }

    /// The planted bug of the simulator's mutation check lives here, in the production value.
    @Test func theMutationWritesToTheCurrentRingOnly() throws {
        let next = try Ring(
            nodes: [100, 200, 300, 400, 160].enumerated().map { RingNode(id: "n\($0 + 1)", tokens: [$1]) },
            replicationFactor: 3)
        var broken = plan
        broken.writesToCurrentRingOnly = true
        let write = try broken.operation(for: Token(150), current: current, next: next)
        #expect(write.replicas == ["n2", "n3", "n4"] && write.quorums.isEmpty)
    }
}
