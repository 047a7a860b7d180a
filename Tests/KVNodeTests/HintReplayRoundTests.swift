import KVCore
import KVNode
import KVStorage
import Testing

/// `HintReplayRound`, the replay rule `HintReplayer` and the simulator run: of the live hints of one
/// key in a batch only the newest is sent, and the older ones are deleted with it once the target
/// acknowledged it, never before.
struct HintReplayRoundTests {
    let hints = InMemoryStore()

    /// Stores a hint for n2 of each `(key, hlc)` (hlc in units of 2^16, so each is a distinct version)
    /// and returns n2's batch, in the store's version order.
    func batch(_ writes: [(key: String, hlc: UInt64, keyspace: UInt32)]) throws -> [(id: HintID, hint: StoredHint)] {
        for write in writes {
            let record = StoredRecord(
                version: Version(hlc: write.hlc << 16, writer: 1), tombstone: false, value: Array("v".utf8))
            _ = try hints.storeHint(
                StoredHint(
                    target: "n2", key: Array(write.key.utf8), record: record, storedAtMillis: 1_000,
                    keyspace: write.keyspace),
                queueMax: 100)
        }
        return try hints.hints(for: "n2", after: nil, limit: 100)
    }

    func round(_ batch: [(id: HintID, hint: StoredHint)], reachable: Bool = true) -> HintReplayRound {
        HintReplayRound(
            batch: batch, nowMillis: 2_000, window: .seconds(3_600), targetReachable: reachable, concurrency: 8)
    }

    static func sent(_ actions: [HintReplayRound.Action]) -> [HintID] {
        actions.compactMap { if case .send(let id, _) = $0 { id } else { nil } }
    }

    static func deleted(_ actions: [HintReplayRound.Action]) -> [HintID] {
        actions.compactMap { if case .delete(let id, _) = $0 { id } else { nil } }
    }

    @Test func onlyTheNewestHintOfAKeyIsSentAndItsAcknowledgementDeletesTheOlderOnes() throws {
        let hinted = try batch([
            ("a", 1, 0), ("b", 2, 0), ("a", 3, 0), ("a", 4, 0), ("b", 5, 0), ("c", 6, 0),
        ])
        let id = { (key: String, hlc: UInt64) in
            hinted.first { $0.hint.key == Array(key.utf8) && $0.hint.record.version.hlc == hlc << 16 }!.id
        }
        var replay = round(hinted)
        let started = replay.start()
        #expect(Set(Self.sent(started)) == [id("a", 4), id("b", 5), id("c", 6)])
        #expect(Self.deleted(started).isEmpty)
        #expect(replay.sent == 3)

        let a = replay.handle(.acknowledged(id("a", 4)))
        #expect(Set(Self.deleted(a)) == [id("a", 4), id("a", 1), id("a", 3)])
        let b = replay.handle(.acknowledged(id("b", 5)))
        #expect(Set(Self.deleted(b)) == [id("b", 5), id("b", 2)])
        let c = replay.handle(.acknowledged(id("c", 6)))
        #expect(Self.deleted(c) == [id("c", 6)])
        #expect(replay.isFinished)
        #expect(replay.replayed == 6)
        #expect(replay.coalesced == 3)
        #expect(replay.sent == 3)
    }

    @Test func aFailedNewestHintKeepsTheOlderOnesOfItsKey() throws {
        let hinted = try batch([("a", 1, 0), ("a", 2, 0)])
        var replay = round(hinted)
        let started = replay.start()
        #expect(Self.sent(started) == [hinted[1].id])
        let failed = replay.handle(.failed(hinted[1].id, reason: "down again"))
        #expect(Self.deleted(failed).isEmpty)
        #expect(replay.isFinished)
        #expect(replay.replayed == 0)
        #expect(replay.coalesced == 0)
    }

    @Test func theSameKeyInTwoKeyspacesIsTwoKeys() throws {
        let hinted = try batch([("a", 1, 0), ("a", 2, 7)])
        var replay = round(hinted)
        #expect(Set(Self.sent(replay.start())) == Set(hinted.map(\.id)))
    }

    @Test func nothingIsSentOrDeletedWhileTheTargetIsDown() throws {
        var replay = round(try batch([("a", 1, 0), ("a", 2, 0)]), reachable: false)
        #expect(replay.start().isEmpty)
        #expect(replay.isFinished)
    }
}
