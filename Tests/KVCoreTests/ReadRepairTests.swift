import KVCore
import Testing

/// Read repair decisions in `ReadOperation`: who is repaired, with what, and when the read answers.
@Suite struct ReadRepairTests {
    let newest = StoredRecord(version: Version(hlc: 20, writer: 1), tombstone: false, value: [2])
    let older = StoredRecord(version: Version(hlc: 10, writer: 1), tombstone: false, value: [1])
    let tombstone = StoredRecord(version: Version(hlc: 30, writer: 2), tombstone: true, value: [])

    func read(_ repair: ReadOperation.Repair, askAll: Bool = true) -> (ReadOperation, ClientClock) {
        var operation = ReadOperation(
            configuration: ReadOperation.Configuration(
                replicas: ["n1", "n2", "n3"], required: 3, askAll: askAll, deadline: .seconds(1), repair: repair))
        var clock = ClientClock(writer: 9)
        _ = operation.start(clock: &clock)
        return (operation, clock)
    }

    @Test func backgroundRepairsEveryStaleReplicaAndAnswersAtOnce() {
        var (operation, clock) = read(.background)
        _ = operation.handle(.answered("n1", newest, clock: 1), clock: &clock)
        _ = operation.handle(.answered("n2", older, clock: 1), clock: &clock)
        let actions = operation.handle(.answered("n3", nil, clock: 1), clock: &clock)
        #expect(actions.contains(.repair(to: "n2", record: newest)))
        #expect(actions.contains(.repair(to: "n3", record: newest)))
        #expect(!actions.contains(.repair(to: "n1", record: newest)))
        #expect(actions.last.map { if case .complete = $0 { true } else { false } } == true)
        #expect(operation.isComplete)
        #expect(operation.repairs == ["n2", "n3"])
    }

    @Test func blockingRepairAnswersOnlyAfterEveryRepairIsDone() {
        var (operation, clock) = read(.blocking)
        _ = operation.handle(.answered("n1", older, clock: 1), clock: &clock)
        _ = operation.handle(.answered("n2", newest, clock: 1), clock: &clock)
        let actions = operation.handle(.answered("n3", older, clock: 1), clock: &clock)
        #expect(actions == [.repair(to: "n1", record: newest), .repair(to: "n3", record: newest)])
        #expect(!operation.isComplete)
        #expect(operation.handle(.repaired("n1"), clock: &clock).isEmpty)
        let done = operation.handle(.repairFailed("n3", reason: "connection refused"), clock: &clock)
        #expect(done.count == 1)
        #expect(operation.isComplete)
        if case .answered(let result) = operation.outcome {
            #expect(result.newest == newest)
        } else {
            Issue.record("expected an answer, got \(String(describing: operation.outcome))")
        }
    }

    @Test func blockingRepairStillAnswersAtTheDeadline() {
        var (operation, clock) = read(.blocking)
        _ = operation.handle(.answered("n1", older, clock: 1), clock: &clock)
        _ = operation.handle(.answered("n2", newest, clock: 1), clock: &clock)
        _ = operation.handle(.answered("n3", newest, clock: 1), clock: &clock)
        #expect(!operation.isComplete)
        #expect(operation.handle(.deadlinePassed, clock: &clock).count == 1)
        #expect(operation.isComplete)
        #expect(operation.handle(.repaired("n1"), clock: &clock).isEmpty)
    }

    @Test func tombstonesAreRepairedLikeValues() {
        var (operation, clock) = read(.background)
        _ = operation.handle(.answered("n1", newest, clock: 1), clock: &clock)
        _ = operation.handle(.answered("n2", tombstone, clock: 1), clock: &clock)
        let actions = operation.handle(.answered("n3", newest, clock: 1), clock: &clock)
        #expect(actions.contains(.repair(to: "n1", record: tombstone)))
        #expect(actions.contains(.repair(to: "n3", record: tombstone)))
    }

    @Test func agreeingRepliesAndRepairNoneRepairNothing() {
        var (agreeing, clock) = read(.background)
        _ = agreeing.handle(.answered("n1", newest, clock: 1), clock: &clock)
        _ = agreeing.handle(.answered("n2", newest, clock: 1), clock: &clock)
        let actions = agreeing.handle(.answered("n3", newest, clock: 1), clock: &clock)
        #expect(actions.count == 1)
        #expect(agreeing.repairs.isEmpty)

        var (disabled, clock2) = read(.none)
        _ = disabled.handle(.answered("n1", newest, clock: 1), clock: &clock2)
        _ = disabled.handle(.answered("n2", older, clock: 1), clock: &clock2)
        #expect(disabled.handle(.answered("n3", nil, clock: 1), clock: &clock2).count == 1)
        #expect(disabled.repairs.isEmpty)
    }

    /// Every combination of three replicas' answers (nothing, an older value, the newest value, a newer
    /// tombstone, a failure), every R, both repair modes: the replicas repaired are exactly those among
    /// the answers the read used that hold an older version or nothing, with the newest record; a
    /// blocking read answers only after them, a failed read repairs nothing.
    @Test(arguments: [ReadOperation.Repair.background, .blocking])
    func everyCombinationOfAnswers(repair: ReadOperation.Repair) {
        enum Answer: CaseIterable { case nothing, older, newest, tombstone, failed }
        let records: [Answer: StoredRecord] = [.older: older, .newest: newest, .tombstone: tombstone]
        let replicas = ["n1", "n2", "n3"]
        for required in 1...3 {
            for combination in 0..<125 {
                let answers = (0..<3).map { Answer.allCases[(combination / [1, 5, 25][$0]) % 5] }
                let label = "R=\(required) \(repair) \(answers)"
                var operation = ReadOperation(
                    configuration: ReadOperation.Configuration(
                        replicas: replicas, required: required, askAll: true, deadline: .seconds(1), repair: repair))
                var clock = ClientClock(writer: 9)
                _ = operation.start(clock: &clock)
                var actions: [ReadOperation.Action] = []
                // In preference-list order: the read uses the first R successful answers.
                var used: [(String, StoredRecord?)] = []
                for (replica, answer) in zip(replicas, answers) {
                    if answer == .failed {
                        actions += operation.handle(.failed(replica, reason: "down"), clock: &clock)
                    } else {
                        if used.count < required { used.append((replica, records[answer])) }
                        actions += operation.handle(.answered(replica, records[answer], clock: 1), clock: &clock)
                    }
                }
                let repairs = actions.compactMap { action -> (String, StoredRecord)? in
                    if case .repair(let node, let record) = action { (node, record) } else { nil }
                }
                guard used.count == required else {
                    #expect(repairs.isEmpty, "\(label): a failed read repaired \(repairs)")
                    #expect(operation.isComplete, "\(label)")
                    continue
                }
                let newestUsed = used.compactMap(\.1).max { $0.version < $1.version }
                let stale = used.filter { replica, record in
                    guard let newestUsed else { return false }
                    return record.map { $0.version < newestUsed.version } ?? true
                }.map(\.0)
                #expect(repairs.map(\.0) == stale, "\(label)")
                #expect(repairs.allSatisfy { $0.1 == newestUsed }, "\(label)")
                #expect(operation.repairs == stale, "\(label)")
                if repair == .blocking && !stale.isEmpty {
                    #expect(!operation.isComplete, "\(label): answered before its repairs")
                    for node in stale {
                        actions += operation.handle(.repaired(node), clock: &clock)
                    }
                }
                #expect(operation.isComplete, "\(label)")
            }
        }
    }
}
