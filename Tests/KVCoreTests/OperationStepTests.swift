import KVCore
import Testing

/// Each operation's actions in the one shape its drivers perform: what a timer feeds back is decided
/// here, once for the SDK and the simulator.
@Suite struct OperationStepTests {
    let version = Version(hlc: 5 << 16, writer: 9)

    @Test func writeActionsBecomeSendsTimersAndTheAnswer() {
        #expect(
            WriteOperation.Action.send(to: "n1", version: version, attempt: 2).step
                == .send(.put(to: "n1", version: version, attempt: 2)))
        #expect(
            WriteOperation.Action.hint(to: "n4", for: "n2", version: version, attempt: 1).step
                == .send(.hint(to: "n4", for: "n2", version: version, attempt: 1)))
        #expect(
            WriteOperation.Action.scheduleDeadline(after: .seconds(2), attempt: 3).step
                == .timer(after: .seconds(2), .deadlinePassed(attempt: 3)))
        #expect(
            WriteOperation.Action.scheduleHintDue(after: .milliseconds(500), attempt: 1).step
                == .timer(after: .milliseconds(500), .hintDue(attempt: 1)))
        #expect(WriteOperation.Action.complete(.conflict(attempts: 4)).step == .complete(.conflict(attempts: 4)))
    }

    @Test func readActionsBecomeSendsTimersAndTheAnswer() {
        let record = StoredRecord(version: version, tombstone: false, value: [1])
        #expect(ReadOperation.Action.send(to: "n3").step == .send(.get(from: "n3")))
        #expect(ReadOperation.Action.repair(to: "n2", record: record).step == .send(.repair("n2", record)))
        #expect(
            ReadOperation.Action.scheduleDeadline(after: .seconds(1)).step
                == .timer(after: .seconds(1), .deadlinePassed))
        #expect(
            ReadOperation.Action.scheduleSpeculation(after: .milliseconds(30)).step
                == .timer(after: .milliseconds(30), .speculationDue))
    }
}
