import KVCore
import Testing

/// The register checker: each rule on a minimal history, the cases it must accept, random
/// linearizable histories (clean, then with one injected stale read), the line format, and size.
struct HistoryCheckerTests {
    static let key = Array("k1".utf8)

    /// A hand-written operation on `key`.
    static func op(
        _ id: Int, _ kind: HistoryOperation.Kind, _ invoked: UInt64, _ completed: UInt64?,
        _ outcome: HistoryOperation.Outcome, client: String = "c1", key: [UInt8] = key
    ) -> HistoryOperation {
        HistoryOperation(
            id: id, client: client, key: key, kind: kind, invokedAt: invoked, completedAt: completed, outcome: outcome)
    }

    static func write(
        _ id: Int, _ value: String, _ invoked: UInt64, _ completed: UInt64?, _ outcome: HistoryOperation.Outcome
    )
        -> HistoryOperation
    {
        op(id, .write(value: Array(value.utf8)), invoked, completed, outcome)
    }

    static func read(_ id: Int, _ invoked: UInt64, _ completed: UInt64, _ got: Version?, _ value: String?)
        -> HistoryOperation
    {
        op(id, .read, invoked, completed, .read(got, value: value.map { Array($0.utf8) }), client: "c2")
    }

    static func tombstoneRead(_ id: Int, _ invoked: UInt64, _ completed: UInt64, _ got: Version) -> HistoryOperation {
        op(id, .read, invoked, completed, .read(got, value: nil), client: "c2")
    }

    // MARK: Each violation, with exactly its minimal sub-history

    @Test func staleReadReportsTheWriteAndTheRead() {
        let w1 = Self.write(0, "a", 0, 10, .wrote(version(1)))
        let w2 = Self.write(1, "b", 20, 30, .wrote(version(2)))
        let r = Self.read(2, 40, 50, version(1), "a")
        let violations = RegisterChecker.check([w1, w2, r])
        #expect(violations == [HistoryViolation(kind: .staleRead, operations: [w2, r])])
        #expect(violations.first?.description.contains("stale read of key \"k1\"") == true)
        #expect(violations.first?.description.contains("version \(version(2))") == true)
    }

    @Test func phantomReadReportsTheReadAlone() {
        let w = Self.write(0, "a", 0, 10, .wrote(version(1)))
        let r = Self.read(1, 20, 30, version(9), "zzz")
        let violations = RegisterChecker.check([w, r])
        #expect(violations == [HistoryViolation(kind: .phantomRead, operations: [r])])
        #expect(violations.first?.description.hasPrefix("phantom read of key \"k1\"") == true)
    }

    @Test func readingAWriteInvokedAfterTheReadCompletedIsPhantom() {
        let r = Self.read(0, 0, 10, version(1), "a")
        let w = Self.write(1, "a", 20, 30, .wrote(version(1)))
        #expect(RegisterChecker.check([r, w]) == [HistoryViolation(kind: .phantomRead, operations: [r, w])])
    }

    @Test func valueMismatchReportsTheWriteAndTheRead() {
        let w = Self.write(0, "a", 0, 10, .wrote(version(1)))
        let r = Self.read(1, 5, 30, version(1), "b")
        let violations = RegisterChecker.check([w, r])
        #expect(violations == [HistoryViolation(kind: .valueMismatch, operations: [w, r])])
        #expect(violations.first?.description.contains("value \"a\"") == true)
    }

    @Test func aValueWhereADeleteWroteATombstoneIsAMismatch() {
        let d = Self.op(0, .delete, 0, 10, .wrote(version(1)))
        let r = Self.read(1, 20, 30, version(1), "a")
        #expect(RegisterChecker.check([d, r]) == [HistoryViolation(kind: .valueMismatch, operations: [d, r])])
        let w = Self.write(2, "a", 40, 50, .wrote(version(2)))
        let tombstone = Self.tombstoneRead(3, 60, 70, version(2))
        #expect(
            RegisterChecker.check([w, tombstone]) == [
                HistoryViolation(kind: .valueMismatch, operations: [w, tombstone])
            ])
    }

    @Test func writesOutOfOrderReportsBothWrites() {
        let w1 = Self.write(0, "a", 0, 10, .wrote(version(5)))
        let w2 = Self.write(1, "b", 20, 30, .wrote(version(3)))
        let violations = RegisterChecker.check([w1, w2])
        #expect(violations == [HistoryViolation(kind: .writesOutOfOrder, operations: [w1, w2])])
        #expect(violations.first?.description.contains("writes out of order on key \"k1\"") == true)
        let same = Self.write(2, "c", 20, 30, .wrote(version(5, writer: 1)))
        #expect(RegisterChecker.check([w1, same]).map(\.kind) == [.writesOutOfOrder])
    }

    // MARK: What must be accepted

    @Test func overlappingOperationsAreNeverStale() {
        let w1 = Self.write(0, "a", 0, 10, .wrote(version(1)))
        let w2 = Self.write(1, "b", 20, 40, .wrote(version(2)))
        // Reads overlapping w2 may see either side of it; one invoked exactly when w2 completed too.
        let reads = [
            Self.read(2, 25, 35, version(1), "a"), Self.read(3, 30, 50, version(2), "b"),
            Self.read(4, 40, 45, version(1), "a"), Self.read(5, 15, 60, version(1), "a"),
        ]
        #expect(RegisterChecker.check([w1, w2] + reads).isEmpty)
        // Concurrent writes may be acknowledged in either version order.
        let w3 = Self.write(6, "c", 100, 130, .wrote(version(9)))
        let w4 = Self.write(7, "d", 110, 120, .wrote(version(8)))
        #expect(RegisterChecker.check([w3, w4]).isEmpty)
    }

    @Test(arguments: [HistoryOperation.Outcome.failed, .pending])
    func unacknowledgedWritesMayOrMayNotBeVisible(_ outcome: HistoryOperation.Outcome) {
        let w1 = Self.write(0, "a", 0, 10, .wrote(version(1)))
        let w2 = Self.write(1, "b", 20, outcome == .pending ? nil : 30, outcome)
        let d = Self.op(2, .delete, 21, outcome == .pending ? nil : 31, outcome)
        let seen = Self.read(3, 40, 50, version(2), "b")
        let notSeen = Self.read(4, 60, 70, version(1), "a")
        let seenAgain = Self.read(5, 80, 90, version(2), "b")
        let tombstone = Self.tombstoneRead(6, 100, 110, version(3))
        #expect(RegisterChecker.check([w1, w2, d, seen, notSeen, seenAgain, tombstone]).isEmpty)
        // Even a read that overlaps the invocation only.
        #expect(RegisterChecker.check([w2, Self.read(7, 15, 20, version(7), "b")]).isEmpty)
        // But not one that completed before the write was invoked.
        let early = Self.read(8, 5, 19, version(7), "b")
        #expect(RegisterChecker.check([w2, early]) == [HistoryViolation(kind: .phantomRead, operations: [early])])
    }

    @Test func anEarlierAttemptOfARestampedWriteMayBeSeenWhileItRuns() {
        let w = Self.write(0, "a", 0, 50, .wrote(version(7)))
        #expect(RegisterChecker.check([w, Self.read(1, 10, 20, version(4), "a")]).isEmpty)
        // Not after the acknowledgement: that is stale.
        let late = Self.read(2, 60, 70, version(4), "a")
        #expect(RegisterChecker.check([w, late]) == [HistoryViolation(kind: .staleRead, operations: [w, late])])
    }

    @Test func aDeletedKeyReadsAsItsTombstone() {
        let w = Self.write(0, "a", 0, 10, .wrote(version(1)))
        let d = Self.op(1, .delete, 20, 30, .wrote(version(2)))
        let r = Self.tombstoneRead(2, 40, 50, version(2))
        #expect(RegisterChecker.check([w, d, r]).isEmpty)
    }

    @Test func anAcknowledgedDeleteFollowedByAbsentIsStale() {
        let d = Self.op(0, .delete, 0, 10, .wrote(version(2)))
        let r = Self.read(1, 20, 30, nil, nil)
        let violations = RegisterChecker.check([d, r])
        #expect(violations == [HistoryViolation(kind: .staleRead, operations: [d, r])])
        #expect(violations.first?.description.contains("tombstone version") == true)
        #expect(RegisterChecker.check([Self.read(2, 0, 5, nil, nil), d]).isEmpty)
    }

    /// Where tombstones may be purged, absent reads as a delete invoked after the write it must not
    /// be older than (acknowledged or failed); absent after a value no delete followed stays stale.
    @Test func withPurgeAbsentMatchesALaterDeleteOnly() {
        let w = Self.write(0, "a", 0, 10, .wrote(version(1)))
        let acknowledgedDelete = Self.op(1, .delete, 20, 30, .wrote(version(2)))
        let failedDelete = Self.op(1, .delete, 20, 30, .failed)
        let absent = Self.read(2, 40, 50, nil, nil)
        #expect(RegisterChecker.check([w, acknowledgedDelete, absent], tombstonesMayBePurged: true).isEmpty)
        #expect(RegisterChecker.check([w, failedDelete, absent], tombstonesMayBePurged: true).isEmpty)
        #expect(RegisterChecker.check([w, failedDelete, absent]).count == 1)
        // A delete before the acknowledged value does not excuse absent.
        let earlyDelete = Self.op(3, .delete, 0, 5, .failed)
        let later = Self.write(4, "b", 10, 15, .wrote(version(3)))
        let absentLater = Self.read(5, 40, 50, nil, nil)
        #expect(
            RegisterChecker.check([earlyDelete, later, absentLater], tombstonesMayBePurged: true)
                == [HistoryViolation(kind: .staleRead, operations: [later, absentLater])])
    }

    @Test func keysAreCheckedIndependently() {
        let w = Self.write(0, "a", 0, 10, .wrote(version(1)))
        let other = Self.op(1, .read, 20, 30, .read(nil, value: nil), key: Array("k2".utf8))
        #expect(RegisterChecker.check([w, other]).isEmpty)
    }

    @Test func unprintableKeysAreShownInHex() {
        let d = Self.op(0, .delete, 0, 10, .wrote(version(2)), key: [0x00, 0xff])
        let r = Self.op(1, .read, 20, 30, .read(nil, value: nil), key: [0x00, 0xff])
        #expect(RegisterChecker.check([d, r]).first?.description.hasPrefix("stale read of key 0x00ff:") == true)
    }

    // MARK: Recorder and line format

    @Test func recorderNumbersOperationsInInvocationOrder() {
        var recorder = HistoryRecorder()
        let a = recorder.invoke(client: "c1", key: Self.key, kind: .write(value: [1]), at: 5)
        let b = recorder.invoke(client: "c2", key: Self.key, kind: .read, at: 6)
        recorder.complete(b, outcome: .read(nil, value: nil), at: 7)
        #expect((a, b) == (0, 1))
        #expect(recorder.operations.map(\.id) == [0, 1])
        #expect(recorder.operations[0].outcome == .pending && recorder.operations[0].completedAt == nil)
        #expect(recorder.operations[1].completedAt == 7)
    }

    @Test func linesRoundTrip() throws {
        let ops = [
            Self.write(0, "a b", 0, 10, .wrote(Version(hlc: 1_700_000_000_000 << 16 | 7, writer: 0xBEEF))),
            Self.op(1, .write(value: []), 3, 12, .failed, client: ""),
            Self.op(2, .delete, 4, nil, .pending, client: "-"),
            Self.op(3, .read, 5, 20, .read(nil, value: nil), client: "client %1 ünï"),
            Self.op(4, .read, 6, 21, .read(version(3), value: nil), key: []),
            Self.op(5, .read, 7, 22, .read(version(4), value: []), key: [0, 255]),
            Self.op(6, .read, 8, nil, .pending),
            Self.op(7, .delete, 9, 30, .wrote(.zero)),
        ]
        for op in ops {
            #expect(try HistoryOperation(line: op.line) == op, "\(op.line)")
            #expect(!op.line.contains("\n"))
        }
        let text = "# a history\n" + ops.map(\.line).joined(separator: "\n") + "\n"
        #expect(try HistoryOperation.lines(text) == ops)
        #expect(
            Self.write(0, "v1", 100, 120, .wrote(version(6 << 16))).line
                == "0 c1 0x6b31 write 0x7631 100 120 wrote 6.0@1")
    }

    @Test(arguments: [
        "", "1 c1 0x6b31 write 0x61 1 2 wrote", "x c1 0x6b31 read - 1 2 read -", "1 c1 6b31 read - 1 2 read -",
        "1 c1 0x6b3 read - 1 2 read -", "1 c1 0x6b31 read - 1 - read -", "1 c1 0x6b31 write - 1 2 failed -",
        "1 c1 0x6b31 read 0x61 1 2 read -", "1 c1 0x6b31 read - 1 2 wrote 1.0@1", "1 c1 0x6b31 write 0x61 3 2 failed -",
        "1 c1 0x6b31 write 0x61 1 2 wrote 1.0", "1 c%G1 0x6b31 read - 1 2 read -", "1 c1 0x6b31 put 0x61 1 2 failed -",
    ])
    func badLinesAreRefused(_ line: String) {
        #expect(throws: HistoryFormatError.self) { try HistoryOperation(line: line) }
    }

    // MARK: Random linearizable histories

    @Test func randomLinearizableHistoriesPassAndOneInjectedStaleReadIsFound() {
        var injected = 0
        for seed in UInt64(0)..<300 {
            var rng = SeededGenerator(seed: seed)
            var history = RegisterSimulation.history(count: 200, keys: 3, using: &rng)
            let clean = RegisterChecker.check(history)
            #expect(clean.isEmpty, "seed \(seed): \(clean.first?.description ?? "")")
            guard clean.isEmpty else { continue }

            // Inject: a read that began after an acknowledgement answers with absent or an older acknowledged version.
            let candidates = history.indices.filter { index in
                guard case .read(let got?, _) = history[index].outcome else { return false }
                return RegisterSimulation.newestAcknowledged(in: history, before: history[index]).map {
                    $0.version == got
                }
                    ?? false
            }
            guard let target = candidates.randomElement(using: &rng) else { continue }
            let newest = RegisterSimulation.newestAcknowledged(in: history, before: history[target])!
            let older = history.compactMap { op -> (Version, HistoryOperation.Kind)? in
                guard op.key == history[target].key, case .wrote(let v) = op.outcome, v < newest.version else {
                    return nil
                }
                return (v, op.kind)
            }
            if let (v, kind) = older.randomElement(using: &rng), Bool.random(using: &rng) {
                if case .write(let value) = kind {
                    history[target].outcome = .read(v, value: value)
                } else {
                    history[target].outcome = .read(v, value: nil)
                }
            } else {
                history[target].outcome = .read(nil, value: nil)
            }
            injected += 1
            let violations = RegisterChecker.check(history)
            let expected = [HistoryViolation(kind: .staleRead, operations: [newest.op, history[target]])]
            #expect(violations == expected, "seed \(seed): \(violations.map(\.description))")
        }
        #expect(injected > 250, "most seeds must have a read to make stale")
    }

    @Test(.timeLimit(.minutes(3)))
    func checksAHundredThousandOperations() {
        var rng = SeededGenerator(seed: 42)
        let history = RegisterSimulation.history(count: 100_000, keys: 50, using: &rng)
        #expect(RegisterChecker.check(history).isEmpty)
    }
}

/// Random linearizable histories: every operation takes effect atomically at a random instant
/// between its invocation and its completion, on one register per key, with versions issued in
/// that order. Failed and pending writes take effect or not, possibly after failing.
enum RegisterSimulation {
    static func history(count: Int, keys: Int, using rng: inout SeededGenerator) -> [HistoryOperation] {
        var ops: [HistoryOperation] = []
        var effects: [(at: UInt64, index: Int)] = []
        var now: UInt64 = 0
        ops.reserveCapacity(count)
        for index in 0..<count {
            now += UInt64.random(in: 0...5, using: &rng)
            let key = Array("key\(Int.random(in: 0..<keys, using: &rng))".utf8)
            let kind: HistoryOperation.Kind
            switch Int.random(in: 0..<20, using: &rng) {
            case 0..<9: kind = .write(value: Array("v\(index)".utf8))
            case 9..<11: kind = .delete
            default: kind = .read
            }
            let completed = now + UInt64.random(in: 0...40, using: &rng)
            var op = HistoryOperation(
                id: index, client: "c\(Int.random(in: 0..<8, using: &rng))", key: key, kind: kind, invokedAt: now,
                completedAt: completed, outcome: .failed)
            switch Int.random(in: 0..<10, using: &rng) {
            case 0:  // failed: took effect or not, maybe later (a partial write repaired afterwards)
                if kind != .read, Bool.random(using: &rng) {
                    effects.append((now + UInt64.random(in: 0...80, using: &rng), index))
                }
            case 1:
                op.completedAt = nil
                op.outcome = .pending
                if kind != .read, Bool.random(using: &rng) {
                    effects.append((now + UInt64.random(in: 0...80, using: &rng), index))
                }
            default:
                op.outcome = kind == .read ? .read(nil, value: nil) : .wrote(.zero)
                effects.append((UInt64.random(in: now...completed, using: &rng), index))
            }
            ops.append(op)
        }
        effects.sort { ($0.at, $0.index) < ($1.at, $1.index) }
        var registers: [[UInt8]: (version: Version, value: [UInt8]?)] = [:]
        var hlc: UInt64 = 0
        for effect in effects {
            let op = ops[effect.index]
            switch op.kind {
            case .read:
                let state = registers[op.key]
                ops[effect.index].outcome = .read(state?.version, value: state?.value)
            case .write, .delete:
                hlc += 1
                let version = Version(hlc: hlc, writer: UInt64(effect.index))
                if case .write(let value) = op.kind {
                    registers[op.key] = (version, value)
                } else {
                    registers[op.key] = (version, nil)
                }
                if op.outcome != .failed, op.outcome != .pending { ops[effect.index].outcome = .wrote(version) }
            }
        }
        return ops
    }

    /// Brute force: the acknowledged write of `read`'s key with the newest version among those
    /// acknowledged strictly before `read` was invoked.
    static func newestAcknowledged(in ops: [HistoryOperation], before read: HistoryOperation) -> (
        op: HistoryOperation, version: Version
    )? {
        var newest: (op: HistoryOperation, version: Version)?
        for op in ops where op.key == read.key {
            guard case .wrote(let version) = op.outcome, let done = op.completedAt, done < read.invokedAt else {
                continue
            }
            if newest == nil || version > newest!.version { newest = (op, version) }
        }
        return newest
    }
}
