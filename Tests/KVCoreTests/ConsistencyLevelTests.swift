import KVCore
import Testing

struct ConsistencyLevelTests {
    struct Row: Sendable {
        var level: ConsistencyLevel
        var n: Int
        var required: Int
    }

    static let rows: [Row] = [
        Row(level: .one, n: 1, required: 1),
        Row(level: .one, n: 5, required: 1),
        Row(level: .quorum, n: 1, required: 1),
        Row(level: .quorum, n: 2, required: 2),
        Row(level: .quorum, n: 3, required: 2),
        Row(level: .quorum, n: 4, required: 3),
        Row(level: .quorum, n: 5, required: 3),
        Row(level: .all, n: 3, required: 3),
        Row(level: .count(1), n: 3, required: 1),
        Row(level: .count(3), n: 3, required: 3),
    ]

    @Test(arguments: rows)
    func resolvesAgainstTheReplicationFactor(_ row: Row) throws {
        #expect(try row.level.required(replicationFactor: row.n) == row.required)
    }

    @Test(arguments: [(ConsistencyLevel.count(0), 3), (.count(4), 3), (.count(-1), 3), (.one, 0), (.quorum, -2)])
    func refusesLevelsThatCannotBeMet(_ level: ConsistencyLevel, _ n: Int) {
        let error = #expect(throws: QuorumError.self) { try level.required(replicationFactor: n) }
        #expect(error?.isInvalidConsistency == true)
        #expect(error?.isQuorumUnreachable == false)
    }

    @Test func invalidCountSaysWhatIsAllowed() {
        let error = #expect(throws: QuorumError.self) { try ConsistencyLevel.count(4).required(replicationFactor: 3) }
        #expect(
            error?.description
                == "consistency level 4 needs 4 replicas but the replication factor is 3; use one, quorum, all or a count in 1...3"
        )
        let zero = #expect(throws: QuorumError.self) { try ConsistencyLevel.one.required(replicationFactor: 0) }
        #expect(zero?.description == "replication factor 0 is invalid: it must be at least 1")
    }

    @Test(arguments: [
        ("one", ConsistencyLevel.one), ("ONE", .one), ("Quorum", .quorum), ("all", .all), ("2", .count(2)),
        ("0", .count(0)), ("12", .count(12)),
    ])
    func parses(_ text: String, _ level: ConsistencyLevel) {
        #expect(ConsistencyLevel(parsing: text) == level)
    }

    @Test(arguments: ["", "two", "-1", "+2", " 2", "2 ", "1.5", "0x2", "99999999999999999999999", "quorum!"])
    func refusesToParse(_ text: String) {
        #expect(ConsistencyLevel(parsing: text) == nil)
    }

    @Test(arguments: [ConsistencyLevel.one, .quorum, .all, .count(3)])
    func descriptionRoundTrips(_ level: ConsistencyLevel) {
        #expect(ConsistencyLevel(parsing: level.description) == level)
    }
}
