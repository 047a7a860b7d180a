import KVCore
import KVNode
import KVRPC
import KVStorage
import KVTLS
import KVWire
import NIOCore
import Testing

/// `GetBatch` and `PutBatch` (protocol version 4): each key answered as its own `Get` or `Put` would
/// be, errors included, and a batch's writes sharing the group commit.
@Suite(.timeLimit(.minutes(3)))
struct BatchServiceTests {
    static func key(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    /// A request's answer, or the code of the `Error` it was refused with.
    enum Answer: Equatable {
        case message(Message)
        case refused(ErrorCode)
    }

    static func answer(_ request: Message, _ fixture: ServiceFixture) async -> Answer {
        do {
            return .message(try await fixture.service.handle(request, from: ServiceFixture.client))
        } catch let error as RPCError {
            return .refused(error.remoteCode ?? .internal)
        } catch {
            return .refused(.internal)
        }
    }

    @Test func aGetBatchAnswersEachKeyAsItsOwnGetWould() async throws {
        // n2 keeps only part of the ring (N=2 of 3 nodes): some keys are refused `notReplica`.
        let fixture = try ServiceFixture(nodeID: "n2", admitsByRange: true)
        var keys: [String] = []
        for index in 0..<40 {
            let key = "key-\(index)"
            keys.append(key)
            if index % 3 == 0 { _ = try? await fixture.put(key, hlc: UInt64(index + 1) << 16, origin: .client) }
        }
        let batch = await Self.answer(.getBatchRequest(GetBatchRequest(keyspace: 0, keys: keys.map(Self.key))), fixture)
        guard case .message(.getBatchResponse(let response)) = batch else {
            Issue.record("answered \(batch)")
            return
        }
        #expect(response.items.count == keys.count)
        var refused = 0
        var found = 0
        for (key, item) in zip(keys, response.items) {
            switch await Self.answer(.getRequest(GetRequest(key: Self.key(key), keyspace: 0)), fixture) {
            case .message(.getResponse(let single)):
                #expect(item.error == nil, "\(key)")
                #expect(item.record == single.record, "\(key)")
                if single.record != nil { found += 1 }
            case .refused(let code):
                #expect(item.error?.code == code, "\(key)")
                #expect(item.record == nil)
                refused += 1
            case .message(let other):
                Issue.record("a Get answered \(other.type)")
            }
        }
        #expect(refused > 0 && found > 0, "the keys cover both cases (\(refused) refused, \(found) found)")
        try await fixture.shutdown()
    }

    @Test func aPutBatchAppliesEachWriteAsItsOwnPutWouldAndSharesTheGroupCommit() async throws {
        let fixture = try ServiceFixture(nodeID: "n1", maxClockOffset: .milliseconds(500))
        #expect(try await fixture.put("old", hlc: 900 << 16, origin: .client) == .applied)
        let ahead = Version(hlc: 10_000 << 16, writer: 7)
        var puts = [
            BatchPut(
                key: Self.key("old"), value: Self.key("older"), version: Version(hlc: 800 << 16, writer: 7),
                tombstone: false, expiresAtMillis: nil),
            BatchPut(
                key: Self.key("ahead"), value: Self.key("x"), version: ahead, tombstone: false, expiresAtMillis: nil),
            BatchPut(
                key: Self.key(""), value: Self.key("x"), version: Version(hlc: 1, writer: 7), tombstone: false,
                expiresAtMillis: nil),
        ]
        for index in 0..<100 {
            puts.append(
                BatchPut(
                    key: Self.key("new-\(index)"), value: Self.key("v\(index)"),
                    version: Version(hlc: 950 << 16, writer: 7), tombstone: false, expiresAtMillis: nil))
        }
        let batchesBefore = fixture.service.storageQueue.writeBatches
        let batch = await Self.answer(.putBatchRequest(PutBatchRequest(keyspace: 0, epoch: 0, puts: puts)), fixture)
        guard case .message(.putBatchResponse(let response)) = batch else {
            Issue.record("answered \(batch)")
            return
        }
        #expect(response.items.count == puts.count)
        #expect(response.items[0].outcome == .superseded)
        #expect(response.items[0].current == Version(hlc: 900 << 16, writer: 7))
        #expect(response.items[1].error?.code == .invalidRequest, "a version past the clock offset")
        #expect(response.items[1].outcome == nil)
        #expect(response.items[2].error != nil, "an empty key")
        for item in response.items[3...] {
            #expect(item.outcome == .applied && item.error == nil)
        }
        #expect(
            fixture.service.storageQueue.writeBatches - batchesBefore == 1,
            "the batch's writes were handed over together and written in one store write")
        // What each single Put would answer for the same writes now: superseded or refused alike.
        for (put, item) in zip(puts, response.items) {
            let single = await Self.answer(
                .putRequest(
                    PutRequest(
                        key: put.key, value: put.value, version: put.version, tombstone: put.tombstone,
                        origin: .client, epoch: 0, expiresAtMillis: put.expiresAtMillis, keyspace: 0)), fixture)
            switch single {
            case .message(.putResponse(let answer)):
                // Applied again (an equal version) or superseded, as the batch's write was.
                #expect(item.error == nil)
                #expect(answer.current == item.current || item.outcome == .applied)
            case .refused(let code):
                #expect(item.error?.code == code)
            case .message(let other):
                Issue.record("a Put answered \(other.type)")
            }
        }
        let read = await Self.answer(.getRequest(GetRequest(key: Self.key("new-7"), keyspace: 0)), fixture)
        guard case .message(.getResponse(let stored)) = read else {
            Issue.record("answered \(read)")
            return
        }
        #expect(stored.record?.value == Self.key("v7"))
        try await fixture.shutdown()
    }

    @Test func aHintBatchKeepsEachHintAsItsOwnHintWould() async throws {
        // A queue of 2 hints per target: the third hint for n2 is refused, as its own Hint would be.
        let fixture = try ServiceFixture(hintQueueMax: 2)
        func hint(_ target: String, _ key: String) -> BatchHint {
            BatchHint(
                target: target,
                record: Record(
                    key: Self.key(key), version: Version(hlc: 900 << 16, writer: 7), tombstone: false,
                    value: Self.key("v"), expiresAtMillis: nil))
        }
        let hints = [hint("n2", "a"), hint("n2", "b"), hint("n2", "c"), hint("n9", "d"), hint("n1", "e")]
        let batch = await Self.answer(.hintBatchRequest(HintBatchRequest(keyspace: 0, hints: hints)), fixture)
        guard case .message(.hintBatchResponse(let response)) = batch else {
            Issue.record("answered \(batch)")
            return
        }
        #expect(response.items.map(\.outcome) == [.stored, .stored, .refused, nil, nil])
        #expect(response.items[3].error?.code == .unknownNode, "n9 is not a member")
        #expect(response.items[4].error?.code == .invalidRequest, "a hint for the node itself")
        #expect(fixture.store.hintQueueSizes() == ["n2": 2])
        try await fixture.shutdown()
    }

    @Test func anEmptyBatchIsAnsweredEmpty() async throws {
        let fixture = try ServiceFixture()
        let gets = await Self.answer(.getBatchRequest(GetBatchRequest(keyspace: 0, keys: [])), fixture)
        guard case .message(.getBatchResponse(let got)) = gets else {
            Issue.record("answered \(gets)")
            return
        }
        #expect(got.items.isEmpty)
        let puts = await Self.answer(.putBatchRequest(PutBatchRequest(keyspace: 0, epoch: 0, puts: [])), fixture)
        guard case .message(.putBatchResponse(let put)) = puts else {
            Issue.record("answered \(puts)")
            return
        }
        #expect(put.items.isEmpty)
        try await fixture.shutdown()
    }
}
