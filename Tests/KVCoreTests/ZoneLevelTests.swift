import KVCore
import Testing

/// `local_quorum` and `each_quorum` (issue 20): quorums counted per zone, for reads and writes.
@Suite struct ZoneLevelTests {
    /// Replicas r1…r5 of a key: r1, r2, r3 in dc1 and r4, r5 in dc2 (`zones:dc1=3,dc2=2`).
    static let replicas = ["r1", "r4", "r2", "r5", "r3"]
    static let zones = ["r1": "dc1", "r2": "dc1", "r3": "dc1", "r4": "dc2", "r5": "dc2"]

    @Test func levelsParseAndPrintAsCassandraNamesThem() {
        #expect(ConsistencyLevel(parsing: "local_quorum") == .localQuorum)
        #expect(ConsistencyLevel(parsing: "EACH_QUORUM") == .eachQuorum)
        #expect(ConsistencyLevel.localQuorum.description == "local_quorum")
        #expect(ConsistencyLevel(parsing: ConsistencyLevel.eachQuorum.description) == .eachQuorum)
        #expect(ConsistencyLevel(parsing: "local-quorum") == nil)
    }

    @Test func eachLevelAsksTheGroupsItCountsIn() throws {
        func groups(_ level: ConsistencyLevel, local: String = "dc2") throws -> [ReplicaQuorum] {
            try level.quorums(of: Self.replicas, replicationFactor: 5, zones: Self.zones, localZone: local)
        }
        #expect(try groups(.quorum) == [ReplicaQuorum(replicas: Self.replicas, required: 3)])
        #expect(try groups(.localQuorum) == [ReplicaQuorum(replicas: ["r4", "r5"], required: 2)])
        #expect(try groups(.localQuorum, local: "dc1") == [ReplicaQuorum(replicas: ["r1", "r2", "r3"], required: 2)])
        #expect(
            try groups(.eachQuorum) == [
                ReplicaQuorum(replicas: ["r1", "r2", "r3"], required: 2),
                ReplicaQuorum(replicas: ["r4", "r5"], required: 2),
            ])
        // No zone, or a zone without replicas of the key: refused, saying why.
        let none = try #require(throws: QuorumError.self) { try groups(.localQuorum, local: "") }
        #expect(none.isInvalidConsistency && none.description.contains("no zone"))
        let elsewhere = try #require(throws: QuorumError.self) { try groups(.localQuorum, local: "dc3") }
        #expect(elsewhere.description.contains("none of the key's 5 replicas is in zone dc3"))
    }

    /// `local_quorum` from dc2: the read asks r4 and r5 only and completes on their answers, whatever
    /// dc1 does; a failure in dc2 fails it at once (no other replica of dc2 is left).
    @Test func aLocalQuorumReadWaitsForItsZoneOnly() throws {
        let plan = ReadPlan(level: .localQuorum, deadline: .seconds(1), localZone: "dc2")
        let ring = try Self.ring()
        let list = ring.preferenceList(for: Token(150))
        var read = ReadCoordinator(configuration: try plan.operation(replicas: list, on: ring).coordinator)
        let local = list.filter { Self.ringZones[$0] == "dc2" }
        #expect(read.start().filter { if case .send = $0 { true } else { false } } == local.map { .send(to: $0) })
        #expect(read.handle(.answered(local[0], nil)).isEmpty)
        #expect(read.handle(.answered(local[1], nil)).contains { if case .complete = $0 { true } else { false } })

        var failing = ReadCoordinator(configuration: try plan.operation(replicas: list, on: ring).coordinator)
        _ = failing.start()
        let failed = failing.handle(.failed(local[0], reason: "down"))
        guard case .complete(.failed(let error))? = failed.last else {
            Issue.record("the read did not fail: \(failed)")
            return
        }
        // The error names the group it could not reach.
        #expect(error.description.hasPrefix("read needs 2 of 5 replicas (2 of \(local.joined(separator: ", "))); "))
    }

    /// `each_quorum`: a majority of each zone; a failure is replaced by the next replica of its zone,
    /// and a speculation asks in a zone still short of its count.
    @Test func anEachQuorumReadNeedsEveryZonesMajority() throws {
        let plan = ReadPlan(level: .eachQuorum, deadline: .seconds(1))
        let ring = try Self.ring()
        let list = ring.preferenceList(for: Token(150))
        var configuration = try plan.operation(replicas: list, on: ring).coordinator
        configuration.speculationDelay = .milliseconds(10)
        var read = ReadCoordinator(configuration: configuration)
        let dc1 = list.filter { Self.ringZones[$0] == "dc1" }
        let dc2 = list.filter { Self.ringZones[$0] == "dc2" }
        let sent = read.start().compactMap { if case .send(let node) = $0 { node } else { nil } }
        #expect(Set(sent) == Set(dc1.prefix(2) + dc2))
        // dc1's first fails: its third replica is asked, not one of dc2.
        var speculating = read
        #expect(read.handle(.failed(dc1[0], reason: "down")) == [.send(to: dc1[2])])
        // A speculation asks in dc1, the zone still short of its count that has a replica left.
        #expect(speculating.handle(.answered(dc2[0], nil)).isEmpty)
        #expect(speculating.handle(.speculationDue) == [.send(to: dc1[2])])
        #expect(speculating.handle(.speculationDue).isEmpty)
        #expect(read.handle(.answered(dc1[1], nil)).isEmpty)
        #expect(read.handle(.answered(dc2[0], nil)).isEmpty)
        #expect(read.handle(.answered(dc2[1], nil)).isEmpty)  // dc1 still has one answer of two
        #expect(
            read.handle(.answered(dc1[2], nil)).contains { if case .complete(.answered) = $0 { true } else { false } })
    }

    /// Writes go to every replica; `local_quorum` is acknowledged by its zone's majority alone,
    /// `each_quorum` by each zone's.
    @Test func zoneLevelsAcknowledgeWritesPerZone() throws {
        let ring = try Self.ring()
        var plan = WritePlan(level: .localQuorum, deadline: .seconds(1), supersededRetriesMax: 0)
        plan.localZone = "dc2"
        let write = try plan.operation(for: Token(150), current: ring)
        let dc2 = write.replicas.filter { Self.ringZones[$0] == "dc2" }
        #expect(write.replicas.count == 5)
        #expect(write.quorums == [WriteCoordinator.Quorum(replicas: dc2, required: 2)])
        var coordinator = WriteCoordinator(
            configuration: {
                var c = WriteCoordinator.Configuration(
                    replicas: write.replicas, required: write.required, deadline: .seconds(1))
                c.quorums = write.quorums
                return c
            }())
        _ = coordinator.start()
        #expect(coordinator.handle(.applied(dc2[0])).isEmpty)
        #expect(coordinator.handle(.applied(dc2[1])).contains { if case .complete = $0 { true } else { false } })

        plan.level = .eachQuorum
        let each = try plan.operation(for: Token(150), current: ring)
        #expect(each.quorums.map(\.required) == [2, 2] && each.required == 4)
        plan.localZone = ""
        plan.level = .localQuorum
        #expect(throws: QuorumError.self) { try plan.operation(for: Token(150), current: ring) }
    }

    static let ringZones = ["n1": "dc1", "n2": "dc2", "n3": "dc1", "n4": "dc2", "n5": "dc1", "n6": "dc2", "n7": "dc1"]

    /// n1…n7 at tokens 100…700, zones alternating dc1/dc2; `zones:dc1=3,dc2=2`.
    static func ring() throws -> Ring {
        try Ring(
            nodes: (1...7).map { RingNode(id: "n\($0)", tokens: [UInt64($0) * 100], zone: ringZones["n\($0)"]!) },
            placement: .zones(["dc1": 3, "dc2": 2]))
    }
}
