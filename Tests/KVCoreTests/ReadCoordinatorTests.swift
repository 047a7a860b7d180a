import KVCore
import Testing

struct ReadCoordinatorTests {
    static func coordinator(
        _ shape: QuorumShape,
        askAll: Bool = false,
        deadline: Duration = .seconds(2),
        speculationDelay: Duration? = nil
    ) -> ReadCoordinator {
        ReadCoordinator(
            configuration: .init(
                replicas: shape.replicas,
                required: shape.required,
                askAll: askAll,
                deadline: deadline,
                speculationDelay: speculationDelay
            )
        )
    }

    @Test(arguments: QuorumShape.all)
    func startAsksTheFirstRInRingOrder(_ shape: QuorumShape) {
        var read = Self.coordinator(shape)
        #expect(
            read.start() == shape.replicas.prefix(shape.required).map { .send(to: $0) } + [
                .scheduleDeadline(after: .seconds(2))
            ])

        var speculative = Self.coordinator(shape, speculationDelay: .milliseconds(30))
        var expected = shape.replicas.prefix(shape.required).map { ReadCoordinator.Action.send(to: $0) }
        expected.append(.scheduleDeadline(after: .seconds(2)))
        if shape.required < shape.n {
            expected.append(.scheduleSpeculation(after: .milliseconds(30)))
        }
        #expect(speculative.start() == expected)
    }

    @Test(arguments: QuorumShape.all)
    func askAllSendsToAllNAtStart(_ shape: QuorumShape) {
        var read = Self.coordinator(shape, askAll: true, speculationDelay: .milliseconds(30))
        #expect(read.start() == shape.replicas.map { .send(to: $0) } + [.scheduleDeadline(after: .seconds(2))])
        #expect(read.handle(.speculationDue).isEmpty, "nobody is left to ask")
    }

    @Test(arguments: QuorumShape.all)
    func completesExactlyAtTheRthAnswerWithTheNewestOfThem(_ shape: QuorumShape) throws {
        var read = Self.coordinator(shape, askAll: true)
        _ = read.start()
        // Replica i holds version 10*i, except every third holds nothing; answers arrive in reverse.
        func held(_ index: Int) -> StoredRecord? { index % 3 == 2 ? nil : record(UInt64(10 * (index + 1))) }
        let order = Array(shape.replicas.indices.reversed())
        for (count, index) in order.enumerated().map({ ($0 + 1, $1) }) {
            let actions = read.handle(.answered(shape.replicas[index], held(index)))
            guard count == shape.required else {
                #expect(actions.isEmpty, "completed at answer \(count), expected \(shape.required)")
                continue
            }
            let result = try #require(actions.first?.completion?.result)
            let answered = order.prefix(count)
            let newest = answered.compactMap(held).max { $0.version < $1.version }
            #expect(result.newest == newest)
            #expect(result.answers.count == count)
            for index in answered {
                #expect(result.answers[shape.replicas[index]] == .some(held(index)?.version))
            }
            let stale = answered.sorted().filter { newest != nil && (held($0)?.version ?? .zero) < newest!.version }
            #expect(result.stale == stale.map { shape.replicas[$0] })
        }
        #expect(read.isComplete)
    }

    struct NewestRow: Sendable, CustomStringConvertible {
        var name: String
        var answers: [StoredRecord?]
        var newest: StoredRecord?
        var stale: [String]
        var description: String { name }
    }

    static let newestRows: [NewestRow] = [
        NewestRow(name: "all agree", answers: [record(5), record(5), record(5)], newest: record(5), stale: []),
        NewestRow(
            name: "newest in the middle", answers: [record(5), record(9), record(7)], newest: record(9),
            stale: ["n1", "n3"]),
        NewestRow(name: "nobody has it", answers: [nil, nil, nil], newest: nil, stale: []),
        NewestRow(name: "one has it", answers: [nil, record(3), nil], newest: record(3), stale: ["n1", "n3"]),
        NewestRow(
            name: "a tombstone is the newest answer",
            answers: [record(5), record(8, tombstone: true), nil],
            newest: record(8, tombstone: true),
            stale: ["n1", "n3"]
        ),
        NewestRow(
            name: "a tombstone loses to a newer value",
            answers: [record(4, tombstone: true), record(6), record(6)],
            newest: record(6),
            stale: ["n1"]
        ),
    ]

    @Test(arguments: newestRows)
    func newestWinsAndStaleIsExact(_ row: NewestRow) throws {
        let shape = QuorumShape(n: row.answers.count, required: row.answers.count)
        var read = Self.coordinator(shape)
        _ = read.start()
        var actions: [ReadCoordinator.Action] = []
        for (node, answer) in zip(shape.replicas, row.answers) {
            actions = read.handle(.answered(node, answer))
        }
        let result = try #require(actions.first?.completion?.result)
        #expect(result.newest == row.newest)
        #expect(result.stale == row.stale)
        #expect(
            result.answers == Dictionary(uniqueKeysWithValues: zip(shape.replicas, row.answers.map { $0?.version })))
    }

    @Test(arguments: QuorumShape.all)
    func aFailedReplicaIsReplacedByTheNextUnaskedOne(_ shape: QuorumShape) throws {
        var read = Self.coordinator(shape)
        _ = read.start()
        var asked = shape.required
        let failuresToFail = shape.n - shape.required + 1
        for count in 1...failuresToFail {
            let actions = read.handle(.failed(shape.replicas[count - 1], reason: "connection reset"))
            if count < failuresToFail {
                #expect(actions == [.send(to: shape.replicas[asked])])
                asked += 1
                continue
            }
            let error = try #require(actions.first?.completion?.error)
            #expect(actions.count == 1, "asked another replica although the read already failed")
            #expect(error.isQuorumUnreachable)
            #expect(error.failed.map(\.node) == Array(shape.replicas.prefix(count)))
            #expect(error.succeeded.isEmpty)
        }
        #expect(asked == shape.n)
        #expect(read.isComplete)
    }

    @Test func speculationAsksExactlyOneMore() {
        var read = Self.coordinator(QuorumShape(n: 5, required: 2), speculationDelay: .milliseconds(40))
        _ = read.start()
        #expect(read.handle(.speculationDue) == [.send(to: "n3")])
        _ = read.handle(.answered("n3", record(1)))
        #expect(read.handle(.speculationDue) == [.send(to: "n4")], "a further speculationDue asks one more")
        let done = read.handle(.answered("n1", record(2)))
        #expect(done.first?.completion?.result?.newest == record(2))
        #expect(read.handle(.speculationDue).isEmpty, "speculated after completion")
    }

    @Test func speculationWithNobodyLeftDoesNothing() {
        var read = Self.coordinator(QuorumShape(n: 3, required: 2), speculationDelay: .milliseconds(40))
        _ = read.start()
        #expect(read.handle(.failed("n1", reason: "refused")) == [.send(to: "n3")])
        #expect(read.handle(.speculationDue).isEmpty)
    }

    @Test func deadlineListsTheAskedReplicasThatStayedSilent() throws {
        var read = Self.coordinator(QuorumShape(n: 4, required: 3), deadline: .milliseconds(800))
        _ = read.start()
        _ = read.handle(.answered("n2", nil))
        #expect(read.handle(.failed("n1", reason: "tls handshake failed")) == [.send(to: "n4")])
        let error = try #require(read.handle(.deadlinePassed).first?.completion?.error)
        #expect(error.isDeadlineExceeded)
        #expect(
            error.description
                == "read needs 3 of 4 replicas; 1 answered (n2); failed: n1 (tls handshake failed), n3 (no answer within 800ms), n4 (no answer within 800ms)"
        )
        #expect(read.handle(.answered("n3", record(1))).isEmpty)
        #expect(read.handle(.deadlinePassed).isEmpty)
    }

    @Test func duplicatesAndUnaskedRepliesAreIgnored() {
        var read = Self.coordinator(QuorumShape(n: 3, required: 2))
        _ = read.start()
        #expect(read.handle(.answered("n1", record(1))).isEmpty)
        #expect(read.handle(.answered("n1", record(1))).isEmpty, "a duplicate counted twice")
        #expect(read.handle(.answered("n3", record(9))).isEmpty, "an unasked replica counted")
        #expect(read.handle(.answered("zz", record(9))).isEmpty, "a stranger counted")
        #expect(read.handle(.failed("n1", reason: "late")).isEmpty)
        let actions = read.handle(.answered("n2", record(2)))
        #expect(
            actions.first?.completion?.result
                == ReadCoordinator.ReadResult(
                    newest: record(2),
                    answers: ["n1": version(1), "n2": version(2)],
                    stale: ["n1"]
                ))
    }
}
