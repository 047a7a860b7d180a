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
import Synchronization
import Testing

/// Three replicas in process (`ServiceFixture.cluster`: n1 replicates the whole ring, n2 and n3 half
/// each, N = 2), each an `InMemoryStore` behind a `ReplicaService` that answers `MerkleExchange`; their
/// anti-entropy talks to the others by calling `handle` directly.
private final class Trio: Sendable {
    struct Node: Sendable {
        let id: String
        let store: InMemoryStore
        let replica: Replica
        let service: ReplicaService
        let antiEntropy: AntiEntropy
        let metrics: TestMetrics
    }

    static let nodeIdentity = PeerIdentity(name: "peer", role: .node)
    static let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
    let pool: NIOThreadPool
    let ring: Ring
    let nodes: [String: Node]
    /// Node ids whose peers' calls fail (as if the network to them were cut); tests change it.
    let down: Unreachable
    /// Every node's wall clock, in ms since the Unix epoch.
    static let wallMillis: UInt64 = 1_000_000

    /// - Parameters:
    ///   - down: node ids unreachable at first.
    ///   - tombstoneGrace: the nodes' `AntiEntropy.Configuration.tombstoneGrace`.
    init(
        cluster: ClusterMap = ServiceFixture.cluster, down: Set<String> = [], bytesPerSecond: Int = 1 << 30,
        tombstoneGrace: Duration? = nil
    ) throws {
        let down = Unreachable(down)
        self.down = down
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        self.pool = pool
        ring = try cluster.ring()
        // Services first (they need their anti-entropy), so peers call through a late-bound table.
        let table = ServiceTable()
        var nodes: [String: Node] = [:]
        for member in cluster.nodes {
            let store = InMemoryStore()
            let replica = Replica(nodeID: member.id, store: store, wallMillis: { 1_000 })
            var peers: [String: any AntiEntropyReplica] = [:]
            for other in cluster.nodes where other.id != member.id {
                let id = other.id
                peers[id] = RemoteAntiEntropyReplica(nodeID: id, timeout: .seconds(5)) { request, _ in
                    if down.ids.withLock({ $0.contains(id) }) {
                        throw AntiEntropyReplicaError(description: "connection refused by \(id)")
                    }
                    return try await table.service(id).handle(request, from: Trio.nodeIdentity)
                }
            }
            let metrics = TestMetrics()
            let statistics = withMetricsFactory(metrics) { NodeStatistics(nodeID: member.id) }
            var configuration = AntiEntropy.Configuration()
            configuration.interval = nil
            configuration.bytesPerSecond = bytesPerSecond
            configuration.tombstoneGrace = tombstoneGrace
            let antiEntropy = AntiEntropy(
                nodeID: member.id, ring: ring,
                local: LocalAntiEntropyReplica(replica: replica, merkle: store, pool: pool), peers: peers,
                marks: store, configuration: configuration, statistics: statistics, wallMillis: { Trio.wallMillis },
                logger: Trio.quiet, checkpoint: store)
            let service = ReplicaService(
                nodeID: member.id, membership: try Membership(initial: cluster, store: store, votes: TestMapVotes()),
                store: store, pool: pool,
                statistics: statistics, merkle: store,
                replica: replica, antiEntropy: antiEntropy, wallMillis: { 1_000 })
            table.set(member.id, service)
            nodes[member.id] = Node(
                id: member.id, store: store, replica: replica, service: service, antiEntropy: antiEntropy,
                metrics: metrics)
        }
        self.nodes = nodes
    }

    func shutdown() async throws {
        for node in nodes.values { node.store.close() }
        try await pool.shutdownGracefully()
    }

    func write(_ key: String, hlc: UInt64, tombstone: Bool = false, on ids: [String]) throws {
        let record = StoredRecord(
            version: Version(hlc: hlc, writer: 9), tombstone: tombstone, value: tombstone ? [] : Array("v\(hlc)".utf8))
        for id in ids {
            _ = try nodes[id]!.store.apply(key: Array(key.utf8), record: record)
        }
    }

    func version(_ key: String, on id: String) throws -> Version? {
        try nodes[id]!.store.get(key: Array(key.utf8))?.version
    }

    /// The first key (`prefix-N`) whose replicas are exactly `replicas`.
    func key(_ prefix: String, replicatedBy replicas: Set<String>, skip: Int = 0) -> String {
        var skipped = 0
        for index in 0..<100_000 {
            let key = "\(prefix)-\(index)"
            if Set(ring.preferenceList(forKey: Array(key.utf8))) == replicas {
                if skipped == skip { return key }
                skipped += 1
            }
        }
        preconditionFailure("no key replicated by \(replicas)")
    }
}

/// The node ids a `Trio`'s peers cannot reach.
private final class Unreachable: Sendable {
    let ids: Mutex<Set<String>>

    init(_ ids: Set<String>) { self.ids = Mutex(ids) }
}

/// Late binding of node ids to services, for peers made before the services.
private final class ServiceTable: Sendable {
    private let services = Mutex<[String: ReplicaService]>([:])

    func set(_ id: String, _ service: ReplicaService) { services.withLock { $0[id] = service } }
    func service(_ id: String) -> ReplicaService { services.withLock { $0[id]! } }
}

@Suite(.timeLimit(.minutes(3)))
struct AntiEntropyTests {
    @Test func merkleExchangeAnswersTheRootAndRefusesBadQueries() async throws {
        let trio = try Trio()
        let n1 = trio.nodes["n1"]!
        let key = trio.key("root", replicatedBy: ["n1", "n2"])
        try trio.write(key, hlc: 5, on: ["n1"])
        let range = trio.ring.range(containing: Token(key: Array(key.utf8)))
        let wire = TokenRange(start: range.start, end: range.end)
        let answer = try await n1.service.handle(
            .merkleExchangeRequest(
                MerkleExchangeRequest(range: wire, query: .root, level: 0, nodes: ByteBuffer(), keyspace: 0)),
            from: Trio.nodeIdentity)
        #expect(
            answer
                == .merkleExchangeResponse(
                    MerkleExchangeResponse(hashes: [try n1.store.merkleDigest(of: range)], entries: [])))

        let tree = MerkleTree(range: range)
        let bad: [(MerkleExchangeRequest, String)] = [
            (
                MerkleExchangeRequest(
                    range: wire, query: .children, level: 0,
                    nodes: ByteBuffer(bytes: MerkleNodeList.encode(Array(0...Limits.merkleNodesPerQueryMax))),
                    keyspace: 0),
                "too many nodes"
            ),
            (
                MerkleExchangeRequest(
                    range: wire, query: .children, level: 0, nodes: ByteBuffer(bytes: [0x80]), keyspace: 0),
                "a node list cut short"
            ),
            (
                MerkleExchangeRequest(
                    range: wire, query: .listing, level: UInt8(tree.depth),
                    nodes: ByteBuffer(bytes: MerkleNodeList.encode([tree.leafCount])), keyspace: 0),
                "no such leaf"
            ),
            (
                MerkleExchangeRequest(
                    range: wire, query: .children, level: UInt8(tree.depth),
                    nodes: ByteBuffer(bytes: MerkleNodeList.encode([0])), keyspace: 0),
                "children of a leaf"
            ),
            (
                MerkleExchangeRequest(range: wire, query: .root, level: 1, nodes: ByteBuffer(), keyspace: 0),
                "root at level 1"
            ),
        ]
        for (request, what) in bad {
            await #expect(throws: RPCError.self, "\(what)") {
                _ = try await n1.service.handle(.merkleExchangeRequest(request), from: Trio.nodeIdentity)
            }
        }
        // n3 does not replicate the range ending at 1 << 62.
        let foreign = TokenRange(start: UInt64.max, end: 1 << 62)
        await #expect(throws: RPCError.self) {
            _ = try await trio.nodes["n3"]!.service.handle(
                .merkleExchangeRequest(
                    MerkleExchangeRequest(range: foreign, query: .root, level: 0, nodes: ByteBuffer(), keyspace: 0)),
                from: Trio.nodeIdentity)
        }
        try await trio.shutdown()
    }

    /// A whole pass that a crash cut short left a checkpoint of the ranges it finished: the next pass
    /// skips them (and says so), compares the rest, and clears the checkpoint, so the pass after that
    /// compares everything again.
    @Test func aPassResumesAfterTheRangesACrashedPassFinished() async throws {
        let trio = try Trio()
        let n1 = trio.nodes["n1"]!
        let withN2 = trio.key("r", replicatedBy: ["n1", "n2"])
        let withN3 = trio.key("s", replicatedBy: ["n1", "n3"])
        try trio.write(withN2, hlc: 10, on: ["n1"])
        try trio.write(withN3, hlc: 11, on: ["n1"])
        let ranges = trio.ring.vnodeRanges(replicatedBy: "n1")
        let done = ranges.filter { !trio.ring.preferenceList(for: Token($0.end)).contains("n2") }
        #expect(!done.isEmpty && done.count < ranges.count)
        var checkpoint: [UInt8] = []
        for range in done {
            checkpoint += (0..<8).reversed().map { UInt8(truncatingIfNeeded: range.end >> UInt64($0 * 8)) }
        }
        try n1.store.setMetadata(AntiEntropy.checkpointName, checkpoint)

        let resumed = await n1.antiEntropy.pass(within: nil)
        #expect(resumed.rangesResumed == done.count)
        #expect(resumed.rangesCompared == ranges.count - done.count)
        #expect(try trio.version(withN2, on: "n2") != nil, "the ranges left are compared")
        #expect(try trio.version(withN3, on: "n3") == nil, "the ranges the crashed pass finished are skipped")
        #expect(try n1.store.metadata(AntiEntropy.checkpointName) == [], "a finished pass clears its checkpoint")

        let next = await n1.antiEntropy.pass(within: nil)
        #expect(next.rangesResumed == 0 && next.rangesCompared == ranges.count)
        #expect(try trio.version(withN3, on: "n3") != nil)
        try await trio.shutdown()
    }

    /// A tombstone older than the grace period goes only once every replica of its range holds it: not
    /// while a co-replica is down, and not before the co-replica that held an older value got it. A
    /// replica that purged first does not get it back from one that has not purged yet.
    @Test func tombstonesArePurgedOnlyOnceEveryReplicaHoldsThem() async throws {
        let trio = try Trio(down: ["n2"], tombstoneGrace: .seconds(100))
        let old = trio.key("purge", replicatedBy: ["n1", "n2"])
        let recent = trio.key("purge", replicatedBy: ["n1", "n2"], skip: 1)
        let elsewhere = trio.key("purge", replicatedBy: ["n1", "n3"])
        // Written long before the grace period: a value everywhere, then a delete that n2 missed.
        try trio.write(old, hlc: 10, on: ["n1", "n2"])
        try trio.write(old, hlc: 11, tombstone: true, on: ["n1"])
        // Deleted within the grace period (950 s of the clock's 1,000 s), on both.
        let recentHLC = UInt64(950_000) << 16
        try trio.write(recent, hlc: recentHLC, tombstone: true, on: ["n1", "n2"])
        try trio.write(elsewhere, hlc: 12, tombstone: true, on: ["n1", "n3"])
        let n1 = trio.nodes["n1"]!
        let n2 = trio.nodes["n2"]!

        // n2 down: its ranges are not purged on n1; the range shared with n3 is.
        let whileDown = await n1.antiEntropy.pass(within: nil)
        #expect(whileDown.errors > 0)
        #expect(whileDown.tombstonesPurged == 1)
        #expect(try n1.store.get(key: Array(old.utf8))?.tombstone == true)
        #expect(try n1.store.get(key: Array(elsewhere.utf8)) == nil)
        #expect(try trio.nodes["n3"]!.store.get(key: Array(elsewhere.utf8))?.tombstone == true)

        // n2 back with its older value: it gets the tombstone, then n1 purges.
        trio.down.ids.withLock { $0 = [] }
        let back = await n1.antiEntropy.pass(within: nil)
        #expect(back.errors == 0, "\(back.firstError ?? "")")
        #expect(back.tombstonesPurged == 1)
        #expect(try n1.store.get(key: Array(old.utf8)) == nil)
        #expect(try n2.store.get(key: Array(old.utf8))?.tombstone == true)
        #expect(try n1.store.get(key: Array(recent.utf8))?.tombstone == true, "within the grace period")

        // n2's own pass: n1 (and n3) hold nothing for the purged keys, n2 purges; nothing is copied back.
        let n2Pass = await n2.antiEntropy.pass(within: nil)
        #expect(n2Pass.errors == 0, "\(n2Pass.firstError ?? "")")
        #expect(n2Pass.keysSent == 0 && n2Pass.keysReceived == 0)
        #expect(n2Pass.tombstonesPurged == 1)
        #expect(try n2.store.get(key: Array(old.utf8)) == nil)
        #expect(try n1.store.get(key: Array(old.utf8)) == nil)
        #expect(
            n2.metrics.counterTotal(label: "quorumkv_tombstones_purged_total", dimensions: [("node", "n2")]) == 1)
        let n3Pass = await trio.nodes["n3"]!.antiEntropy.pass(within: nil)
        #expect(n3Pass.keysSent == 0 && n3Pass.tombstonesPurged == 1)
        for id in ["n1", "n2", "n3"] {
            #expect(try trio.nodes[id]!.store.get(key: Array(elsewhere.utf8)) == nil, "\(id)")
        }
        try await trio.shutdown()
    }

    /// A value that expired before the grace period is purged as a tombstone is: a co-replica holding
    /// an older value gets it first, and a replica that purged it does not get it back from one that has
    /// not purged yet (the comparison's entries carry no expiry: without a check of the record, the
    /// replicas would copy it back to each other at every pass, and it would never go).
    @Test func expiredValuesArePurgedOnlyOnceEveryReplicaHoldsThem() async throws {
        let trio = try Trio(tombstoneGrace: .seconds(100))
        let everywhere = trio.key("expired", replicatedBy: ["n1", "n2"])
        let missed = trio.key("expired", replicatedBy: ["n1", "n2"], skip: 1)
        // Expired at 500 s of the clock's 1,000 s, before the grace period; n2 missed it for `missed`
        // and holds the older value it replaced.
        let expired = StoredRecord(
            version: Version(hlc: 11, writer: 9), tombstone: false, value: Array("v2".utf8), expiresAtMillis: 500_000)
        try trio.write(missed, hlc: 10, on: ["n1", "n2"])
        for (key, ids) in [(everywhere, ["n1", "n2"]), (missed, ["n1"])] {
            for id in ids { _ = try trio.nodes[id]!.store.apply(key: Array(key.utf8), record: expired) }
        }
        let n1 = trio.nodes["n1"]!
        let n2 = trio.nodes["n2"]!

        // n1's pass: n2 gets the expired value over its older one, then n1 purges both keys.
        let first = await n1.antiEntropy.pass(within: nil)
        #expect(first.errors == 0, "\(first.firstError ?? "")")
        #expect(first.keysSent == 1 && first.keysReceived == 0)
        #expect(first.tombstonesPurged == 2)
        #expect(try n2.store.get(key: Array(missed.utf8)) == expired)
        for key in [everywhere, missed] {
            #expect(try n1.store.get(key: Array(key.utf8)) == nil, "\(key)")
        }

        // n2's pass: n1 holds nothing for them, so nothing is copied back, and n2 purges them too.
        let second = await n2.antiEntropy.pass(within: nil)
        #expect(second.errors == 0, "\(second.firstError ?? "")")
        #expect(second.keysSent == 0 && second.keysReceived == 0)
        #expect(second.tombstonesPurged == 2)
        for id in ["n1", "n2"] {
            for key in [everywhere, missed] {
                #expect(try trio.nodes[id]!.store.get(key: Array(key.utf8)) == nil, "\(key) on \(id)")
            }
        }
        try await trio.shutdown()
    }

    @Test func aPassConvergesCoReplicasAndCountsEachStaleCopyOnce() async throws {
        let trio = try Trio()
        // n1 and n2 replicate the first half of the ring, n1 and n3 the second.
        let onlyOnN1 = trio.key("a", replicatedBy: ["n1", "n2"])
        let onlyOnN2 = trio.key("b", replicatedBy: ["n1", "n2"])
        let newerOnN2 = trio.key("c", replicatedBy: ["n1", "n2"])
        let deletedOnN3 = trio.key("d", replicatedBy: ["n1", "n3"])
        let same = trio.key("e", replicatedBy: ["n1", "n3"])
        try trio.write(onlyOnN1, hlc: 10, on: ["n1"])
        try trio.write(onlyOnN2, hlc: 11, on: ["n2"])
        try trio.write(newerOnN2, hlc: 12, on: ["n1", "n2"])
        try trio.write(newerOnN2, hlc: 20, on: ["n2"])
        try trio.write(deletedOnN3, hlc: 13, on: ["n1", "n3"])
        try trio.write(deletedOnN3, hlc: 21, tombstone: true, on: ["n3"])
        try trio.write(same, hlc: 14, on: ["n1", "n3"])

        let report = await trio.nodes["n1"]!.antiEntropy.pass(within: nil)
        #expect(report.errors == 0, "\(report.firstError ?? "")")
        #expect(report.keysSent == 1)
        #expect(report.keysReceived == 3)
        #expect(report.rangesCompared == trio.ring.vnodeRanges(replicatedBy: "n1").count)
        #expect(report.bytes > 0)
        for (key, replicas) in [
            (onlyOnN1, ["n1", "n2"]), (onlyOnN2, ["n1", "n2"]), (newerOnN2, ["n1", "n2"]),
            (deletedOnN3, ["n1", "n3"]), (same, ["n1", "n3"]),
        ] {
            let versions = try replicas.map { try trio.version(key, on: $0) }
            #expect(versions[0] != nil && versions[0] == versions[1], "\(key): \(versions)")
        }
        #expect(try trio.nodes["n1"]!.store.get(key: Array(deletedOnN3.utf8))?.tombstone == true)
        // The peers counted the anti-entropy writes they received.
        #expect(
            trio.nodes["n2"]!.metrics.counterTotal(
                label: "quorumkv_anti_entropy_writes_received_total", dimensions: [("node", "n2")]) == 1)
        #expect(
            trio.nodes["n1"]!.metrics.counterTotal(
                label: "quorumkv_anti_entropy_keys_repaired_total",
                dimensions: [("node", "n1"), ("direction", "received")]) == 3)

        // Identical now: one root query per session, nothing moved.
        let again = await trio.nodes["n1"]!.antiEntropy.pass(within: nil)
        #expect(again.errors == 0)
        #expect(again.keysSent + again.keysReceived == 0)
        #expect(again.queries == again.sessions)
        try await trio.shutdown()
    }

    @Test func aMarkForARangeThisNodeDoesNotReplicateIsRepairedBetweenItsReplicas() async throws {
        let trio = try Trio()
        let key = trio.key("m", replicatedBy: ["n1", "n3"])
        try trio.write(key, hlc: 30, on: ["n1"])
        let range = trio.ring.range(containing: Token(key: Array(key.utf8)))
        // n2 held a hint for n3 that expired: a mark for a range n2 does not replicate.
        try trio.nodes["n2"]!.store.markDue(replica: "n3", range: range, atMillis: 1)
        let report = await trio.nodes["n2"]!.antiEntropy.pass(within: range)
        #expect(report.errors == 0, "\(report.firstError ?? "")")
        #expect(report.keysSent == 1, "copied from n1 to n3 by n2")
        #expect(try trio.version(key, on: "n3") == Version(hlc: 30, writer: 9))
        #expect(trio.nodes["n2"]!.store.rangesDue().isEmpty, "the mark is cleared")
        try await trio.shutdown()
    }

    /// A mark made on the ring before a membership change can span ranges of today's ring: it is
    /// repaired piece by piece where the marked replica still holds the data, needs nothing where it
    /// does not, and is cleared.
    @Test func aMarkMadeOnAnOlderRingIsRepairedPieceByPiece() async throws {
        let trio = try Trio()
        // A range n1 and n3 replicate, followed by one n3 does not.
        var found: (key: String, range: TokenRangeSpan, next: TokenRangeSpan)?
        for index in 0..<10_000 where found == nil {
            let key = "o-\(index)"
            let range = trio.ring.range(containing: Token(key: Array(key.utf8)))
            let next = trio.ring.range(containing: Token(range.end &+ 1))
            if Set(trio.ring.preferenceList(for: Token(range.end))) == ["n1", "n3"],
                !trio.ring.preferenceList(for: Token(next.end)).contains("n3")
            {
                found = (key, range, next)
            }
        }
        let (key, range, next) = try #require(found)
        try trio.write(key, hlc: 30, on: ["n1"])
        let marked = TokenRangeSpan(start: range.start, end: next.end)
        try trio.nodes["n2"]!.store.markDue(replica: "n3", range: marked, atMillis: 1)
        let report = await trio.nodes["n2"]!.antiEntropy.pass(within: marked)
        #expect(report.errors == 0, "\(report.firstError ?? "")")
        #expect(try trio.version(key, on: "n3") == Version(hlc: 30, writer: 9), "copied from n1 to n3 by n2")
        #expect(trio.nodes["n2"]!.store.rangesDue().isEmpty, "the mark is cleared")
        try await trio.shutdown()
    }

    @Test func recordsFromALaterCoReplicaReachTheEarlierOnesInTheSamePass() async throws {
        let fixture = ServiceFixture.cluster
        let trio = try Trio(
            cluster: ClusterMap(
                clusterID: fixture.clusterID, epoch: fixture.epoch, replicationFactor: 3, nodes: fixture.nodes))
        let key = "late"
        let range = trio.ring.range(containing: Token(key: Array(key.utf8)))
        let coReplicas = trio.ring.preferenceList(for: Token(range.end)).filter { $0 != "n1" }
        try trio.write(key, hlc: 1, on: ["n1", "n2", "n3"])
        try trio.write(key, hlc: 2, on: [coReplicas[1]])
        let report = await trio.nodes["n1"]!.antiEntropy.pass(within: range)
        #expect(report.errors == 0, "\(report.firstError ?? "")")
        #expect(report.keysReceived == 1, "from \(coReplicas[1])")
        #expect(report.keysSent == 1, "to \(coReplicas[0]), compared again")
        for node in ["n1", "n2", "n3"] {
            #expect(try trio.version(key, on: node) == Version(hlc: 2, writer: 9), "\(node)")
        }
        try await trio.shutdown()
    }

    @Test func aPeerThatIsDownEndsItsSessionsWithAReasonAndKeepsTheMarks() async throws {
        let trio = try Trio(down: ["n2"])
        let key = trio.key("x", replicatedBy: ["n1", "n2"])
        try trio.write(key, hlc: 40, on: ["n1"])
        let range = trio.ring.range(containing: Token(key: Array(key.utf8)))
        try trio.nodes["n1"]!.store.markDue(replica: "n2", range: range, atMillis: 1)
        let report = await trio.nodes["n1"]!.antiEntropy.pass(within: nil)
        #expect(report.errors == trio.ring.vnodeRanges(replicatedBy: "n2").count)
        #expect(report.firstError?.contains("connection refused by n2") == true)
        #expect(trio.nodes["n1"]!.store.rangesDue().count == 1, "a failed comparison clears nothing")
        #expect(report.rangesCompared == trio.ring.vnodeRanges(replicatedBy: "n3").count)
        try await trio.shutdown()
    }

    @Test func adminRepairAnswersTheSummaryAndRefusesABadRange() async throws {
        let trio = try Trio()
        let key = trio.key("adm", replicatedBy: ["n1", "n2"])
        try trio.write(key, hlc: 50, on: ["n2"])
        let answer = try await trio.nodes["n1"]!.service.handle(
            .adminRequest(AdminRequest(command: .repair, arguments: [])), from: ServiceFixture.admin)
        guard case .adminResponse(let response) = answer else {
            Issue.record("answered \(answer)")
            return
        }
        let results = Dictionary(response.results.map { ($0.name, $0.value) }, uniquingKeysWith: { $1 })
        #expect(results["keys_received"] == "1")
        #expect(results["keys_sent"] == "0")
        #expect(results["errors"] == "0")
        #expect(results["ranges_compared"] == "\(trio.ring.vnodeRanges(replicatedBy: "n1").count)")
        await #expect(throws: RPCError.self) {
            _ = try await trio.nodes["n1"]!.service.handle(
                .adminRequest(AdminRequest(command: .repair, arguments: [Pair(name: "range", value: "1-2")])),
                from: ServiceFixture.admin)
        }
        let stats = try await trio.nodes["n1"]!.service.handle(
            .adminRequest(AdminRequest(command: .stats, arguments: [])), from: ServiceFixture.admin)
        guard case .nodeStats(let counters) = stats else {
            Issue.record("Admin stats answered \(stats.type)")
            return
        }
        #expect(counters.antiEntropyKeysReceived == 1)
        #expect(counters.antiEntropyLastFullPassMillis == Trio.wallMillis)
        // Each range's last comparison, and the oldest of them.
        let ranges = trio.ring.vnodeRanges(replicatedBy: "n1")
        #expect(
            counters.rangesCompared
                == ranges.map {
                    RangeCompared(range: TokenRange(start: $0.start, end: $0.end), millis: Trio.wallMillis)
                })
        #expect(counters.antiEntropyOldestRangeComparedMillis == Trio.wallMillis)
        // n2 compared nothing yet: its oldest range was never compared.
        let n2Stats = try await trio.nodes["n2"]!.service.handle(
            .adminRequest(AdminRequest(command: .stats, arguments: [])), from: ServiceFixture.admin)
        guard case .nodeStats(let n2Response) = n2Stats else {
            Issue.record("Admin stats answered \(n2Stats.type)")
            return
        }
        #expect(n2Response.antiEntropyOldestRangeComparedMillis == 0)
        #expect(n2Response.rangesCompared.allSatisfy { $0.millis == 0 })
        // The times are durable: a new anti-entropy over the same store (a restart) reads them back.
        let n1 = trio.nodes["n1"]!
        var configuration = AntiEntropy.Configuration()
        configuration.interval = nil
        let restarted = AntiEntropy(
            nodeID: "n1", ring: trio.ring,
            local: LocalAntiEntropyReplica(replica: n1.replica, merkle: n1.store, pool: trio.pool),
            peers: [:], marks: n1.store, configuration: configuration,
            statistics: NodeStatistics(nodeID: "n1", metricsFactory: TestMetrics()), wallMillis: { 5 },
            logger: Trio.quiet, checkpoint: n1.store)
        #expect(restarted.rangeComparisons().map(\.millis) == Array(repeating: Trio.wallMillis, count: ranges.count))
        try await trio.shutdown()
    }

    @Test func aMalformedPeerAnswerEndsTheSession() async throws {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let store = InMemoryStore()
        let replica = Replica(nodeID: "n1", store: store, wallMillis: { 1 })
        let local = LocalAntiEntropyReplica(replica: replica, merkle: store, pool: pool)
        let liar = RemoteAntiEntropyReplica(nodeID: "liar", timeout: .seconds(1)) { _, _ in
            .merkleExchangeResponse(MerkleExchangeResponse(hashes: [1, 2], entries: []))
        }
        let ring = try ServiceFixture.cluster.ring()
        var configuration = AntiEntropy.Configuration()
        configuration.interval = nil
        let antiEntropy = AntiEntropy(
            nodeID: "n1", ring: ring, local: local, peers: ["n2": liar, "n3": liar], marks: store,
            configuration: configuration, statistics: NodeStatistics(nodeID: "n1", metricsFactory: TestMetrics()),
            wallMillis: { 1 }, logger: Trio.quiet)
        let report = await antiEntropy.pass(within: nil)
        #expect(report.errors == report.sessions)
        #expect(report.firstError?.contains("malformed Merkle answer") == true)
        store.close()
        try await pool.shutdownGracefully()
    }

    /// `MerkleFetch` answers the asked-for records of the named leaves, whole above the leaf's guard and
    /// as key and version at or below it, and refuses a malformed leaf list.
    @Test func merkleFetchAnswersWhatWasAskedAndRefusesBadLeaves() async throws {
        let trio = try Trio()
        let n1 = trio.nodes["n1"]!
        let key = trio.key("f", replicatedBy: ["n1", "n2"])
        try trio.write(key, hlc: 7, on: ["n1"])
        let token = Token(key: Array(key.utf8))
        let range = trio.ring.range(containing: token)
        let tree = MerkleTree(range: range)
        var (low, high) = (0, tree.leafCount - 1)  // the leaf holding the key: spans increase clockwise
        while low < high {
            let middle = (low + high) / 2
            let span = tree.span(level: tree.depth, index: middle)
            if span.contains(token) || (span.end &- range.start) > (token.value &- range.start) {
                high = middle
            } else {
                low = middle + 1
            }
        }
        #expect(tree.span(level: tree.depth, index: low).contains(token))
        let hash = MerkleEntry.hash(key: Array(key.utf8), version: Version(hlc: 7, writer: 9), tombstone: false)
        func fetch(
            leaves: [UInt8], guards: [UInt64], hashes: [UInt64]
        ) async throws -> MerkleFetchResponse? {
            let answer = try await n1.service.handle(
                .merkleFetchRequest(
                    MerkleFetchRequest(
                        range: TokenRange(start: range.start, end: range.end), leaves: ByteBuffer(bytes: leaves),
                        valueAboveHlc: guards, hashes: hashes, keyspace: 0)),
                from: Trio.nodeIdentity)
            guard case .merkleFetchResponse(let response) = answer else { return nil }
            return response
        }
        let leaf = MerkleNodeList.encode([low])
        let whole = try await fetch(leaves: leaf, guards: [6], hashes: [hash])
        #expect(whole?.records.map { Array($0.value.readableBytesView) } == [Array("v7".utf8)])
        #expect(whole?.entries.isEmpty == true)
        let guarded = try await fetch(leaves: leaf, guards: [7], hashes: [hash ^ 1, hash])
        #expect(guarded?.records.isEmpty == true && guarded?.entries.isEmpty == true)
        #expect(guarded?.older == [OlderEntry(index: 1, version: Version(hlc: 7, writer: 9), tombstone: false)])
        let unknown = try await fetch(leaves: leaf, guards: [0], hashes: [hash ^ 1])
        #expect(unknown == MerkleFetchResponse(records: [], entries: [], older: []))
        for (leaves, guards, what) in [
            ([0x80] as [UInt8], [0] as [UInt64], "a leaf list cut short"),
            (leaf, [], "no guard for the leaf"),
            (MerkleNodeList.encode([tree.leafCount]), [0], "no such leaf"),
        ] {
            await #expect(throws: RPCError.self, "\(what)") {
                _ = try await fetch(leaves: leaves, guards: guards, hashes: [hash])
            }
        }
        try await trio.shutdown()
    }

    /// A peer that answers a fetch with a record it was not asked for ends the listing with an error.
    @Test func aFetchAnswerWithARecordNotAskedForIsMalformed() async throws {
        let asked = MerkleEntry(key: Array("x".utf8), version: Version(hlc: 5, writer: 1), tombstone: false)
        let liar = RemoteAntiEntropyReplica(nodeID: "liar", timeout: .seconds(1)) { request, _ in
            if case .merkleFetchRequest = request {
                return .merkleFetchResponse(
                    MerkleFetchResponse(
                        records: [
                            Record(
                                key: ByteBuffer(string: "y"), version: asked.version, tombstone: false,
                                value: ByteBuffer(string: "v"), expiresAtMillis: nil)
                        ], entries: [], older: []))
            }
            return .merkleExchangeResponse(MerkleExchangeResponse(hashes: [asked.hash], entries: []))
        }
        let tree = MerkleTree(range: TokenRangeSpan(start: .max, end: .max))
        let query = KVCore.MerkleQuery(
            kind: .listing, level: tree.depth, nodes: [MerkleSegments.segment(of: asked.token)])
        await #expect(throws: MerkleComparisonError.self) {
            _ = try await liar.listing(query, in: tree, local: [])
        }
    }

    @Test func aPassMovesNoFasterThanItsRate() async throws {
        let rate = 40_000
        let trio = try Trio(bytesPerSecond: rate)
        let value = [UInt8](repeating: 0x61, count: 500)
        var keys = 0
        for index in 0..<2_000 where keys < 200 {
            let key = "rate-\(index)"
            guard Set(trio.ring.preferenceList(forKey: Array(key.utf8))) == ["n1", "n2"] else { continue }
            _ = try trio.nodes["n1"]!.store.apply(
                key: Array(key.utf8),
                record: StoredRecord(version: Version(hlc: 1, writer: 1), tombstone: false, value: value))
            keys += 1
        }
        let started = ContinuousClock.now
        let report = await trio.nodes["n1"]!.antiEntropy.pass(within: nil)
        let elapsed = ContinuousClock.now - started
        #expect(report.errors == 0)
        #expect(report.keysSent == keys)
        #expect(report.bytes > keys * value.count)
        // One second of burst is free; the rest is paid at `rate` (a lower bound only: never flaky).
        let owed = Double(report.bytes - rate) / Double(rate)
        #expect(elapsed >= .seconds(owed * 0.95), "\(report.bytes) bytes in \(elapsed)")
        try await trio.shutdown()
    }

    @Test func theRateLimitMakesACallerWaitForItsDebt() {
        let start = ContinuousClock.now
        var limit = ByteRateLimit(bytesPerSecond: 1_000, now: start)
        #expect(limit.delay(now: start) == .zero)
        limit.spend(1_500, now: start)  // 1,000 of credit, 500 of debt: half a second.
        #expect(limit.delay(now: start) == .milliseconds(500))
        #expect(limit.delay(now: start + .milliseconds(250)) == .milliseconds(250))
        #expect(limit.delay(now: start + .milliseconds(500)) == .zero)
        // Idle time refills at most one burst.
        limit.spend(0, now: start + .seconds(60))
        limit.spend(1_000, now: start + .seconds(60))
        #expect(limit.delay(now: start + .seconds(60)) == .zero)
        limit.spend(1, now: start + .seconds(60))
        #expect(limit.delay(now: start + .seconds(60)) > .zero)
    }
}
