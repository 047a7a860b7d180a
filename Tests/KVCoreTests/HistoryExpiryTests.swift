import KVCore
import Testing

/// The register checker with writes that have a time to live (`HistoryOperation.expiresAt`): an
/// expired value reads as deleted from its expiry on and not before, and is purged as a tombstone is.
struct HistoryExpiryTests {
    typealias Ops = HistoryCheckerTests

    /// An acknowledged write of "a" at version 1, [0, 10], that may read as expired from `expiresAt`.
    static func expiringWrite(expiresAt: UInt64 = 100, outcome: HistoryOperation.Outcome = .wrote(version(1)))
        -> HistoryOperation
    {
        var write = Ops.write(0, "a", 0, outcome == .pending ? nil : 10, outcome)
        write.expiresAt = expiresAt
        return write
    }

    @Test func anExpiredValueReadsAsDeletedFromItsExpiryOnAndNotBefore() {
        let write = Self.expiringWrite()
        let expired = Ops.tombstoneRead(1, 100, 110, version(1))
        #expect(RegisterChecker.check([write, expired]).isEmpty)
        // Still with its value before: fine; without it: the value vanished early.
        let live = Ops.read(2, 20, 30, version(1), "a")
        #expect(RegisterChecker.check([write, live]).isEmpty)
        let early = Ops.tombstoneRead(3, 20, 99, version(1))
        #expect(
            RegisterChecker.check([write, early]) == [
                HistoryViolation(kind: .valueMismatch, operations: [write, early])
            ])
        // A value that does not expire never reads as deleted.
        var lasting = write
        lasting.expiresAt = nil
        #expect(
            RegisterChecker.check([lasting, expired])
                == [HistoryViolation(kind: .valueMismatch, operations: [lasting, expired])])
    }

    @Test func withPurgeAbsentIsWhatAnExpiredValueLeaves() {
        let write = Self.expiringWrite()
        let absent = Ops.read(1, 150, 160, nil, nil)
        #expect(RegisterChecker.check([write, absent], tombstonesMayBePurged: true).isEmpty)
        // Without purges, or before the expiry, absent is stale.
        #expect(
            RegisterChecker.check([write, absent])
                == [HistoryViolation(kind: .staleRead, operations: [write, absent])])
        let early = Ops.read(2, 40, 50, nil, nil)
        #expect(
            RegisterChecker.check([write, early], tombstonesMayBePurged: true)
                == [HistoryViolation(kind: .staleRead, operations: [write, early])])
        // An expiring write invoked before the write the read must not be older than does not count.
        let later = Ops.write(3, "b", 20, 30, .wrote(version(2)))
        #expect(
            RegisterChecker.check([write, later, absent], tombstonesMayBePurged: true)
                == [HistoryViolation(kind: .staleRead, operations: [later, absent])])
    }

    @Test(arguments: [HistoryOperation.Outcome.failed, .pending])
    func aVersionNobodyWasToldMayReadAsAnExpiredValue(_ outcome: HistoryOperation.Outcome) {
        let write = Self.expiringWrite(expiresAt: 0, outcome: outcome)
        let expired = Ops.tombstoneRead(1, 20, 30, version(5))
        #expect(RegisterChecker.check([write, expired]).isEmpty)
        // Without a time to live, no value and an unknown version is a phantom (no delete was made).
        var lasting = write
        lasting.expiresAt = nil
        #expect(
            RegisterChecker.check([lasting, expired]) == [HistoryViolation(kind: .phantomRead, operations: [expired])])
    }

    @Test func theExpiryIsTheTenthFieldOfAWritesLine() throws {
        let write = Self.expiringWrite(expiresAt: 2_170)
        #expect(write.line == "0 c1 0x6b31 write 0x61 0 10 wrote \(version(1)) 2170")
        #expect(try HistoryOperation(line: write.line) == write)
        #expect(write.description.hasSuffix("expiring from 2170 by c1 [0, 10] → acknowledged \(version(1))"))
        #expect(throws: HistoryFormatError.self) { try HistoryOperation(line: "1 c2 0x6b31 read - 1 2 read - 5") }
        #expect(throws: HistoryFormatError.self) { try HistoryOperation(line: "1 c1 0x6b31 write 0x61 1 2 failed - x") }
    }

    @Test func theRecorderKeepsTheLatestExpiry() {
        var recorder = HistoryRecorder()
        let id = recorder.invoke(client: "c1", key: Ops.key, kind: .write(value: [1]), at: 5)
        recorder.expires(id, from: 5)
        #expect(recorder.operations[id].expiresAt == 5)
        recorder.complete(id, outcome: .wrote(version(1)), at: 9)
        recorder.expires(id, from: 2_005)
        #expect(recorder.operations[id].expiresAt == 2_005)
    }
}
