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
