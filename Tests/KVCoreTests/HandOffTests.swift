import KVCore
import Testing

/// The hinted-handoff decisions of `WriteOperation`: who gets a hint, at which fallback, and when the
/// write is acknowledged under strict and sloppy quorums.
@Suite struct HandOffTests {
    enum Reply: CaseIterable, CustomStringConvertible {
        case applied, failed, silent
        var description: String { "\(self == .applied ? "A" : self == .failed ? "F" : "S")" }
    }

    /// What the fallbacks do with one replica's hint.
    enum Fate: CaseIterable, CustomStringConvertible {
        case storedAtFirst, storedAtSecond, refusedByAll
        var description: String {
            switch self {
            case .storedAtFirst: "1st"
            case .storedAtSecond: "2nd"
            case .refusedByAll: "none"
            }
        }
    }

    static let replicas = ["n1", "n2", "n3"]
    static let fallbacks = ["f1", "f2"]

    static func operation(required: Int, sloppy: Bool, fallbacks: [String] = fallbacks) -> WriteOperation {
        WriteOperation(
            configuration: .init(
                replicas: replicas, required: required, deadline: .seconds(2), supersededRetriesMax: 0,
                fallbacks: fallbacks, hintsCountTowardQuorum: sloppy))
    }

    /// Every combination of replica replies (applied, failed, silent), of what the fallbacks do with
    /// each hint, of W and of strict/sloppy: the hints go exactly to the failed and silent replicas,
    /// walk the fallbacks in order, and the write is acknowledged exactly when the rule says so.
    @Test(arguments: [false, true])
    func everyCombinationOfReplies(sloppy: Bool) {
        var runs = 0
        for required in 1...3 {
            for combination in 0..<27 {
                let replies = (0..<3).map { Reply.allCases[(combination / [1, 3, 9][$0]) % 3] }
                let handedOff = zip(Self.replicas, replies).filter { $0.1 != .applied }.map(\.0)
                for fateCombination in 0..<pow3(handedOff.count) {
                    let fates = Dictionary(
                        uniqueKeysWithValues: handedOff.enumerated().map { index, replica in
                            (replica, Fate.allCases[(fateCombination / pow3(index)) % 3])
                        })
                    check(required: required, sloppy: sloppy, replies: replies, fates: fates)
                    runs += 1
                }
            }
        }
        // Per replica: applied (no hint), or failed/silent with one of three fates: (1 + 3 + 3)^3.
        #expect(runs == 3 * 343)
    }

    func check(required: Int, sloppy: Bool, replies: [Reply], fates: [String: Fate]) {
        let label = "W=\(required) sloppy=\(sloppy) replies=\(replies) fates=\(fates)"
        var operation = Self.operation(required: required, sloppy: sloppy)
        var clock = ClientClock(writer: 1)
        var pending = operation.start(clock: &clock, wallMillis: 1_000)
        #expect(pending.contains(.scheduleHintDue(after: .seconds(1), attempt: 1)), "\(label)")
        let version = operation.version!
        var hintsSent: [String: [String]] = [:]
        var results: [WriteOperation.WriteResult] = []

        func feed(_ event: WriteOperation.Event) {
            pending += operation.handle(event, clock: &clock, wallMillis: 1_000)
        }
        // Replies first, in preference-list order, then the hint delay, then the hints' answers, then
        // the deadline.
        for (replica, reply) in zip(Self.replicas, replies) {
            switch reply {
            case .applied: feed(.applied(replica, attempt: 1, clock: 5))
            case .failed: feed(.failed(replica, attempt: 1, reason: "connection refused"))
            case .silent: break
            }
        }
        feed(.hintDue(attempt: 1))
        while !pending.isEmpty {
            let action = pending.removeFirst()
            switch action {
            case .hint(let fallback, let replica, let hintVersion, let attempt):
                #expect(hintVersion == version && attempt == 1, "\(label)")
                hintsSent[replica, default: []].append(fallback)
                let fate = fates[replica]
                let stores = fate == .storedAtFirst || (fate == .storedAtSecond && fallback == "f2")
                feed(
                    stores
                        ? .hintStored(fallback, for: replica, attempt: 1, clock: 7)
                        : .hintFailed(fallback, for: replica, attempt: 1, reason: "refused: queue full"))
            case .complete(let result):
                results.append(result)
            case .send, .scheduleDeadline, .scheduleHintDue:
                break
            }
        }
        if results.isEmpty {
            feed(.deadlinePassed(attempt: 1))
            for case .complete(let result) in pending { results.append(result) }
        }

        // Hints: exactly the failed and silent replicas, fallbacks in order, stopping at the first store.
        var expectedHints: [String: [String]] = [:]
        for (replica, fate) in fates {
            expectedHints[replica] = fate == .storedAtFirst ? ["f1"] : ["f1", "f2"]
        }
        #expect(hintsSent == expectedHints, "\(label)")
        let stored = fates.filter { $0.value != .refusedByAll }
        #expect(operation.hinted == stored.mapValues { $0 == .storedAtFirst ? "f1" : "f2" }, "\(label)")

        // The quorum rule.
        let applied = replies.count(where: { $0 == .applied })
        let counted = applied + (sloppy ? stored.count : 0)
        #expect(results.count == 1, "\(label): \(results)")
        switch results.first {
        case .acknowledged(let acknowledged, let by):
            #expect(counted >= required, "\(label): acknowledged with \(counted) of \(required)")
            #expect(acknowledged == version)
            #expect(by.count >= required && Set(by).isSubset(of: Self.replicas), "\(label)")
        case .failed(let error):
            #expect(counted < required, "\(label): failed with \(counted) of \(required): \(error)")
        case .conflict, .beyondClockBound, nil:
            Issue.record("\(label): \(results)")
        }
        #expect(operation.isSettled, "\(label)")
    }

    @Test func strictWritesStillHandOffAfterFailing() {
        var operation = Self.operation(required: 2, sloppy: false)
        var clock = ClientClock(writer: 1)
        _ = operation.start(clock: &clock, wallMillis: 1_000)
        _ = operation.handle(.failed("n1", attempt: 1, reason: "down"), clock: &clock, wallMillis: 1_000)
        let actions = operation.handle(.failed("n2", attempt: 1, reason: "down"), clock: &clock, wallMillis: 1_000)
        // The second failure makes W=2 unreachable: the write fails, and n2 is still handed off.
        #expect(actions.contains(.hint(to: "f1", for: "n2", version: operation.version!, attempt: 1)))
        #expect(actions.contains { if case .complete(.failed) = $0 { true } else { false } })
        #expect(!operation.isSettled)
        _ = operation.handle(.hintStored("f1", for: "n1", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        _ = operation.handle(.hintStored("f1", for: "n2", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        _ = operation.handle(.applied("n3", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        #expect(operation.isSettled)
    }

    /// A replica the failure detector suspects is handed off at the start, and still sent the write.
    @Test func aSuspectedReplicaIsHandedOffAtOnce() {
        var operation = WriteOperation(
            configuration: .init(
                replicas: Self.replicas, required: 2, deadline: .seconds(2), supersededRetriesMax: 0,
                fallbacks: Self.fallbacks, suspected: ["n2", "elsewhere"]))
        var clock = ClientClock(writer: 1)
        let actions = operation.start(clock: &clock, wallMillis: 1_000)
        let version = operation.version!
        #expect(actions.contains(.hint(to: "f1", for: "n2", version: version, attempt: 1)))
        #expect(actions.filter { if case .hint = $0 { true } else { false } }.count == 1)
        #expect(actions.contains(.send(to: "n2", version: version, attempt: 1)))
        // Its hint due later hands nobody off twice.
        _ = operation.handle(.hintStored("f1", for: "n2", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        _ = operation.handle(.applied("n1", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        _ = operation.handle(.applied("n3", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        let due = operation.handle(.hintDue(attempt: 1), clock: &clock, wallMillis: 1_000)
        #expect(!due.contains { if case .hint = $0 { true } else { false } })
        #expect(operation.isSettled)
    }

    @Test func sloppyFailureWaitsForTheHandOffAndNamesItsReasons() throws {
        var operation = Self.operation(required: 3, sloppy: true)
        var clock = ClientClock(writer: 1)
        _ = operation.start(clock: &clock, wallMillis: 1_000)
        _ = operation.handle(.applied("n1", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        _ = operation.handle(.applied("n2", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        // n3 fails: not yet a failure of the write, its hint may still count.
        var actions = operation.handle(.failed("n3", attempt: 1, reason: "reset"), clock: &clock, wallMillis: 1_000)
        #expect(!operation.isComplete)
        actions = operation.handle(
            .hintFailed("f1", for: "n3", attempt: 1, reason: "queue full"), clock: &clock, wallMillis: 1_000)
        #expect(actions == [.hint(to: "f2", for: "n3", version: operation.version!, attempt: 1)])
        actions = operation.handle(
            .hintFailed("f2", for: "n3", attempt: 1, reason: "connection refused"), clock: &clock, wallMillis: 1_000)
        guard case .complete(.failed(let error)) = try #require(actions.last) else {
            Issue.record("expected a failure, got \(actions)")
            return
        }
        let text = "\(error)"
        #expect(text.contains("reset") && text.contains("queue full") && text.contains("connection refused"))
    }

    @Test func hintAnswersFromOtherAttemptsOrFallbacksAreIgnored() {
        var operation = Self.operation(required: 2, sloppy: true)
        var clock = ClientClock(writer: 1)
        _ = operation.start(clock: &clock, wallMillis: 1_000)
        _ = operation.handle(.failed("n1", attempt: 1, reason: "down"), clock: &clock, wallMillis: 1_000)
        // f2 was never asked for n1; n2 was never handed off; a duplicate failure changes nothing.
        #expect(
            operation.handle(.hintStored("f2", for: "n1", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
                .isEmpty)
        #expect(
            operation.handle(.hintStored("f1", for: "n2", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
                .isEmpty)
        #expect(
            operation.handle(.failed("n1", attempt: 1, reason: "down"), clock: &clock, wallMillis: 1_000).isEmpty)
        #expect(operation.hinted.isEmpty && !operation.isComplete)
    }

    @Test func aSupersededAttemptsHintsDoNotCount() {
        var operation = WriteOperation(
            configuration: .init(
                replicas: Self.replicas, required: 2, deadline: .seconds(2), supersededRetriesMax: 3,
                fallbacks: Self.fallbacks, hintsCountTowardQuorum: true))
        var clock = ClientClock(writer: 1)
        _ = operation.start(clock: &clock, wallMillis: 1_000)
        let first = operation.version!
        _ = operation.handle(.failed("n1", attempt: 1, reason: "down"), clock: &clock, wallMillis: 1_000)
        let retry = operation.handle(
            .superseded("n2", attempt: 1, current: Version(hlc: first.hlc + 10, writer: 2), clock: 1), clock: &clock,
            wallMillis: 1_000)
        #expect(retry.contains(.scheduleHintDue(after: .seconds(1), attempt: 2)))
        // The first attempt's hint is stored late: it neither counts nor is reported.
        #expect(
            operation.handle(.hintStored("f1", for: "n1", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
                .isEmpty)
        #expect(operation.hinted.isEmpty && operation.attempt == 2)
    }

    @Test func noFallbacksMeansNoHandOff() {
        var operation = Self.operation(required: 2, sloppy: false, fallbacks: [])
        var clock = ClientClock(writer: 1)
        let start = operation.start(clock: &clock, wallMillis: 1_000)
        #expect(!start.contains { if case .scheduleHintDue = $0 { true } else { false } })
        _ = operation.handle(.applied("n1", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        let actions = operation.handle(.failed("n2", attempt: 1, reason: "down"), clock: &clock, wallMillis: 1_000)
        #expect(!actions.contains { if case .hint = $0 { true } else { false } })
        _ = operation.handle(.applied("n3", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        #expect(operation.isComplete && operation.isSettled)
    }

    /// Without fallbacks a write acknowledged by W replicas settles only once the others answered (or
    /// its deadline passed): a one-shot client closing at the W-th answer dropped the write on its way
    /// to the others, and no hint would bring it there (`kvctl put --consistency one` on 3 nodes, N=3,
    /// left keys on one or two replicas).
    @Test func withoutFallbacksAWriteSettlesWhenEveryReplicaAnswered() {
        var operation = Self.operation(required: 1, sloppy: false, fallbacks: [])
        var clock = ClientClock(writer: 1)
        _ = operation.start(clock: &clock, wallMillis: 1_000)
        _ = operation.handle(.applied("n2", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        #expect(operation.isComplete && !operation.isSettled)
        _ = operation.handle(.failed("n1", attempt: 1, reason: "down"), clock: &clock, wallMillis: 1_000)
        #expect(!operation.isSettled)
        _ = operation.handle(.applied("n3", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        #expect(operation.isSettled)

        var silent = Self.operation(required: 2, sloppy: false, fallbacks: [])
        _ = silent.start(clock: &clock, wallMillis: 1_000)
        _ = silent.handle(.applied("n1", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        _ = silent.handle(.applied("n3", attempt: 1, clock: 1), clock: &clock, wallMillis: 1_000)
        #expect(silent.isComplete && !silent.isSettled)
        _ = silent.handle(.deadlinePassed(attempt: 1), clock: &clock, wallMillis: 1_000)
        #expect(silent.isSettled, "n2 never answered: the deadline ends it")
    }

    /// Random replicas, fallbacks, replies, fallback answers and delivery orders (duplicates included):
    /// at most one hint in flight per replica, hints only for replicas that failed or were silent at the
    /// hint delay, fallbacks in order, one completion that respects the quorum rule, and it settles.
    @Test(arguments: 0..<300 as Range<UInt64>)
    func randomOrders(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        let n = Int.random(in: 1...5, using: &random)
        let replicas = (1...n).map { "n\($0)" }
        let fallbacks = (1...Int.random(in: 1...3, using: &random)).map { "f\($0)" }
        let required = Int.random(in: 1...n, using: &random)
        let sloppy = Bool.random(using: &random)
        var operation = WriteOperation(
            configuration: .init(
                replicas: replicas, required: required, deadline: .seconds(2), supersededRetriesMax: 0,
                fallbacks: fallbacks, hintsCountTowardQuorum: sloppy))
        var clock = ClientClock(writer: 1)
        var pool: [WriteOperation.Event] = [.hintDue(attempt: 1), .deadlinePassed(attempt: 1)]
        var applied: Set<String> = []
        var failed: Set<String> = []
        for replica in replicas {
            switch Int.random(in: 0..<3, using: &random) {
            case 0: pool.append(.applied(replica, attempt: 1, clock: 3))
            case 1: pool.append(.failed(replica, attempt: 1, reason: "down"))
            default: break
            }
            if Bool.random(using: &random), let last = pool.last { pool.append(last) }
        }
        var inFlight: [String: String] = [:]
        var asked: [String: [String]] = [:]
        var storedFor: Set<String> = []
        var hintDuePassed = false
        var completions: [WriteOperation.WriteResult] = []
        let label = "seed \(seed) N=\(n) W=\(required) sloppy=\(sloppy)"

        func perform(_ actions: [WriteOperation.Action]) {
            for action in actions {
                switch action {
                case .hint(let fallback, let replica, _, _):
                    #expect(inFlight[replica] == nil, "\(label): two hints in flight for \(replica)")
                    let order = asked[replica, default: []]
                    #expect(
                        !order.isEmpty || failed.contains(replica) || (hintDuePassed && !applied.contains(replica)),
                        "\(label): \(replica) handed off without failing or staying silent")
                    #expect(fallback == fallbacks[order.count], "\(label): \(replica) asked \(fallback) after \(order)")
                    asked[replica, default: []].append(fallback)
                    inFlight[replica] = fallback
                    pool.append(
                        Bool.random(using: &random)
                            ? .hintStored(fallback, for: replica, attempt: 1, clock: 4)
                            : .hintFailed(fallback, for: replica, attempt: 1, reason: "refused"))
                case .complete(let result):
                    completions.append(result)
                    if case .acknowledged = result {
                        let counted = applied.count + (sloppy ? storedFor.subtracting(applied).count : 0)
                        #expect(counted >= required, "\(label): acknowledged at \(counted)")
                    }
                case .send, .scheduleDeadline, .scheduleHintDue:
                    break
                }
            }
        }
        perform(operation.start(clock: &clock, wallMillis: 1_000))
        while !pool.isEmpty {
            let event = pool.remove(at: Int.random(in: 0..<pool.count, using: &random))
            switch event {
            case .applied(let replica, _, _) where !failed.contains(replica): applied.insert(replica)
            case .failed(let replica, _, _) where !applied.contains(replica): failed.insert(replica)
            case .hintDue: hintDuePassed = true
            case .hintStored(_, let replica, _, _):
                inFlight[replica] = nil
                storedFor.insert(replica)
            case .hintFailed(_, let replica, _, _): inFlight[replica] = nil
            default: break
            }
            perform(operation.handle(event, clock: &clock, wallMillis: 1_000))
        }
        #expect(completions.count == 1, "\(label): \(completions)")
        #expect(operation.isSettled, "\(label)")
        #expect(Set(operation.hinted.keys) == storedFor, "\(label)")
    }
}

private func pow3(_ exponent: Int) -> Int {
    (0..<exponent).reduce(1) { result, _ in result * 3 }
}
