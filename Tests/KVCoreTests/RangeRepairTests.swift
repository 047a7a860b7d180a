import KVCore
import Testing

/// `RangeRepair`: which co-replica a range is compared with next, and what the repair concludes, for
/// `kvd`'s anti-entropy and the simulator alike.
@Suite struct RangeRepairTests {
    /// What a fake comparison with one co-replica gives: keys this node received, and whether it failed.
    struct Session {
        var keysReceived = 0
        var failed = false
    }

    let range = TokenRangeSpan(start: 10, end: 20)
    let horizon = Version(hlc: 8_000 << 16, writer: 0)

    /// Drives `repair` to the end, each comparison answered by `sessions` (by peer and by how many
    /// times that peer was compared before; a plain success when absent): the peers compared, in
    /// order, and the outcome.
    func run(_ repair: RangeRepair, _ sessions: [String: [Session]] = [:]) -> (
        compared: [String], outcome: RangeRepair.Outcome
    ) {
        var repair = repair
        var compared: [String] = []
        while true {
            switch repair.step {
            case .compare(let peer):
                let times = compared.count { $0 == peer }
                let answers = sessions[peer] ?? []
                let session = times < answers.count ? answers[times] : Session()
                compared.append(peer)
                repair.compared(with: peer, keysReceived: session.keysReceived, failed: session.failed)
            case .finished(let outcome):
                #expect(compared == repair.comparisons && repair.completed == compared.count)
                return (compared, outcome)
            }
        }
    }

    func repair(_ coReplicas: [String], horizon: Version? = nil, grace: Duration? = .seconds(2)) -> RangeRepair {
        RangeRepair(range: range, coReplicas: coReplicas, purgeHorizon: horizon, policy: TombstonePolicy(grace: grace))
    }

    @Test func comparesEachCoReplicaOnceInOrderWhenNoneGivesRecords() {
        let (compared, outcome) = run(repair(["n3", "n1", "n4"]))
        #expect(compared == ["n3", "n1", "n4"])
        #expect(outcome == RangeRepair.Outcome(confirmed: true, purgeBefore: nil))
    }

    /// Only this node's own records went out: the first co-replica giving records needs no second look,
    /// since every later one compared after it.
    @Test func recordsFromTheFirstCoReplicaNeedNoSecondComparison() {
        let (compared, _) = run(repair(["n2", "n3", "n4"]), ["n2": [Session(keysReceived: 5)]])
        #expect(compared == ["n2", "n3", "n4"])
    }

    /// Records a later co-replica gave have not reached the earlier ones: those, up to the last giving
    /// one, are compared again, once, in the same order.
    @Test(arguments: [
        (giving: ["n3"], again: ["n2"]),
        (giving: ["n4"], again: ["n2", "n3"]),
        (giving: ["n3", "n4"], again: ["n2", "n3"]),
        (giving: ["n2", "n3"], again: ["n2"]),
    ])
    func earlierCoReplicasAreComparedAgainAfterALaterOneGaveRecords(giving: [String], again: [String]) {
        let sessions = Dictionary(uniqueKeysWithValues: giving.map { ($0, [Session(keysReceived: 1)]) })
        let (compared, outcome) = run(repair(["n2", "n3", "n4"]), sessions)
        #expect(compared == ["n2", "n3", "n4"] + again)
        #expect(outcome.confirmed)
    }

    /// The second comparisons give records too (writes that arrived meanwhile), but do not start a
    /// third round: the repair ends.
    @Test func theSecondRoundIsTheLast() {
        let (compared, outcome) = run(
            repair(["n2", "n3"]),
            ["n2": [Session(), Session(keysReceived: 3)], "n3": [Session(keysReceived: 2)]])
        #expect(compared == ["n2", "n3", "n2"])
        #expect(outcome.confirmed)
    }

    /// After a failure nothing is compared again: the range is not confirmed, the next pass repairs it.
    /// A failed comparison still counts what it received before it stopped, and the others go on.
    @Test func noSecondRoundAfterAFailure() {
        let afterLaterFailure = run(
            repair(["n2", "n3", "n4"]), ["n3": [Session(keysReceived: 4)], "n4": [Session(failed: true)]])
        #expect(afterLaterFailure.compared == ["n2", "n3", "n4"])
        #expect(!afterLaterFailure.outcome.confirmed)
        let givingFailure = run(repair(["n2", "n3"]), ["n3": [Session(keysReceived: 4, failed: true)]])
        #expect(givingFailure.compared == ["n2", "n3"])
        #expect(!givingFailure.outcome.confirmed)
        let firstFailure = run(repair(["n2", "n3"]), ["n2": [Session(failed: true)]])
        #expect(firstFailure.compared == ["n2", "n3"], "a failure does not stop the other comparisons")
    }

    /// A failure in the second round leaves the range unconfirmed too.
    @Test func aFailureInTheSecondRoundIsNotConfirmed() {
        let (compared, outcome) = run(
            repair(["n2", "n3"], horizon: horizon),
            ["n2": [Session(), Session(failed: true)], "n3": [Session(keysReceived: 1)]])
        #expect(compared == ["n2", "n3", "n2"])
        #expect(outcome == RangeRepair.Outcome(confirmed: false, purgeBefore: nil))
    }

    @Test func aConfirmedRangeWithAHorizonPurgesBeforeIt() {
        #expect(run(repair(["n2", "n3"], horizon: horizon)).outcome.purgeBefore == horizon)
        // Without a horizon (no grace period, ranges moving, a young clock) nothing is purged.
        #expect(
            run(repair(["n2", "n3"], horizon: nil)).outcome == RangeRepair.Outcome(confirmed: true, purgeBefore: nil))
        // Not confirmed: a co-replica that failed may lack a tombstone the others would lose.
        let failed = run(repair(["n2", "n3"], horizon: horizon), ["n3": [Session(failed: true)]])
        #expect(failed.outcome == RangeRepair.Outcome(confirmed: false, purgeBefore: nil))
    }

    /// The simulator's planted bug (`--mutate-purge-without-confirmation`) lives in `TombstonePolicy`,
    /// which the repair asks.
    @Test func theMutationPurgesWithoutConfirmation() {
        var policy = TombstonePolicy(grace: .seconds(2))
        policy.purgesWithoutConfirmation = true
        let mutated = RangeRepair(range: range, coReplicas: ["n2", "n3"], purgeHorizon: horizon, policy: policy)
        let failed = run(mutated, ["n2": [Session(failed: true)]])
        #expect(failed.outcome == RangeRepair.Outcome(confirmed: false, purgeBefore: horizon))
        let withoutHorizon = RangeRepair(range: range, coReplicas: ["n2"], purgeHorizon: nil, policy: policy)
        #expect(run(withoutHorizon, ["n2": [Session(failed: true)]]).outcome.purgeBefore == nil)
    }

    /// A range with no other replica (N = 1) compares nothing and is confirmed at once.
    @Test func noCoReplicasFinishesAtOnce() {
        let repair = repair([], horizon: horizon)
        #expect(repair.step == .finished(RangeRepair.Outcome(confirmed: true, purgeBefore: horizon)))
        #expect(repair.comparisons.isEmpty)
    }
}
