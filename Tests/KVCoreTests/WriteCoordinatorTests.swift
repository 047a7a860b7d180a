import KVCore
import Testing

struct WriteCoordinatorTests {
    static func coordinator(_ shape: QuorumShape, deadline: Duration = .seconds(2)) -> WriteCoordinator {
        WriteCoordinator(
            configuration: .init(replicas: shape.replicas, required: shape.required, deadline: deadline)
        )
    }

    @Test(arguments: QuorumShape.all)
    func startSendsToEveryReplicaAndSchedulesTheDeadline(_ shape: QuorumShape) {
        var write = Self.coordinator(shape)
        let actions = write.start()
        #expect(actions == shape.replicas.map { .send(to: $0) } + [.scheduleDeadline(after: .seconds(2))])
        #expect(!write.isComplete)
        #expect(write.unacknowledged == shape.replicas)
    }

    @Test(arguments: QuorumShape.all)
    func acknowledgesExactlyAtTheWthApply(_ shape: QuorumShape) {
        var write = Self.coordinator(shape)
        _ = write.start()
        // Apply in reverse ring order so the acknowledged list is checked to be in ring order.
        let order = Array(shape.replicas.reversed())
        for (count, node) in order.enumerated().map({ ($0 + 1, $1) }) {
            let actions = write.handle(.applied(node))
            if count < shape.required {
                #expect(actions.isEmpty, "acknowledged after \(count) of \(shape.required)")
                #expect(!write.isComplete)
            } else if count == shape.required {
                let expected = shape.replicas.filter { order.prefix(count).contains($0) }
                #expect(actions == [.complete(.acknowledged(by: expected))])
                #expect(write.isComplete)
            } else {
                #expect(actions.isEmpty, "completed twice")
            }
            #expect(write.unacknowledged == shape.replicas.filter { !order.prefix(count).contains($0) })
        }
        #expect(write.unacknowledged.isEmpty)
    }

    @Test(arguments: QuorumShape.all)
    func failsFastWhenNMinusWPlusOneReplicasFailed(_ shape: QuorumShape) throws {
        // Some replicas apply first (up to W-1 of them), the rest fail one by one: the failure count
        // alone decides when the quorum is out of reach.
        for appliedFirst in 0..<shape.required {
            var write = Self.coordinator(shape)
            _ = write.start()
            for node in shape.replicas.prefix(appliedFirst) {
                #expect(write.handle(.applied(node)).isEmpty)
            }
            let failing = shape.replicas.dropFirst(appliedFirst)
            let failuresToFail = shape.n - shape.required + 1
            #expect(failing.count >= failuresToFail)
            for (count, node) in failing.enumerated().map({ ($0 + 1, $1) }) {
                let actions = write.handle(.failed(node, reason: "connection refused"))
                guard count == failuresToFail else {
                    #expect(actions.isEmpty, "completed at failure \(count), expected \(failuresToFail)")
                    continue
                }
                let error = try #require(actions.first?.completion?.error)
                #expect(actions.count == 1)
                #expect(error.isQuorumUnreachable)
                #expect(error.required == shape.required)
                #expect(error.replicas == shape.n)
                #expect(error.succeeded == Array(shape.replicas.prefix(appliedFirst)))
                #expect(error.failed.map(\.node) == Array(failing.prefix(count)))
                #expect(error.failed.allSatisfy { $0.reason == "connection refused" })
            }
            #expect(write.isComplete)
        }
    }

    @Test(arguments: QuorumShape.all)
    func deadlineFailsAndListsTheSilentReplicas(_ shape: QuorumShape) throws {
        var write = Self.coordinator(shape, deadline: .milliseconds(1500))
        _ = write.start()
        let applied = Array(shape.replicas.prefix(shape.required - 1))
        for node in applied {
            _ = write.handle(.applied(node))
        }
        // One failure too, when that still leaves the quorum reachable.
        var failedNode: String?
        if shape.n - shape.required >= 1 {
            failedNode = shape.replicas[shape.required - 1]
            #expect(write.handle(.failed(failedNode!, reason: "disk full")).isEmpty)
        }
        let actions = write.handle(.deadlinePassed)
        let error = try #require(actions.first?.completion?.error)
        #expect(actions.count == 1)
        #expect(error.isDeadlineExceeded)
        #expect(error.succeeded == applied)
        let silent = shape.replicas.filter { !applied.contains($0) && $0 != failedNode }
        let expected =
            shape.replicas.compactMap { node -> ReplicaFailure? in
                if node == failedNode { return ReplicaFailure(node: node, reason: "disk full") }
                if silent.contains(node) { return ReplicaFailure(node: node, reason: "no answer within 1.5s") }
                return nil
            }
        #expect(error.failed == expected)
        #expect(write.handle(.deadlinePassed).isEmpty)
        #expect(write.unacknowledged == shape.replicas.filter { !applied.contains($0) })
        // A late acknowledgement changes nothing but takes the replica off the hint list.
        let late = silent.first!
        #expect(write.handle(.applied(late)).isEmpty)
        #expect(!write.unacknowledged.contains(late))
        #expect(write.outcome == .failed(error))
    }

    @Test(arguments: QuorumShape.all)
    func supersededBeforeCompletionIsNeverAcknowledged(_ shape: QuorumShape) {
        var write = Self.coordinator(shape)
        _ = write.start()
        for node in shape.replicas.prefix(shape.required - 1) {
            _ = write.handle(.applied(node))
        }
        let node = shape.replicas[shape.required - 1]
        #expect(write.handle(.superseded(node, current: version(70))) == [.complete(.superseded(current: version(70)))])
        for node in shape.replicas.dropFirst(shape.required) {
            #expect(write.handle(.applied(node)).isEmpty)
            #expect(write.handle(.superseded(node, current: version(90))).isEmpty)
        }
        #expect(write.outcome == .superseded(current: version(70)))
        #expect(!write.unacknowledged.contains(node), "a superseding replica needs no hint")
    }

    @Test func supersededAfterAcknowledgementChangesNothing() {
        var write = Self.coordinator(QuorumShape(n: 3, required: 2))
        _ = write.start()
        _ = write.handle(.applied("n1"))
        #expect(write.handle(.applied("n2")) == [.complete(.acknowledged(by: ["n1", "n2"]))])
        #expect(write.handle(.superseded("n3", current: version(99))).isEmpty)
        #expect(write.outcome == .acknowledged(by: ["n1", "n2"]))
    }

    @Test func duplicatesAndStrangersAreIgnored() {
        var write = Self.coordinator(QuorumShape(n: 3, required: 2))
        _ = write.start()
        #expect(write.handle(.applied("n1")).isEmpty)
        #expect(write.handle(.applied("n1")).isEmpty, "a duplicate counted twice")
        #expect(write.handle(.applied("n9")).isEmpty, "a stranger counted")
        #expect(write.handle(.failed("n1", reason: "late error")).isEmpty)
        #expect(write.handle(.superseded("n1", current: version(5))).isEmpty, "a second reply from n1 counted")
        #expect(write.handle(.failed("n9", reason: "?")).isEmpty)
        #expect(!write.isComplete)
        #expect(write.handle(.applied("n3")) == [.complete(.acknowledged(by: ["n1", "n3"]))])
    }

    @Test func errorNamesCountsAndFailedReplicas() throws {
        var write = Self.coordinator(QuorumShape(n: 3, required: 2))
        _ = write.start()
        _ = write.handle(.failed("n1", reason: "connection refused"))
        _ = write.handle(.applied("n2"))
        let error = try #require(write.handle(.deadlinePassed).first?.completion?.error)
        #expect(
            error.description
                == "write needs 2 of 3 replicas; 1 acknowledged (n2); failed: n1 (connection refused), n3 (no answer within 2s)"
        )

        var unreachable = Self.coordinator(QuorumShape(n: 3, required: 3))
        _ = unreachable.start()
        let refused = try #require(unreachable.handle(.failed("n2", reason: "storage failure")).first?.completion)
        #expect(
            refused.error?.description == "write needs 3 of 3 replicas; 0 acknowledged; failed: n2 (storage failure)")
    }

    @Test(arguments: [
        (Duration.seconds(2), "2s"), (.milliseconds(1500), "1.5s"), (.milliseconds(250), "250ms"),
        (.milliseconds(1001), "1.001s"), (.microseconds(1500), "1500µs"), (.nanoseconds(40), "40ns"),
        (.seconds(90), "90s"),
    ])
    func deadlinesAreWrittenShortly(_ deadline: Duration, _ text: String) throws {
        var write = WriteCoordinator(configuration: .init(replicas: ["a"], required: 1, deadline: deadline))
        _ = write.start()
        let error = try #require(write.handle(.deadlinePassed).first?.completion?.error)
        #expect(error.failed == [ReplicaFailure(node: "a", reason: "no answer within \(text)")])
    }
}
