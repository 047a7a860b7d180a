import Foundation
import KVCore
import KVNode
import KVStorage
import NIOPosix
import Synchronization
import Testing

/// A hint store that records the size of each `storeHints` call and holds the first until told.
private final class RecordingHints: HintStore {
    let inner = InMemoryStore()
    let calls = Mutex<[Int]>([])
    let firstCallMayEnd = DispatchSemaphore(value: 0)
    let firstCallStarted = DispatchSemaphore(value: 0)

    func storeHints(_ hints: [StoredHint], queueMax: Int, bytesMax: Int) throws(StorageError)
        -> [Result<HintStoreOutcome, StorageError>]
    {
        let first = calls.withLock { calls in
            calls.append(hints.count)
            return calls.count == 1
        }
        if first {
            firstCallStarted.signal()
            firstCallMayEnd.wait()
        }
        return try inner.storeHints(hints, queueMax: queueMax, bytesMax: bytesMax)
    }
    func hints(for target: String, after: HintID?, limit: Int) throws(StorageError) -> [(
        id: HintID, hint: StoredHint
    )] { try inner.hints(for: target, after: after, limit: limit) }
    func deleteHint(_ id: HintID) throws(StorageError) { try inner.deleteHint(id) }
    func hintQueueSizes() -> [String: Int] { inner.hintQueueSizes() }
    func hintBytesHeld() -> Int { inner.hintBytesHeld() }
}

/// The hint group commit (`HintGroup`): the hints that arrive while a batch is being stored go
/// together in the next store write, each admitted as it would have been alone; `HintAdmission`'s
/// batch form is that rule.
extension HintAdmissionTests {
    func offer(target: String, key: String, hlc: UInt64 = 1 << 16) -> HintAdmission.Offer {
        HintAdmission.Offer(
            target: target, key: Array(key.utf8),
            record: StoredRecord(version: Version(hlc: hlc, writer: 1), tombstone: false, value: Array("v".utf8)),
            map: ServiceFixture.cluster, ring: ring, replica: replica, marks: store, nowMillis: 1_000)
    }

    @Test(.timeLimit(.minutes(3)))
    func hintsThatArriveDuringAStoreWriteShareTheNext() throws {
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        let recording = RecordingHints()
        let group = HintGroup(admission: HintAdmission(nodeID: "n1", queueMax: 100), hints: recording, pool: pool)
        let answers = Mutex<[Int: HintAdmission.Admitted]>([:])
        let allAnswered = DispatchSemaphore(value: 0)
        let count = 9
        func admit(_ index: Int) {
            group.admit(offer(target: index == 5 ? "n9" : "n2", key: "k\(index)")) { result in
                let done = answers.withLock { answers in
                    answers[index] = try? result.get()
                    return answers.count == count
                }
                if done { allAnswered.signal() }
            }
        }
        admit(0)
        // The first hint's write is under way; the others arrive meanwhile. Bounded waits: a group
        // that never writes fails the test instead of hanging it.
        let started = recording.firstCallStarted.wait(timeout: .now() + 30)
        for index in 1..<count { admit(index) }
        recording.firstCallMayEnd.signal()
        try #require(started == .success, "the first hint was never stored")
        try #require(allAnswered.wait(timeout: .now() + 30) == .success, "not every hint was answered")
        #expect(
            recording.calls.withLock { $0 } == [1, count - 2], "one write for the first, one for the 7 that waited")
        let seen = answers.withLock { $0 }
        for index in 0..<count where index != 5 {
            #expect((try? seen[index]?.get().outcome) == .stored)
        }
        // The stranger is refused before the store, as alone.
        #expect(throws: HintAdmissionError.unknownTarget("n9")) { try seen[5]?.get() }
        #expect(recording.hintQueueSizes() == ["n2": count - 1])
        try pool.syncShutdownGracefully()
    }

    /// `sync`: the group writes its batch without a sync of its own and answers it only after the
    /// store's next fsync (the WAL syncer's, which the data writes share; held here until the hint is
    /// in the log, so no answer can come before it).
    @Test(.timeLimit(.minutes(3)))
    func aHintIsAnsweredOnlyOnceTheSyncersFsyncMadeItDurable() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("quorumkv-hintgroup-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let durable = try RocksDBStore(directory: path, durability: .sync)
        defer { durable.close() }
        #expect(durable.holdWALSyncsForTesting(true))
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        defer { try? pool.syncShutdownGracefully() }
        let group = HintGroup(admission: HintAdmission(nodeID: "n1", queueMax: 100), hints: durable, pool: pool)
        let answer = Mutex<HintAdmission.Admitted?>(nil)
        let answered = DispatchSemaphore(value: 0)
        group.admit(offer(target: "n2", key: "k")) { result in
            answer.withLock { $0 = try? result.get() }
            answered.signal()
        }
        // Bounded: a group that never stores the hint, or never asks for the fsync (answering without
        // it), fails the test instead of hanging it.
        let deadline = Date().addingTimeInterval(30)
        while durable.walSyncWaitersForTesting == 0, Date() < deadline { usleep(1_000) }
        try #require(durable.walSyncWaitersForTesting == 1, "the group never waited for the fsync")
        try #require(durable.hintQueueSizes() == ["n2": 1], "the hint was never written")
        #expect(durable.walSyncCountForTesting == 0)
        #expect(answered.wait(timeout: .now()) == .timedOut, "no answer before the fsync")
        durable.holdWALSyncsForTesting(false)
        try #require(answered.wait(timeout: .now() + 30) == .success, "never answered after the fsync")
        #expect((try? answer.withLock { $0 }?.get().outcome) == .stored)
        #expect(durable.walSyncCountForTesting >= 1)
    }

    /// The batch form gives each hint what admitting it alone, in order, gives: refusals before the
    /// store, stores, a full queue with its range marked, and the clocks.
    @Test func aBatchIsAdmittedAsEachAloneInOrder() throws {
        let admission = HintAdmission(nodeID: "n1", queueMax: 2)
        let offers = [
            offer(target: "n2", key: "a"), offer(target: "n9", key: "b"), offer(target: "n1", key: "c"),
            offer(target: "n2", key: "d", hlc: 1 << 40), offer(target: "n2", key: "e"),
            offer(target: "n2", key: "f"), offer(target: "n3", key: "f"), offer(target: "n2", key: "a"),
        ]
        let batched = admission.admit(offers, hints: hints)
        // The same offers, one by one, with a replica and stores of their own.
        let aloneStore = InMemoryStore()
        let aloneHints = InMemoryStore()
        let aloneReplica = Replica(nodeID: "n1", store: aloneStore, maxClockOffset: .seconds(1)) { 1_000 }
        let alone = offers.map { offer in
            Result { () throws(HintAdmissionError) in
                try admission.admit(
                    target: offer.target, key: offer.key, record: offer.record, map: offer.map, ring: offer.ring,
                    replica: aloneReplica, hints: aloneHints, marks: aloneStore, nowMillis: offer.nowMillis)
            }
        }
        #expect(batched.map(Self.described) == alone.map(Self.described))
        #expect(hints.hintQueueSizes() == aloneHints.hintQueueSizes())
        #expect(store.rangesDue() == aloneStore.rangesDue())
        #expect(batched.map(Self.described).contains { $0.contains("refusedQueueFull") })
    }

    private static func described(_ admitted: HintAdmission.Admitted) -> String {
        switch admitted {
        case .success(let value): "\(value.outcome) at \(value.clock)"
        case .failure(let error): "\(error)"
        }
    }
}
