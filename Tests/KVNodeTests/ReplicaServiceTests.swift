import InMemoryLogging
import KVCore
import KVNode
import KVRPC
import KVStorage
import KVTLS
import KVWire
import Logging
import Metrics
import MetricsTestKit
import NIOCore
import NIOPosix
import Testing

/// A `ReplicaService` in process, over an `InMemoryStore`, with its counters in a `TestMetrics` and its
/// logs in memory: requests go straight to `handle`, without TLS or sockets.
final class ServiceFixture: Sendable {
    static let cluster = ClusterMap(
        clusterID: "test", epoch: 1, replicationFactor: 2,
        nodes: [
            ClusterMap.Node(id: "n1", address: "127.0.0.1:1", tokens: [1 << 62, 3 << 62]),
            ClusterMap.Node(id: "n2", address: "127.0.0.1:2", tokens: [2 << 62]),
            ClusterMap.Node(id: "n3", address: "127.0.0.1:3", tokens: [.max]),
        ])
    static let client = PeerIdentity(name: "client", role: .client)
    static let admin = PeerIdentity(name: "admin", role: .admin)
    static let node = PeerIdentity(name: "n4", role: .node)

    let nodeID: String
    let store: InMemoryStore
    let metrics: TestMetrics
    let logs: InMemoryLogHandler
    let pool: NIOThreadPool
    let ring: Ring
    let statistics: NodeStatistics
    let marker: RepairMarker
    let service: ReplicaService

    /// - Parameters:
    ///   - nodeID: the node the service runs as (`n1` replicates the whole ring, `n2` a part of it).
    ///   - streaming: whether the service streams ranges from its store.
    ///   - admitsByRange: whether the service refuses (`notReplica`) keys it does not keep, as a node
    ///     with a transfer board does.
    init(
        hintQueueMax: Int = 1, nodeID: String = "n1", streaming: Bool = true, maxClockOffset: Duration? = nil,
        admitsByRange: Bool = false
    ) throws {
        let store = InMemoryStore()
        let metrics = TestMetrics()
        let logs = InMemoryLogHandler()
        let pool = NIOThreadPool(numberOfThreads: 2)
        let ring = try Self.cluster.ring()
        pool.start()
        let logger = Logger(label: "test") { _ in logs }
        let statistics = withMetricsFactory(metrics) { NodeStatistics(nodeID: nodeID) }
        let marker = RepairMarker(
            ring: { ring }, store: store, pool: pool, statistics: statistics, wallMillis: { 1_000 }, logger: logger)
        self.nodeID = nodeID
        self.store = store
        self.metrics = metrics
        self.logs = logs
        self.pool = pool
        self.ring = ring
        self.statistics = statistics
        self.marker = marker
        self.service = ReplicaService(
            nodeID: nodeID, membership: try Membership(initial: Self.cluster, store: store, votes: TestMapVotes()),
            store: store, hints: store,
            repairMarker: marker,
            hintQueueMax: hintQueueMax, pool: pool, statistics: statistics, streaming: streaming ? store : nil,
            replica: Replica(
                nodeID: nodeID, store: store, maxClockOffset: maxClockOffset, wallMillis: { 1_000 }),
            transfers: admitsByRange ? TransferBoard() : nil,
            wallMillis: { 1_000 })
    }

    func shutdown() async throws {
        store.close()
        try await pool.shutdownGracefully()
    }

    func hint(_ target: String, _ key: String, hlc: UInt64) async throws -> HintOutcome? {
        let answer = try await service.handle(
            .hintRequest(
                HintRequest(
                    target: target,
                    record: Record(
                        key: ByteBuffer(string: key), version: Version(hlc: hlc, writer: 7), tombstone: false,
                        value: ByteBuffer(string: "v"), expiresAtMillis: nil), keyspace: 0)),
            from: Self.client)
        guard case .hintResponse(let response) = answer else { return nil }
        return response.outcome
    }

    func put(_ key: String, hlc: UInt64, origin: PutOrigin, from peer: PeerIdentity = ServiceFixture.client)
        async throws -> PutOutcome?
    {
        let answer = try await service.handle(
            .putRequest(
                PutRequest(
                    key: ByteBuffer(string: key), value: ByteBuffer(string: "v\(hlc)"),
                    version: Version(hlc: hlc, writer: 7), tombstone: false, origin: origin, epoch: 0,
                    expiresAtMillis: nil, keyspace: 0)),
            from: peer)
        guard case .putResponse(let response) = answer else { return nil }
        return response.outcome
    }

    /// `Admin` stats.
    func adminStats() async throws -> NodeStats {
        let answer = try await service.handle(
            .adminRequest(AdminRequest(command: .stats, arguments: [])), from: Self.admin)
        guard case .nodeStats(let stats) = answer else {
            throw RPCError.remote(.invalidRequest, message: "Admin stats answered \(answer.type)")
        }
        return stats
    }

    func counter(_ label: String, _ dimensions: [(String, String)] = []) -> Int64 {
        metrics.counterTotal(label: label, dimensions: [("node", nodeID)] + dimensions)
    }

    /// One `Stream` page of `range`, resuming after `after`.
    func stream(_ range: TokenRangeSpan, after: ByteBuffer? = nil, pageBytesMax: UInt32) async throws
        -> StreamResponse?
    {
        let answer = try await service.handle(
            .streamRequest(
                StreamRequest(
                    range: TokenRange(start: range.start, end: range.end), after: after, pageBytesMax: pageBytesMax,
                    keyspace: 0)),
            from: Self.node)
        guard case .streamResponse(let response) = answer else { return nil }
        return response
    }

    /// Log entries at `notice` or above with this message.
    func notices(_ message: String) -> [InMemoryLogHandler.Entry] {
        logs.entries.filter { $0.level >= .notice && $0.message.description == message }
    }
}

/// Two keys in the same vnode range of `ServiceFixture.cluster`, and one in another.
private func keys(inRangeOf ring: Ring) -> (first: String, sameRange: String, otherRange: String) {
    let first = "key-0"
    let range = ring.range(containing: Token(key: Array(first.utf8)))
    var sameRange: String?
    var otherRange: String?
    for index in 1..<10_000 where sameRange == nil || otherRange == nil {
        let key = "key-\(index)"
        if range.contains(Token(key: Array(key.utf8))) {
            sameRange = sameRange ?? key
        } else {
            otherRange = otherRange ?? key
        }
    }
    return (first, sameRange!, otherRange!)
}

@Suite(.timeLimit(.minutes(3)))
struct ReplicaServiceTests {
    @Test func refusedHintMarksItsRangeOnceAndCountsIt() async throws {
        let fixture = try ServiceFixture(hintQueueMax: 1)
        let (first, sameRange, otherRange) = keys(inRangeOf: fixture.ring)

        #expect(try await fixture.hint("n2", first, hlc: 1) == .stored)
        #expect(fixture.store.rangesDue().isEmpty, "a stored hint marks nothing")
        // n2's queue is full: refused, counted, and its range is due on n2.
        #expect(try await fixture.hint("n2", first, hlc: 2) == .refused)
        let range = fixture.ring.range(containing: Token(key: Array(first.utf8)))
        #expect(fixture.store.rangesDue() == [RepairMark(replica: "n2", range: range, firstMarkedMillis: 1_000)])
        // Another key of the same range: refused and counted again, but the range is marked once.
        #expect(try await fixture.hint("n2", sameRange, hlc: 3) == .refused)
        #expect(fixture.store.rangesDue().count == 1)
        // A key of another range is another mark.
        #expect(try await fixture.hint("n2", otherRange, hlc: 4) == .refused)
        #expect(fixture.store.rangesDue().count == 2)
        #expect(fixture.store.rangesDue().allSatisfy { $0.replica == "n2" })
        // n3 has its own queue.
        #expect(try await fixture.hint("n3", first, hlc: 5) == .stored)

        #expect(fixture.counter("quorumkv_hints_stored_total", [("keyspace", "default")]) == 2)
        #expect(fixture.counter("quorumkv_hints_refused_total", [("keyspace", "default")]) == 3)
        #expect(fixture.counter("quorumkv_anti_entropy_ranges_marked_total", [("reason", "hint_refused")]) == 2)
        #expect(fixture.counter("quorumkv_anti_entropy_mark_failures_total") == 0)
        let notices = fixture.notices("range marked for anti-entropy")
        #expect(notices.count == 2, "logged once per range")
        #expect(notices.first?.metadata["peer.node_id"] == "n2")
        #expect(notices.first?.metadata["repair.reason"] == "hint_refused")

        let stats = try await fixture.adminStats()
        #expect(stats.hintsStored == 2)
        #expect(stats.hintsRefused == 3)
        #expect(stats.antiEntropyRangesDue == 2)
        #expect(stats.antiEntropyRangesMarkedHintRefused == 2)
        #expect(stats.hintQueues == [HintQueue(target: "n2", hints: 1), HintQueue(target: "n3", hints: 1)])
        // Reading the queues set the gauges.
        #expect(
            try fixture.metrics.expectGauge("quorumkv_hint_queue_size", [("node", "n1"), ("target", "n2")]).lastValue
                == 1)
        #expect(
            try fixture.metrics.expectGauge(
                "quorumkv_anti_entropy_ranges_due", [("node", "n1"), ("keyspace", "default")]
            ).lastValue == 2)
        try await fixture.shutdown()
    }

    /// Clocks and versions further ahead of the node's clock (1,000 ms here) than the maximum offset
    /// are refused and counted; the node's clock is not dragged along, even by a stored version from
    /// the future, which is served but not observed.
    @Test func clocksAndVersionsFromTheFutureAreRefusedAndCounted() async throws {
        let fixture = try ServiceFixture(hintQueueMax: 10, maxClockOffset: .milliseconds(500))
        let ping = { (clock: UInt64) in
            try await fixture.service.handle(
                .pingRequest(PingRequest(epoch: 0, clock: clock)), from: ServiceFixture.node)
        }
        await #expect(throws: RPCError.remote(.invalidRequest, message: "")) { _ = try await ping(.max) }
        await #expect(throws: RPCError.remote(.invalidRequest, message: "")) { _ = try await ping(1_501 << 16) }
        guard case .pingResponse(let pong) = try await ping(1_500 << 16) else {
            Issue.record("no pong")
            return
        }
        #expect(pong.clock >> 16 == 1_500, "a clock within the offset is observed")
        await #expect(throws: RPCError.remote(.invalidRequest, message: "")) {
            _ = try await fixture.put("k", hlc: .max - 1, origin: .client)
        }
        await #expect(throws: RPCError.remote(.invalidRequest, message: "")) {
            _ = try await fixture.hint("n2", "k", hlc: .max - 1)
        }
        #expect(fixture.counter("quorumkv_clock_ahead_refused_total") == 4)
        // A record from the future already on disk (damage): served, without trapping or moving the clock.
        _ = try fixture.store.apply(
            key: Array("old".utf8),
            record: StoredRecord(version: Version(hlc: .max, writer: 1), tombstone: false, value: [1]))
        let answer = try await fixture.service.handle(
            .getRequest(GetRequest(key: ByteBuffer(string: "old"), keyspace: 0)), from: ServiceFixture.client)
        guard case .getResponse(let response) = answer else {
            Issue.record("answered \(answer.type)")
            return
        }
        #expect(response.record?.version.hlc == .max)
        #expect(response.clock >> 16 == 1_500)
        try await fixture.shutdown()
    }

    /// A hint whose target is the node itself would never be replayed: refused, counted, not stored.
    @Test func aHintForTheNodeItselfIsRefused() async throws {
        let fixture = try ServiceFixture(hintQueueMax: 10)
        await #expect(throws: RPCError.self) { _ = try await fixture.hint("n1", "key-0", hlc: 1 << 20) }
        #expect(fixture.store.hintQueueSizes().isEmpty)
        #expect(fixture.counter("quorumkv_hints_refused_total", [("keyspace", "default")]) == 1)
        #expect(try await fixture.hint("n2", "key-0", hlc: 1 << 20) == .stored)
        try await fixture.shutdown()
    }

    @Test func expiredHintMarksItsRangeWithItsOwnReason() async throws {
        let fixture = try ServiceFixture()
        await fixture.marker.hintExpired(target: "n3", key: Array("gone".utf8))
        await fixture.marker.hintExpired(target: "n3", key: Array("gone".utf8))
        let range = fixture.ring.range(containing: Token(key: Array("gone".utf8)))
        #expect(fixture.store.rangesDue() == [RepairMark(replica: "n3", range: range, firstMarkedMillis: 1_000)])
        #expect(fixture.marker.rangesDueCount == 1)
        #expect(fixture.counter("quorumkv_anti_entropy_ranges_marked_total", [("reason", "hint_expired")]) == 1)
        #expect(fixture.counter("quorumkv_anti_entropy_ranges_marked_total", [("reason", "hint_refused")]) == 0)
        #expect(fixture.notices("range marked for anti-entropy").first?.metadata["repair.reason"] == "hint_expired")
        try await fixture.shutdown()
    }

    @Test func markThatCannotBeWrittenIsLoggedAndCounted() async throws {
        let fixture = try ServiceFixture()
        fixture.store.close()
        await fixture.marker.hintExpired(target: "n2", key: Array("k".utf8))
        #expect(fixture.counter("quorumkv_anti_entropy_mark_failures_total") == 1)
        #expect(fixture.counter("quorumkv_anti_entropy_ranges_marked_total") == 0)
        #expect(fixture.logs.entries.contains { $0.level == .warning })
        try await fixture.shutdown()
    }

    /// What a `Put` may do follows from the sender's certificate: a client cannot pass its write off
    /// as hint replay or anti-entropy.
    @Test(arguments: [PutOrigin.hintReplay, .antiEntropy])
    func aClientCannotSendNodesWrites(origin: PutOrigin) async throws {
        let fixture = try ServiceFixture()
        await #expect(throws: RPCError.remote(.notAuthorized, message: "")) {
            _ = try await fixture.put("k", hlc: 10, origin: origin)
        }
        #expect(try fixture.store.get(key: Array("k".utf8)) == nil)
        #expect(try await fixture.put("k", hlc: 10, origin: origin, from: ServiceFixture.node) == .applied)
        try await fixture.shutdown()
    }

    /// Issue 21: a `Get` answered from memory, a `Put` handed to the group commit and a `Hint` handed to
    /// the pool from the event loop (`answerWithoutTask`) get what `handle` answers, refusals included;
    /// a read repair is left to `handle`.
    @Test func requestsTakenWithoutATaskAreAnsweredAsHandleAnswersThem() async throws {
        let fixture = try ServiceFixture(hintQueueMax: 10, maxClockOffset: .milliseconds(500))
        let service = fixture.service
        func withoutTask(_ request: Message, from peer: PeerIdentity) async -> Result<Message, any Error>? {
            await withCheckedContinuation { continuation in
                let taken = service.answerWithoutTask(request, from: peer) { continuation.resume(returning: $0) }
                if !taken { continuation.resume(returning: nil) }
            }
        }
        func put(_ key: String, hlc: UInt64, origin: PutOrigin = .client) -> Message {
            .putRequest(
                PutRequest(
                    key: ByteBuffer(string: key), value: ByteBuffer(string: "v\(hlc)"),
                    version: Version(hlc: hlc, writer: 1), tombstone: false, origin: origin, epoch: 0,
                    expiresAtMillis: nil, keyspace: 0))
        }
        /// Both answers, each clock (a fresh timestamp every call) set to 0.
        func answers(_ request: Message) async throws -> (withoutTask: Message?, handle: Message) {
            func clockless(_ message: Message?) -> Message? {
                switch message {
                case .getResponse(var response):
                    response.clock = 0
                    return .getResponse(response)
                case .putResponse(var response):
                    response.clock = 0
                    return .putResponse(response)
                case .hintResponse(var response):
                    response.clock = 0
                    return .hintResponse(response)
                default:
                    return message
                }
            }
            let first = try await withoutTask(request, from: ServiceFixture.client)?.get()
            return (clockless(first), clockless(try await service.handle(request, from: ServiceFixture.client))!)
        }
        let get = Message.getRequest(GetRequest(key: ByteBuffer(string: "k"), keyspace: 0))
        for request in [get, put("k", hlc: 20), put("k", hlc: 10), get] {
            // Absent, applied (the second time: applied at an equal version), superseded, present.
            let (taken, handled) = try await answers(request)
            #expect(taken == handled)
        }
        guard case .putResponse(let superseded) = try await answers(put("k", hlc: 10)).handle else {
            Issue.record("no put response")
            return
        }
        #expect(superseded.outcome == .superseded && superseded.current.hlc == 20)
        for (request, code) in [
            (put("k", hlc: 30, origin: .hintReplay), ErrorCode.notAuthorized),
            (put("k", hlc: .max - 1), .invalidRequest),
            (put("", hlc: 30), .invalidRequest),
        ] {
            let taken = await withoutTask(request, from: ServiceFixture.client)
            #expect(throws: RPCError.remote(code, message: "")) { try taken?.get() }
            await #expect(throws: RPCError.remote(code, message: "")) {
                _ = try await service.handle(request, from: ServiceFixture.client)
            }
        }
        func hint(_ target: String, _ key: String, hlc: UInt64) -> Message {
            .hintRequest(
                HintRequest(
                    target: target,
                    record: Record(
                        key: ByteBuffer(string: key), version: Version(hlc: hlc, writer: 7), tombstone: false,
                        value: ByteBuffer(string: "v"), expiresAtMillis: nil), keyspace: 0))
        }
        let (stored, storedByHandle) = try await answers(hint("n2", "h", hlc: 5))
        #expect(stored == storedByHandle)
        guard case .hintResponse(let response) = stored else {
            Issue.record("no hint response: \(String(describing: stored))")
            return
        }
        #expect(response.outcome == .stored)
        for (request, code) in [
            (hint("n1", "h", hlc: 6), ErrorCode.invalidRequest),
            (hint("n9", "h", hlc: 6), .unknownNode),
            (hint("n2", "h", hlc: .max - 1), .invalidRequest),
        ] {
            let taken = await withoutTask(request, from: ServiceFixture.client)
            #expect(throws: RPCError.remote(code, message: "")) { try taken?.get() }
            await #expect(throws: RPCError.remote(code, message: "")) {
                _ = try await service.handle(request, from: ServiceFixture.client)
            }
        }
        #expect(await withoutTask(put("k", hlc: 40, origin: .readRepair), from: ServiceFixture.client) == nil)
        #expect(try fixture.store.get(key: Array("k".utf8))?.version.hlc == 20)
        try await fixture.shutdown()
    }

    @Test func readRepairsAreCountedAndThoseThatChangedDataApart() async throws {
        let fixture = try ServiceFixture()
        // A client's write is not a repair.
        #expect(try await fixture.put("k", hlc: 10, origin: .client) == .applied)
        #expect(fixture.counter("quorumkv_read_repairs_received_total") == 0)
        // A repair with a newer version changes the replica.
        #expect(try await fixture.put("k", hlc: 20, origin: .readRepair) == .applied)
        // The same version again, and an older one: received, but nothing changed.
        #expect(try await fixture.put("k", hlc: 20, origin: .readRepair) == .applied)
        #expect(try await fixture.put("k", hlc: 15, origin: .readRepair) == .superseded)
        // A repair of a key the replica never saw changes it too.
        #expect(try await fixture.put("new", hlc: 5, origin: .readRepair) == .applied)
        // Hint replays are neither.
        #expect(try await fixture.put("k", hlc: 30, origin: .hintReplay, from: ServiceFixture.node) == .applied)

        #expect(fixture.counter("quorumkv_read_repairs_received_total") == 4)
        #expect(fixture.counter("quorumkv_read_repairs_applied_total") == 2)
        let stats = try await fixture.adminStats()
        #expect(stats.readRepairsReceived == 4)
        #expect(stats.readRepairsApplied == 2)
        #expect(stats.antiEntropyRangesDue == 0)
        try await fixture.shutdown()
    }

    /// A lone record of the largest key and the largest value fills a frame: its page leaves `next`
    /// out (the receiver resumes after the record's key) rather than answer a frame too large to send.
    @Test func aStreamPageOfOneHugeRecordFitsAFrame() async throws {
        let fixture = try ServiceFixture()
        let big = [UInt8](repeating: 0x6b, count: Limits.keyBytesMax)
        let value = [UInt8](repeating: 1, count: Limits.valueBytesMax)
        _ = try fixture.store.apply(
            key: big, record: StoredRecord(version: Version(hlc: 1, writer: 1), tombstone: false, value: value))
        let token = Token(key: big).value
        // Two more records after it in the range, so that the page is not the last.
        var others = 0
        for index in 0..<100_000 where others < 2 {
            let key = Array("after-\(index)".utf8)
            if Token(key: key).value &- token < 1 << 60, Token(key: key).value != token {
                _ = try fixture.store.apply(
                    key: key, record: StoredRecord(version: Version(hlc: 1, writer: 1), tombstone: false, value: [1]))
                others += 1
            }
        }
        let range = TokenRangeSpan(start: token &- 1, end: token &+ (1 << 60))
        let response = try #require(await fixture.stream(range, pageBytesMax: 1 << 20))
        #expect(response.records.count == 1 && !response.done)
        #expect(response.next == nil)
        let frame = Message.streamResponse(response).frame(requestID: 1, allocator: ByteBufferAllocator())
        #expect(frame.encodedBytes <= Limits.frameBytesMax)
        // Resuming after the record's key gives the rest.
        let rest = try #require(await fixture.stream(range, after: ByteBuffer(bytes: big), pageBytesMax: 1 << 20))
        #expect(rest.records.count == 2 && rest.done)
        try await fixture.shutdown()
    }

    @Test func streamPagesARangeWithEveryRecordOnce() async throws {
        let fixture = try ServiceFixture()
        var stored: [[UInt8]: StoredRecord] = [:]
        for index in 0..<300 {
            let key = Array("stream-\(index)".utf8)
            let version = Version(hlc: UInt64(index + 1), writer: 7)
            let record =
                index % 7 == 0
                ? StoredRecord(version: version, tombstone: true, value: [])
                : StoredRecord(
                    version: version, tombstone: false, value: Array(repeating: UInt8(index % 251), count: 50 + index))
            _ = try fixture.store.apply(key: key, record: record)
            stored[key] = record
        }
        // n1 replicates the whole ring: the whole ring, a wrapping range and a plain one.
        let ranges = [
            TokenRangeSpan(start: 1 << 63, end: 1 << 63),
            TokenRangeSpan(start: 3 << 62, end: 1 << 62),
            TokenRangeSpan(start: 1 << 62, end: 3 << 62),
        ]
        for range in ranges {
            var received: [Record] = []
            var after: ByteBuffer?
            var pages = 0
            while true {
                // 1 byte asked: the service raises it to its 1 KiB floor.
                let response = try #require(await fixture.stream(range, after: after, pageBytesMax: 1))
                pages += 1
                let bytes = response.records.reduce(0) { $0 + $1.key.readableBytes + $1.value.readableBytes }
                #expect(bytes <= 1 << 10 || response.records.count == 1, "\(range) page \(pages)")
                received += response.records
                if response.done {
                    #expect(response.next == nil)
                    break
                }
                #expect(!response.records.isEmpty && response.next == response.records.last?.key)
                after = response.next
                try #require(pages < 1_000)
            }
            let keys = received.map { Array($0.key.readableBytesView) }
            let expected = stored.filter { range.contains(Token(key: $0.key)) }
            #expect(received.count == expected.count && Set(keys).count == keys.count, "\(range): every record once")
            for record in received {
                let key = Array(record.key.readableBytesView)
                #expect(
                    expected[key]
                        == StoredRecord(
                            version: record.version, tombstone: record.tombstone,
                            value: Array(record.value.readableBytesView)))
            }
            // Clockwise from the range's start, by token then key.
            let offsets = keys.map { Token(key: $0).value &- (range.start &+ 1) }
            #expect(zip(offsets, offsets.dropFirst()).allSatisfy { $0 <= $1 }, "\(range): in token order")
            #expect(pages > 5, "\(range): paged")
        }
        // A resume key outside the asked range names no place in it.
        let outside = Array("outside".utf8)
        let token = Token(key: outside).value
        let error = await #expect(throws: RPCError.remote(.invalidRequest, message: "")) {
            try await fixture.stream(
                TokenRangeSpan(start: token, end: token &+ 1_000), after: ByteBuffer(bytes: outside), pageBytesMax: 1)
        }
        #expect(error?.remoteMessage?.contains("resume key") == true)
        try await fixture.shutdown()
    }

    @Test func streamRefusesARangeTheNodeDoesNotReplicate() async throws {
        // n2 replicates (2^64-1, 2^63] only: its own vnode and n1's before it.
        let fixture = try ServiceFixture(nodeID: "n2")
        _ = try fixture.store.apply(
            key: Array("k".utf8),
            record: StoredRecord(version: Version(hlc: 1, writer: 7), tombstone: false, value: [1]))
        for range in [
            TokenRangeSpan(start: 1 << 63, end: 3 << 62),
            TokenRangeSpan(start: 1 << 62, end: (1 << 63) + 1),
            TokenRangeSpan(start: .max - 1, end: 5),
            TokenRangeSpan(start: 7, end: 7),
        ] {
            let error = await #expect(throws: RPCError.remote(.invalidRequest, message: "")) {
                try await fixture.stream(range, pageBytesMax: 1 << 20)
            }
            #expect(error?.remoteMessage?.contains("does not replicate") == true, "\(range)")
        }
        // Within what it replicates, wrapping or not: served.
        for range in [
            TokenRangeSpan(start: .max, end: 1 << 63),
            TokenRangeSpan(start: .max, end: 5),
            TokenRangeSpan(start: 1 << 62, end: 1 << 63),
        ] {
            #expect(try await fixture.stream(range, pageBytesMax: 1 << 20)?.done == true, "\(range)")
        }
        try await fixture.shutdown()
    }

    @Test func streamRefusedByANodeWithoutAStreamingStore() async throws {
        let fixture = try ServiceFixture(streaming: false)
        let error = await #expect(throws: RPCError.remote(.invalidRequest, message: "")) {
            try await fixture.stream(TokenRangeSpan(start: 0, end: 0), pageBytesMax: 1 << 20)
        }
        #expect(error?.remoteMessage?.contains("does not stream") == true)
        try await fixture.shutdown()
    }
}
