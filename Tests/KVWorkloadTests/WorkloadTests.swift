import KVCore
import KVWorkload
import Testing

struct WorkloadTests {
    /// YCSB's shares per workload (`workloads/workloada` … `workloadf`).
    static let expectedShares: [(Workload, [OperationType: Double])] = [
        (.a, [.read: 0.5, .update: 0.5]),
        (.b, [.read: 0.95, .update: 0.05]),
        (.c, [.read: 1]),
        (.d, [.read: 0.95, .insert: 0.05]),
        (.f, [.read: 0.5, .readModifyWrite: 0.5]),
    ]

    @Test(arguments: expectedShares)
    func drawsFollowTheWorkloadsMixWithinATolerance(_ workload: Workload, _ expected: [OperationType: Double]) {
        var generator = RequestGenerator(workload: workload, keyCount: 10_000)
        var random = SplitMix64(seed: 21)
        var counts: [OperationType: Int] = [:]
        let draws = 100_000
        for _ in 0..<draws {
            counts[generator.next(keyCount: 10_000, using: &random).operation, default: 0] += 1
        }
        for operation in OperationType.allCases {
            let share = Double(counts[operation, default: 0]) / Double(draws)
            // 100,000 draws: one standard deviation of a 50 % share is 0.16 points; 1 point is 6 of them.
            #expect(abs(share - (expected[operation] ?? 0)) < 0.01, "\(workload) \(operation): \(share)")
        }
    }

    @Test
    func workloadEIsRefusedBecauseItNeedsRangeScans() {
        #expect(throws: WorkloadError.needsRangeScans) { try Workload(name: "e") }
        #expect(throws: WorkloadError.needsRangeScans) { try Workload(name: "E") }
        #expect(
            WorkloadError.needsRangeScans.description == "workload e needs range scans, which QuorumKV does not have")
    }

    @Test
    func unknownNamesAreRefusedAndTheOthersParse() throws {
        #expect(throws: WorkloadError.unknown("g")) { try Workload(name: "g") }
        #expect(throws: WorkloadError.unknown("put")) { try Workload(name: "put") }
        #expect(try ["a", "b", "c", "d", "f", "A"].map { try Workload(name: $0) } == [.a, .b, .c, .d, .f, .a])
    }

    @Test
    func defaultDistributionsAreYCSBs() {
        #expect(Workload.allCases.map(\.defaultDistribution) == [.zipfian, .zipfian, .zipfian, .latest, .zipfian])
    }

    @Test
    func aReadModifyWriteIsOneRequestCountedOnceAsItsOwnOperation() {
        var generator = RequestGenerator(workload: .f, keyCount: 1000)
        var random = SplitMix64(seed: 7)
        let requests = (0..<10_000).map { _ in generator.next(keyCount: 1000, using: &random) }
        var counts: [OperationType: Int] = [:]
        for request in requests { counts[request.operation, default: 0] += 1 }
        // Every request is one count: no read-modify-write shows up as a read plus an update.
        #expect(counts.values.reduce(0, +) == requests.count)
        #expect(counts[.update] == nil && counts[.insert] == nil)
        #expect((4_700...5_300).contains(counts[.readModifyWrite] ?? 0))
        let keyed = requests.compactMap { request -> Int? in
            if case .readModifyWrite(let key) = request { return key } else { return nil }
        }
        #expect(keyed.allSatisfy { (0..<1000).contains($0) })
        #expect(Request.readModifyWrite(key: 3).operation.name == "read-modify-write")
    }

    @Test
    func theSameSeedGivesTheSameRequests() {
        func draw(seed: UInt64) -> [Request] {
            var generator = RequestGenerator(workload: .a, keyCount: 500)
            var random = SplitMix64(seed: seed)
            return (0..<1000).map { _ in generator.next(keyCount: 500, using: &random) }
        }
        #expect(draw(seed: 5) == draw(seed: 5))
        #expect(draw(seed: 5) != draw(seed: 6))
    }

    @Test
    func aMixPicksTheBandOfADraw() {
        let mix = OperationMix([.read: 0.95, .insert: 0.05])
        #expect(mix.operation(at: 0) == .read)
        #expect(mix.operation(at: 0.9499) == .read)
        #expect(mix.operation(at: 0.95) == .insert)
        #expect(mix.operation(at: 0.999_999) == .insert)
        #expect(mix.share(of: .update) == 0)
    }
}
