import Foundation
import InMemoryLogging
import KVCore
import KVNode
import KVStorage
import KVTLS
import KVWire
import Logging
import MetricsTestKit
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Issue 21: a `PutBatch` or `HintBatch` read on an event loop is taken there (`answerWithoutTask`), as
/// a `Put` or `Hint` is: the batch's writes go to that loop's lane of the group commit, written on the
/// loop with no task and no pool hop, and the answers are those `handle` gives. A `PutBatch` made with
/// a later map than the node's is left to `handle`, which waits for the map. A `GetBatch` whose keys
/// RocksDB holds in memory is answered there, as a `Get` is; one that needs a file read is left to
/// `handle`'s pool job.
@Suite(.timeLimit(.minutes(2)))
struct BatchOnLoopTests {
    final class Fixture: Sendable {
        let directory: String
        let store: RocksDBStore
        let pool: NIOThreadPool
        let loops: MultiThreadedEventLoopGroup
        let statistics: NodeStatistics
        let service: ReplicaService

        /// - Parameter flushed: keys `f-0`... written to a table file before the store is opened again,
        ///   so that nothing of them is in memory.
        init(flushed: Int = 0) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("qkv-batch-loop-\(UUID())").path
            if flushed > 0 {
                let first = try RocksDBStore(directory: directory, durability: .none)
                for index in 0..<flushed {
                    _ = try first.apply(
                        key: Array("f-\(index)".utf8),
                        record: StoredRecord(version: Version(hlc: 3, writer: 1), tombstone: false, value: [7]))
                }
                try first.flush()
                first.close()
            }
            store = try RocksDBStore(directory: directory, durability: .none)
            pool = NIOThreadPool(numberOfThreads: 2)
            pool.start()
            loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            statistics = NodeStatistics(nodeID: "n1", metricsFactory: TestMetrics())
            let ring = try ServiceFixture.cluster.ring()
            let marker = RepairMarker(
                ring: { ring }, store: store, pool: pool, statistics: statistics, wallMillis: { 1_000 },
                logger: Logger(label: "test") { _ in InMemoryLogHandler() })
            service = ReplicaService(
                nodeID: "n1",
                membership: try Membership(initial: ServiceFixture.cluster, store: store, votes: TestMapVotes()),
                store: store, hints: store, repairMarker: marker, hintQueueMax: 100, pool: pool, statistics: statistics,
                merkle: store,
                replica: Replica(nodeID: "n1", store: store, wallMillis: { 1_000 }), wallMillis: { 1_000 })
        }

        /// The answer `answerWithoutTask` gives when called on the event loop, or nil when it leaves
        /// the request to `handle`.
        func onLoop(_ request: Message) async throws -> Message? {
            let service = self.service
            let taken = loops.next().makePromise(of: Message?.self)
            loops.next().execute {
                let wasTaken = service.answerWithoutTask(request, from: ServiceFixture.client) { result in
                    taken.completeWith(result.map { $0 })
                }
                if !wasTaken { taken.succeed(nil) }
            }
            return try await taken.futureResult.get()
        }

        func shutdown() async throws {
            store.close()
            try await pool.shutdownGracefully()
            try await loops.shutdownGracefully()
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    static func putBatch(_ keys: Range<Int>, hlc: UInt64, epoch: UInt64 = 0) -> Message {
        .putBatchRequest(
            PutBatchRequest(
                keyspace: 0, epoch: epoch,
                puts: keys.map {
                    BatchPut(
                        key: ByteBuffer(string: "k-\($0)"), value: ByteBuffer(string: "v\(hlc)"),
                        version: Version(hlc: hlc, writer: 1), tombstone: false, expiresAtMillis: nil)
                }))
    }

    /// The answer with its clock (a fresh timestamp every call) set to 0.
    static func clockless(_ message: Message?) -> Message? {
        switch message {
        case .putBatchResponse(var response):
            response.clock = 0
            return .putBatchResponse(response)
        case .hintBatchResponse(var response):
            response.clock = 0
            return .hintBatchResponse(response)
        default:
            return message
        }
    }

    @Test func aPutBatchIsWrittenOnTheLoopThatReadItAndAnsweredAsHandleAnswersIt() async throws {
        let fixture = try Fixture()
        let batch = Self.putBatch(0..<10, hlc: 20)
        let taken = try #require(try await fixture.onLoop(batch))
        guard case .putBatchResponse(let response) = taken else {
            Issue.record("answered \(taken)")
            return
        }
        #expect(response.items.map(\.outcome) == Array(repeating: .applied, count: 10))
        #expect(fixture.statistics.writeBatchesOnEventLoop.load(ordering: .relaxed) == 1, "one write, on the loop")
        #expect(fixture.statistics.writeBatchesOnPool.load(ordering: .relaxed) == 0)
        for key in 0..<10 {
            #expect(try fixture.store.get(key: Array("k-\(key)".utf8))?.version.hlc == 20)
        }
        // The same answers as `handle`'s: again at the same version, and older than what is stored.
        for request in [batch, Self.putBatch(5..<15, hlc: 10)] {
            let onLoop = Self.clockless(try await fixture.onLoop(request))
            let handled = Self.clockless(try await fixture.service.handle(request, from: ServiceFixture.client))
            #expect(onLoop == handled)
        }
        guard case .putBatchResponse(let mixed) = try await fixture.onLoop(Self.putBatch(5..<15, hlc: 10)) else {
            Issue.record("no batch answer")
            return
        }
        #expect(mixed.items.prefix(5).allSatisfy { $0.outcome == .superseded && $0.current.hlc == 20 })
        #expect(mixed.items.suffix(5).allSatisfy { $0.outcome == .applied })
        // A key refused on its own is refused in the batch, and the others are written.
        let withEmptyKey = Message.putBatchRequest(
            PutBatchRequest(
                keyspace: 0, epoch: 0,
                puts: [
                    BatchPut(
                        key: ByteBuffer(), value: ByteBuffer(string: "x"), version: Version(hlc: 30, writer: 1),
                        tombstone: false, expiresAtMillis: nil),
                    BatchPut(
                        key: ByteBuffer(string: "k-0"), value: ByteBuffer(string: "x"),
                        version: Version(hlc: 30, writer: 1), tombstone: false, expiresAtMillis: nil),
                ]))
        guard case .putBatchResponse(let refused) = try await fixture.onLoop(withEmptyKey) else {
            Issue.record("no batch answer")
            return
        }
        #expect(refused.items[0].error?.code == .invalidRequest)
        #expect(refused.items[1].outcome == .applied)
        try await fixture.shutdown()
    }

    @Test func aPutBatchMadeWithALaterMapIsLeftToHandle() async throws {
        let fixture = try Fixture()
        #expect(try await fixture.onLoop(Self.putBatch(0..<3, hlc: 5, epoch: ServiceFixture.cluster.epoch + 1)) == nil)
        #expect(try await fixture.onLoop(Self.putBatch(0..<3, hlc: 5, epoch: ServiceFixture.cluster.epoch)) != nil)
        try await fixture.shutdown()
    }

    @Test func aHintBatchIsTakenOnTheLoopAndAnsweredAsHandleAnswersIt() async throws {
        let fixture = try Fixture()
        func hints(_ target: String, hlc: UInt64) -> Message {
            .hintBatchRequest(
                HintBatchRequest(
                    keyspace: 0,
                    hints: (0..<4).map {
                        BatchHint(
                            target: target,
                            record: Record(
                                key: ByteBuffer(string: "h-\($0)"), version: Version(hlc: hlc, writer: 7),
                                tombstone: false, value: ByteBuffer(string: "v"), expiresAtMillis: nil))
                    }))
        }
        let taken = try #require(try await fixture.onLoop(hints("n2", hlc: 5)))
        guard case .hintBatchResponse(let response) = taken else {
            Issue.record("answered \(taken)")
            return
        }
        #expect(response.items.map(\.outcome) == Array(repeating: .stored, count: 4))
        for request in [hints("n2", hlc: 6), hints("n1", hlc: 6), hints("n9", hlc: 6)] {
            let onLoop = Self.clockless(try await fixture.onLoop(request))
            let handled = Self.clockless(try await fixture.service.handle(request, from: ServiceFixture.client))
            #expect(onLoop == handled)
        }
        guard case .hintBatchResponse(let refused) = try await fixture.onLoop(hints("n9", hlc: 7)) else {
            Issue.record("no batch answer")
            return
        }
        #expect(refused.items.allSatisfy { $0.error?.code == .unknownNode })
        try await fixture.shutdown()
    }

    @Test func aGetBatchFromMemoryIsAnsweredOnTheLoopAndOneFromDiskIsLeftToHandle() async throws {
        let fixture = try Fixture(flushed: 20)
        _ = try await fixture.onLoop(Self.putBatch(0..<10, hlc: 20))
        func getBatch(_ keys: [String]) -> Message {
            .getBatchRequest(GetBatchRequest(keyspace: 0, keys: keys.map { ByteBuffer(string: $0) }))
        }
        // Written keys (in the memtable), an absent one, and an empty one (no key: its item is refused).
        let inMemory = getBatch(["k-3", "absent", "", "k-9"])
        let taken = try #require(try await fixture.onLoop(inMemory))
        guard case .getBatchResponse(var response) = taken else {
            Issue.record("answered \(taken)")
            return
        }
        #expect(response.items.map { $0.record.map { String(buffer: $0.value) } } == ["v20", nil, nil, "v20"])
        #expect(response.items.map { $0.error?.code } == [nil, nil, .invalidRequest, nil])
        guard
            case .getBatchResponse(var handled) = try await fixture.service.handle(
                inMemory, from: ServiceFixture.client)
        else {
            Issue.record("handle gave no batch answer")
            return
        }
        (response.clock, handled.clock) = (0, 0)
        #expect(response == handled)
        // In a table file nobody read since the open: the pool reads it.
        let onDisk = getBatch(["k-1", "f-7"])
        #expect(try await fixture.onLoop(onDisk) == nil)
        guard case .getBatchResponse(let read) = try await fixture.service.handle(onDisk, from: ServiceFixture.client)
        else {
            Issue.record("handle gave no batch answer")
            return
        }
        #expect(read.items.map { $0.record?.version.hlc } == [20, 3])
        // Its block is cached now.
        #expect(try await fixture.onLoop(onDisk) != nil)
        try await fixture.shutdown()
    }
}
