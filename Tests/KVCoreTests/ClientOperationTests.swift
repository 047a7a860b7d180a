import KVCore
import Testing

/// Milliseconds since the epoch of a plausible wall clock (2025-01-01).
private let wallStart: UInt64 = 1_735_689_600_000
private let hourMillis: UInt64 = 3_600_000

struct ClientClockTests {
    @Test
    func stampsIncreaseWithTheWallClockAndWithoutIt() {
        var clock = ClientClock(writer: 7)
        let first = clock.stamp(wallMillis: wallStart)
        #expect(first == Version(hlc: HybridLogicalClock.pack(millis: wallStart, counter: 0), writer: 7))
        // The same millisecond: the counter moves.
        let second = clock.stamp(wallMillis: wallStart)
        #expect(second.hlc == first.hlc + 1)
        // A later millisecond: the wall clock wins again.
        let third = clock.stamp(wallMillis: wallStart + 5)
        #expect(third.millis == wallStart + 5 && third.counter == 0)
        #expect(first < second && second < third)
    }

    @Test
    func aWallClockJumpingBackAnHourNeverMovesStampsBackwards() {
        var clock = ClientClock(writer: 1)
        var previous = clock.stamp(wallMillis: wallStart)
        for offset in 1...1000 {
            // The wall clock jumps back an hour at the 100th stamp and then crawls forward.
            let wall = offset < 100 ? wallStart + UInt64(offset) : wallStart - hourMillis + UInt64(offset)
            let stamp = clock.stamp(wallMillis: wall)
            #expect(stamp > previous, "stamp \(offset) went backwards")
            #expect(stamp.hlc > previous.hlc)
            previous = stamp
        }
        // While the wall clock is behind, only the logical counter moves.
        #expect(previous.millis == wallStart + 99)
    }

    @Test
    func aStampIsGreaterThanEveryClockObserved() {
        var clock = ClientClock(writer: 3)
        let early = clock.stamp(wallMillis: wallStart)
        // A replica an hour ahead.
        let remote = HybridLogicalClock.pack(millis: wallStart + hourMillis, counter: 9)
        clock.observe(remote)
        #expect(clock.last == remote)
        let stamp = clock.stamp(wallMillis: wallStart + 1)
        #expect(stamp.hlc > remote && stamp > early)
        // An older clock changes nothing.
        clock.observe(early.hlc)
        #expect(clock.last == stamp.hlc)
        #expect(clock.stamp(wallMillis: wallStart).hlc == stamp.hlc + 1)
    }

    @Test(arguments: 0..<20 as Range<UInt64>)
    func stampsAreStrictlyIncreasingWhateverHappens(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        var clock = ClientClock(writer: seed + 1, last: UInt64.random(in: 0...1 << 40, using: &random))
        var floor = clock.last
        var previous: Version?
        for step in 0..<500 {
            let wall = wallStart - hourMillis + UInt64.random(in: 0...2 * hourMillis, using: &random)
            if Bool.random(using: &random) {
                let remote = HybridLogicalClock.pack(
                    millis: wallStart - hourMillis + UInt64.random(in: 0...2 * hourMillis, using: &random),
                    counter: UInt16.random(in: 0...UInt16.max, using: &random))
                clock.observe(remote)
                floor = max(floor, remote)
                #expect(clock.last == floor, "seed \(seed) step \(step)")
            } else {
                let stamp = clock.stamp(wallMillis: wall)
                #expect(stamp.hlc > floor, "seed \(seed) step \(step): \(stamp) not past \(floor)")
                #expect(stamp.writer == seed + 1)
                if let previous {
                    #expect(stamp > previous, "seed \(seed) step \(step)")
                }
                previous = stamp
                floor = stamp.hlc
            }
        }
    }
}

struct WriteOperationTests {
    static func operation(_ shape: QuorumShape, retriesMax: Int = 8) -> WriteOperation {
        WriteOperation(
            configuration: .init(
                replicas: shape.replicas, required: shape.required, deadline: .seconds(2),
                supersededRetriesMax: retriesMax))
    }

    static let shape = QuorumShape(n: 3, required: 2)

    @Test(arguments: QuorumShape.all)
    func acknowledgedAtTheWthApply(_ shape: QuorumShape) {
        var clock = ClientClock(writer: 1)
        var write = Self.operation(shape)
        let actions = write.start(clock: &clock, wallMillis: wallStart)
        let version = Version(hlc: HybridLogicalClock.pack(millis: wallStart, counter: 0), writer: 1)
        #expect(
            actions
                == shape.replicas.map { .send(to: $0, version: version, attempt: 1) }
                + [.scheduleDeadline(after: .seconds(2), attempt: 1)])
        #expect(write.version == version && write.attempt == 1)
        for (count, node) in shape.replicas.reversed().enumerated().map({ ($0 + 1, $1) }) {
            let actions = write.handle(.applied(node, attempt: 1, clock: 0), clock: &clock, wallMillis: wallStart)
            if count < shape.required {
                #expect(actions.isEmpty)
                #expect(!write.isComplete)
            } else if count == shape.required {
                let by = Array(shape.replicas.suffix(count))
                #expect(actions == [.complete(.acknowledged(version, by: by))])
                #expect(write.result == .acknowledged(version, by: by))
                #expect(write.unacknowledged == Array(shape.replicas.prefix(shape.n - count)))
            } else {
                #expect(actions.isEmpty, "completed twice")
            }
        }
        #expect(write.isComplete)
        #expect(write.unacknowledged.isEmpty)
    }

    @Test
    func everyReplyClockIsObserved() {
        var clock = ClientClock(writer: 1)
        var write = Self.operation(Self.shape)
        _ = write.start(clock: &clock, wallMillis: wallStart)
        let ahead = HybridLogicalClock.pack(millis: wallStart + hourMillis, counter: 3)
        _ = write.handle(.applied("n2", attempt: 1, clock: ahead), clock: &clock, wallMillis: wallStart)
        #expect(clock.last == ahead)
        #expect(clock.stamp(wallMillis: wallStart).hlc > ahead)
    }

    @Test
    func supersededRestampsPastTheNewerVersionAndRetries() throws {
        var clock = ClientClock(writer: 1)
        var write = Self.operation(Self.shape)
        _ = write.start(clock: &clock, wallMillis: wallStart)
        let first = try #require(write.version)
        #expect(write.handle(.applied("n1", attempt: 1, clock: 0), clock: &clock, wallMillis: wallStart).isEmpty)
        // Another writer, an hour ahead, already wrote the key on n2.
        let current = Version(hlc: HybridLogicalClock.pack(millis: wallStart + hourMillis, counter: 0), writer: 99)
        let actions = write.handle(
            .superseded("n2", attempt: 1, current: current, clock: 0), clock: &clock, wallMillis: wallStart + 1)
        let second = try #require(write.version)
        #expect(write.attempt == 2 && !write.isComplete)
        #expect(second > current && second > first)
        #expect(second.writer == 1)
        #expect(
            actions
                == Self.shape.replicas.map { .send(to: $0, version: second, attempt: 2) }
                + [.scheduleDeadline(after: .seconds(2), attempt: 2)])
        // The new attempt needs W fresh applies: n1's apply of attempt 1 does not count.
        #expect(write.unacknowledged == Self.shape.replicas)
        #expect(write.handle(.applied("n3", attempt: 2, clock: 0), clock: &clock, wallMillis: wallStart).isEmpty)
        let done = write.handle(.applied("n1", attempt: 2, clock: 0), clock: &clock, wallMillis: wallStart)
        #expect(done == [.complete(.acknowledged(second, by: ["n1", "n3"]))])
        // Every later stamp of the client is past the acknowledged version.
        #expect(clock.stamp(wallMillis: wallStart) > second)
    }

    /// A version beyond the client's clock bound cannot be passed: the write ends, saying so, where
    /// it used to stamp below it (and trap an assertion in debug builds).
    @Test
    func aVersionBeyondTheClockBoundEndsTheWrite() throws {
        var clock = ClientClock(
            writer: 1, bound: ClientClock.Bound(maxOffset: .milliseconds(500), wallMillis: { wallStart }))
        var write = Self.operation(Self.shape)
        _ = write.start(clock: &clock, wallMillis: wallStart)
        let current = Version(hlc: HybridLogicalClock.pack(millis: wallStart + hourMillis, counter: 0), writer: 99)
        let actions = write.handle(
            .superseded("n2", attempt: 1, current: current, clock: 0), clock: &clock, wallMillis: wallStart)
        #expect(actions == [.complete(.beyondClockBound(current: current))])
        #expect(write.isComplete && clock.refusedAhead >= 1)
    }

    @Test
    func aRetryStampsPastEveryEarlierStampWhenTheWallClockJumpsBack() throws {
        var clock = ClientClock(writer: 1)
        var write = Self.operation(Self.shape)
        _ = write.start(clock: &clock, wallMillis: wallStart)
        var stamps = [try #require(write.version)]
        for attempt in 1...5 {
            // An old version (from a writer whose clock is behind) still supersedes a faulty replica.
            let current = Version(hlc: UInt64(attempt), writer: 2)
            _ = write.handle(
                .superseded("n3", attempt: attempt, current: current, clock: 0), clock: &clock,
                wallMillis: wallStart - hourMillis)
            let stamp = try #require(write.version)
            #expect(stamp > current && stamp > stamps.last!)
            stamps.append(stamp)
        }
        #expect(write.attempt == 6)
    }

    @Test
    func lateRepliesFromAnEarlierAttemptAreIgnored() throws {
        var clock = ClientClock(writer: 1)
        var write = Self.operation(Self.shape)
        _ = write.start(clock: &clock, wallMillis: wallStart)
        let current = Version(hlc: HybridLogicalClock.pack(millis: wallStart + 10, counter: 0), writer: 2)
        _ = write.handle(
            .superseded("n1", attempt: 1, current: current, clock: 0), clock: &clock, wallMillis: wallStart)
        #expect(write.attempt == 2)
        let second = try #require(write.version)
        // Attempt 1's applies, failures, superseded and deadline arrive late: none counts.
        for event: WriteOperation.Event in [
            .applied("n2", attempt: 1, clock: 0), .applied("n3", attempt: 1, clock: 0),
            .failed("n2", attempt: 1, reason: "connection reset"),
            .superseded("n3", attempt: 1, current: current, clock: 0),
            .deadlinePassed(attempt: 1),
        ] {
            #expect(write.handle(event, clock: &clock, wallMillis: wallStart).isEmpty, "\(event) was not ignored")
        }
        #expect(write.attempt == 2 && write.version == second && !write.isComplete)
        #expect(write.unacknowledged == Self.shape.replicas)
        // A late reply's clock is still observed.
        let ahead = HybridLogicalClock.pack(millis: wallStart + hourMillis, counter: 0)
        _ = write.handle(.applied("n2", attempt: 1, clock: ahead), clock: &clock, wallMillis: wallStart)
        #expect(clock.last == ahead)
        // Attempt 2 completes on its own replies.
        #expect(write.handle(.applied("n2", attempt: 2, clock: 0), clock: &clock, wallMillis: wallStart).isEmpty)
        #expect(
            write.handle(.applied("n3", attempt: 2, clock: 0), clock: &clock, wallMillis: wallStart)
                == [.complete(.acknowledged(second, by: ["n2", "n3"]))])
    }

    @Test(arguments: [0, 1, 3])
    func conflictAfterRetriesMax(_ retriesMax: Int) {
        var clock = ClientClock(writer: 1)
        var write = Self.operation(Self.shape, retriesMax: retriesMax)
        _ = write.start(clock: &clock, wallMillis: wallStart)
        var hlc = HybridLogicalClock.pack(millis: wallStart + hourMillis, counter: 0)
        for attempt in 1...retriesMax + 1 {
            hlc += 10
            let actions = write.handle(
                .superseded("n2", attempt: attempt, current: Version(hlc: hlc, writer: 2), clock: 0),
                clock: &clock, wallMillis: wallStart)
            if attempt <= retriesMax {
                #expect(write.attempt == attempt + 1)
                #expect(actions.count == Self.shape.n + 1)
            } else {
                #expect(actions == [.complete(.conflict(attempts: retriesMax + 1))])
            }
        }
        #expect(write.result == .conflict(attempts: retriesMax + 1))
        #expect(write.attempt == retriesMax + 1)
        // Completed exactly once.
        #expect(write.handle(.applied("n1", attempt: retriesMax + 1, clock: 0), clock: &clock, wallMillis: 0).isEmpty)
        #expect(write.handle(.deadlinePassed(attempt: retriesMax + 1), clock: &clock, wallMillis: 0).isEmpty)
    }

    @Test(arguments: QuorumShape.all)
    func failsFastWithTheQuorumError(_ shape: QuorumShape) throws {
        var clock = ClientClock(writer: 1)
        var write = Self.operation(shape)
        _ = write.start(clock: &clock, wallMillis: wallStart)
        let failing = shape.n - shape.required + 1
        var completion: [WriteOperation.Action] = []
        for node in shape.replicas.prefix(failing) {
            completion = write.handle(.failed(node, attempt: 1, reason: "refused"), clock: &clock, wallMillis: 0)
        }
        guard case .complete(.failed(let error)) = try #require(completion.first), completion.count == 1 else {
            Issue.record("expected a failure, got \(completion)")
            return
        }
        #expect(error.isQuorumUnreachable)
        #expect(error.failed.map(\.node) == Array(shape.replicas.prefix(failing)))
        #expect(write.result == .failed(error))
        #expect(write.unacknowledged == shape.replicas)
        #expect(write.handle(.deadlinePassed(attempt: 1), clock: &clock, wallMillis: 0).isEmpty)
    }

    @Test
    func theAttemptsDeadlineFailsIt() {
        var clock = ClientClock(writer: 1)
        var write = Self.operation(Self.shape)
        _ = write.start(clock: &clock, wallMillis: wallStart)
        _ = write.handle(.applied("n1", attempt: 1, clock: 0), clock: &clock, wallMillis: wallStart)
        let actions = write.handle(.deadlinePassed(attempt: 1), clock: &clock, wallMillis: wallStart)
        guard case .complete(.failed(let error)) = actions.first else {
            Issue.record("expected a failure, got \(actions)")
            return
        }
        #expect(error.isDeadlineExceeded)
        #expect(error.succeeded == ["n1"])
        #expect(write.unacknowledged == ["n2", "n3"])
    }

    @Test
    func operationsOfOneClientShareItsClock() throws {
        var clock = ClientClock(writer: 1)
        var first = Self.operation(Self.shape)
        var second = Self.operation(Self.shape)
        _ = first.start(clock: &clock, wallMillis: wallStart)
        _ = second.start(clock: &clock, wallMillis: wallStart)
        #expect(try #require(second.version) > #require(first.version))
    }
}

struct ReadOperationTests {
    static func operation(required: Int = 2) -> ReadOperation {
        ReadOperation(configuration: .init(replicas: ["n1", "n2", "n3"], required: required, deadline: .seconds(2)))
    }

    @Test
    func startAsksRAndStampsNothing() {
        var clock = ClientClock(writer: 1, last: 42)
        var read = Self.operation()
        #expect(
            read.start(clock: &clock)
                == [.send(to: "n1"), .send(to: "n2"), .scheduleDeadline(after: .seconds(2))])
        #expect(clock.last == 42)
    }

    @Test
    func observesEveryAnswersClockAndTheNewestVersion() throws {
        var clock = ClientClock(writer: 1)
        _ = clock.stamp(wallMillis: wallStart)
        var read = Self.operation()
        _ = read.start(clock: &clock)
        let replicaClock = HybridLogicalClock.pack(millis: wallStart + 100, counter: 0)
        // The newest version was stamped by a writer an hour ahead, further than any replica's clock.
        let newest = StoredRecord(
            version: Version(hlc: HybridLogicalClock.pack(millis: wallStart + hourMillis, counter: 4), writer: 2),
            tombstone: false, value: [1])
        #expect(read.handle(.answered("n1", nil, clock: replicaClock), clock: &clock).isEmpty)
        #expect(clock.last == replicaClock)
        let actions = read.handle(.answered("n2", newest, clock: replicaClock), clock: &clock)
        // The stale replica is repaired (in the background) as the read completes.
        #expect(actions.first == .repair(to: "n1", record: newest))
        let result = try #require(
            actions.lazy.compactMap { if case .complete(.answered(let r)) = $0 { r } else { nil } }.first)
        #expect(result.newest == newest)
        #expect(result.stale == ["n1"])
        #expect(read.isComplete)
        let stamp = clock.stamp(wallMillis: wallStart)
        #expect(stamp > newest.version && stamp.hlc > replicaClock)
        // After completion: no more actions, but clocks are still observed.
        let later = HybridLogicalClock.pack(millis: wallStart + 2 * hourMillis, counter: 0)
        #expect(read.handle(.answered("n3", nil, clock: later), clock: &clock).isEmpty)
        #expect(read.handle(.deadlinePassed, clock: &clock).isEmpty)
        #expect(clock.last == later)
    }

    @Test
    func aFailedReplicaIsReplacedAndTheReadFailsFast() {
        var clock = ClientClock(writer: 1)
        var read = Self.operation()
        _ = read.start(clock: &clock)
        #expect(read.handle(.failed("n1", reason: "refused"), clock: &clock) == [.send(to: "n3")])
        let actions = read.handle(.failed("n3", reason: "refused"), clock: &clock)
        guard case .complete(.failed(let error)) = actions.first else {
            Issue.record("expected a failure, got \(actions)")
            return
        }
        #expect(error.isQuorumUnreachable)
        #expect(read.handle(.answered("n2", nil, clock: 0), clock: &clock).isEmpty)
    }

    @Test
    func speculationAsksOneMore() {
        var clock = ClientClock(writer: 1)
        var read = ReadOperation(
            configuration: .init(
                replicas: ["n1", "n2", "n3"], required: 2, deadline: .seconds(2), speculationDelay: .milliseconds(5)))
        #expect(read.start(clock: &clock).last == .scheduleSpeculation(after: .milliseconds(5)))
        #expect(read.handle(.speculationDue, clock: &clock) == [.send(to: "n3")])
    }
}
