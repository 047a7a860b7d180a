import KVCore
import KVNode
import KVStorage
import Testing

/// `HintAdmission`, the one rule `ReplicaService` and the simulator run for a hint arriving at a
/// fallback: the target check, the store, and the repair mark of a refused hint.
struct HintAdmissionTests {
    let store = InMemoryStore()
    let hints = InMemoryStore()
    let ring: Ring
    let replica: Replica

    init() throws {
        ring = try ServiceFixture.cluster.ring()
        replica = Replica(nodeID: "n1", store: store, maxClockOffset: .seconds(1)) { 1_000 }
    }

    func admit(
        _ admission: HintAdmission, target: String, key: String, hlc: UInt64 = 1 << 16, withoutRing: Bool = false
    ) throws(HintAdmissionError) -> HintAdmission.Outcome {
        let record = StoredRecord(version: Version(hlc: hlc, writer: 1), tombstone: false, value: Array("v".utf8))
        return try admission.admit(
            target: target, key: Array(key.utf8), record: record, map: ServiceFixture.cluster,
            ring: withoutRing ? nil : ring,
            replica: replica, hints: hints, marks: store, nowMillis: 1_000
        ).outcome
    }

    @Test func aHintForAMemberIsStoredAndMarksNothing() throws {
        #expect(try admit(HintAdmission(nodeID: "n1", queueMax: 2), target: "n2", key: "k") == .stored)
        #expect(hints.hintQueueSizes() == ["n2": 1])
        #expect(store.rangesDue().isEmpty)
    }

    @Test func aHintForAStrangerOrForItselfIsRefusedUnstored() {
        let admission = HintAdmission(nodeID: "n1", queueMax: 2)
        #expect(throws: HintAdmissionError.unknownTarget("n9")) { try admit(admission, target: "n9", key: "k") }
        #expect(throws: HintAdmissionError.forSelf("n1")) { try admit(admission, target: "n1", key: "k") }
        #expect(hints.hintQueueSizes().isEmpty)
        #expect(store.rangesDue().isEmpty)
    }

    @Test func aVersionFarAheadOfTheClockIsRefused() {
        let admission = HintAdmission(nodeID: "n1", queueMax: 2)
        #expect(throws: HintAdmissionError.self) { try admit(admission, target: "n2", key: "k", hlc: 1 << 40) }
        #expect(hints.hintQueueSizes().isEmpty)
    }

    @Test func aHintWithoutRoomMarksItsRangeOnceForItsTarget() throws {
        let admission = HintAdmission(nodeID: "n1", queueMax: 1)
        #expect(try admit(admission, target: "n2", key: "a") == .stored)
        let range = ring.range(containing: Token(key: Array("b".utf8)))
        #expect(
            try admit(admission, target: "n2", key: "b")
                == .refused(.refusedQueueFull, mark: .marked(range, isNew: true)))
        #expect(
            try admit(admission, target: "n2", key: "b")
                == .refused(.refusedQueueFull, mark: .marked(range, isNew: false)))
        #expect(store.rangesDue() == [RepairMark(replica: "n2", range: range, firstMarkedMillis: 1_000)])
        #expect(hints.hintQueueSizes() == ["n2": 1])
    }

    @Test func aRefusedHintWhoseMarkCannotBeWrittenSaysSo() throws {
        let admission = HintAdmission(nodeID: "n1", queueMax: 0)
        guard case .refused(_, .failed(let reason)) = try admit(admission, target: "n2", key: "k", withoutRing: true)
        else {
            Issue.record("a mark without a ring must fail")
            return
        }
        #expect(reason.contains("ring"))
        store.close()
        guard case .refused(_, .failed) = try admit(admission, target: "n2", key: "k") else {
            Issue.record("a mark in a closed store must fail")
            return
        }
    }
}
