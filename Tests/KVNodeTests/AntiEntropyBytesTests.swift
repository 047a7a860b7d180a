import Foundation
import KVCore
import KVNode
import KVRPC
import KVStorage
import KVTLS
import KVWire
import Logging
import MetricsTestKit
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// What anti-entropy sends compared with what differs (issue 6: at most 2× the differing bytes): two
/// replicas, n1 and n2, of one range holding `keys` records (10-byte keys, 100-byte values, about
/// `density` records per Merkle leaf as in a node of 1,000,000 keys), `1 %` of them rewritten on n1
/// only, in RocksDB stores (their listings are token-ordered scans). Bytes are frame bytes (`RemoteAntiEntropyReplica.frameBytes`): deterministic, not timed.
private struct RepairBytesBench {
    struct Outcome: CustomStringConvertible {
        var keys: Int
        var differing: Int
        var differingBytes: Int
        var report: AntiEntropyReport

        var ratio: Double { Double(report.bytes) / Double(differingBytes) }

        var description: String {
            "\(keys) keys, \(differing) differing (\(differingBytes) bytes): \(report.queries) queries, "
                + "\(report.keysSent) sent, \(report.keysReceived) received, \(report.bytes) bytes = "
                + String(format: "%.2f", ratio) + "× the differing bytes"
        }
    }

    static let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
    static let identity = PeerIdentity(name: "peer", role: .node)

    /// Loads both replicas, then runs a repair pass on `repairingNode` ("n2" pulls the stale keys,
    /// "n1" pushes them), and checks that the replicas then hold the same records.
    static func run(keys keyCount: Int, density: Double = 1.27, repairingNode: String) async throws -> Outcome {
        // The range (max, end] (tokens 0...end) holds keyCount / density segments; n1 owns `end` and
        // n2 the next token, so with N = 2 both replicate it, and nothing else matters.
        let segments = UInt64(Double(keyCount) / density)
        let end = segments << 44 - 1
        let cluster = ClusterMap(
            clusterID: "bytes", epoch: 1, replicationFactor: 2,
            nodes: [
                ClusterMap.Node(id: "n1", address: "127.0.0.1:1", tokens: [end]),
                ClusterMap.Node(id: "n2", address: "127.0.0.1:2", tokens: [end + 1]),
                ClusterMap.Node(id: "n3", address: "127.0.0.1:3", tokens: [.max]),
            ])
        let range = TokenRangeSpan(start: .max, end: end)
        let ring = try cluster.ring()
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("qkv-bytes-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var stores: [String: RocksDBStore] = [:]
        for id in ["n1", "n2"] {
            stores[id] = try RocksDBStore(directory: directory + "/" + id, durability: .none)
        }
        var services: [String: ReplicaService] = [:]
        var antiEntropy: [String: AntiEntropy] = [:]
        let table = BytesServiceTable()
        for id in ["n1", "n2"] {
            let store = stores[id]!
            let replica = Replica(nodeID: id, store: store, wallMillis: { 1_000 })
            let other = id == "n1" ? "n2" : "n1"
            let peer = RemoteAntiEntropyReplica(nodeID: other, timeout: .seconds(60)) { request, _ in
                let response = try await table.service(other).handle(request, from: Self.identity)
                table.count(request, response)
                return response
            }
            var configuration = AntiEntropy.Configuration()
            configuration.interval = nil
            configuration.bytesPerSecond = 1 << 40
            let statistics = NodeStatistics(nodeID: id, metricsFactory: TestMetrics())
            let node = AntiEntropy(
                nodeID: id, ring: ring, local: LocalAntiEntropyReplica(replica: replica, merkle: store, pool: pool),
                peers: [other: peer], marks: store, configuration: configuration, statistics: statistics,
                wallMillis: { 1_000 }, logger: quiet)
            antiEntropy[id] = node
            let service = ReplicaService(
                nodeID: id, membership: try Membership(initial: cluster, store: store, votes: TestMapVotes()),
                store: store, pool: pool,
                statistics: statistics, merkle: store,
                replica: replica, antiEntropy: node, wallMillis: { 1_000 })
            services[id] = service
            table.set(id, service)
        }

        let started = ContinuousClock.now
        var loaded = 0
        var differing = 0
        var differingBytes = 0
        var candidate = 0
        while loaded < keyCount {
            let key = Array(String(format: "k%09d", candidate).utf8)
            candidate += 1
            guard range.contains(Token(key: key)) else { continue }
            let value = [UInt8](repeating: UInt8(truncatingIfNeeded: candidate), count: 100)
            let old = StoredRecord(version: Version(hlc: 1, writer: 1), tombstone: false, value: value)
            _ = try stores["n1"]!.apply(key: key, record: old)
            _ = try stores["n2"]!.apply(key: key, record: old)
            if loaded % 100 == 0 {
                let new = StoredRecord(version: Version(hlc: 2, writer: 1), tombstone: false, value: value.reversed())
                _ = try stores["n1"]!.apply(key: key, record: new)
                differing += 1
                differingBytes += key.count + new.value.count + 17
            }
            loaded += 1
        }

        let report = await antiEntropy[repairingNode]!.pass(within: range)
        print("pass in \(ContinuousClock.now - started): \(table.breakdown)")
        #expect(report.errors == 0, "\(report.firstError ?? "")")
        #expect(report.keysSent + report.keysReceived == differing)
        #expect(try stores["n1"]!.merkleDigest(of: range) == stores["n2"]!.merkleDigest(of: range))
        for store in stores.values { store.close() }
        try await pool.shutdownGracefully()
        return Outcome(keys: keyCount, differing: differing, differingBytes: differingBytes, report: report)
    }
}

/// Late binding of node ids to services.
private final class BytesServiceTable: Sendable {
    private let services = Mutex<[String: ReplicaService]>([:])

    func set(_ id: String, _ service: ReplicaService) { services.withLock { $0[id] = service } }
    func service(_ id: String) -> ReplicaService { services.withLock { $0[id]! } }

    private let bytesByType = Mutex<[String: Int]>([:])

    /// Frame bytes per request type, for the printout.
    func count(_ request: Message, _ response: Message) {
        let bytes = [request, response].reduce(0) {
            $0 + $1.frame(requestID: 0, allocator: ByteBufferAllocator()).encodedBytes
        }
        var name = "\(request.type)"
        if case .merkleExchangeRequest(let exchange) = request {
            name += ".\(exchange.query)"
            if case .merkleExchangeResponse(let answer) = response {
                bytesByType.withLock {
                    $0[name + ".nodes", default: 0] +=
                        MerkleNodeList.decode(exchange.nodes.readableBytesView)?.count ?? 0
                    $0[name + ".nodeBytes", default: 0] += exchange.nodes.readableBytes
                    $0[name + ".hashes", default: 0] += answer.hashes.count
                    $0[name + ".entries", default: 0] += answer.entries.count
                    $0[name + ".queries", default: 0] += 1
                }
            }
        }
        bytesByType.withLock { $0[name, default: 0] += bytes }
    }

    var breakdown: String { bytesByType.withLock { "\($0.sorted { $0.key < $1.key })" } }
}

/// Serialized: each case loads two stores of 100,000 keys, and both at once starve a 2-core machine.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct AntiEntropyBytesTests {
    /// 100,000 keys, 1 % differing: the stale replica's repair (it pulls, issue 6's case) sends at most
    /// 1.9× the differing bytes (1.82× measured), the fresh replica's (it pushes, after learning the
    /// peer's older versions) at most 2× (1.97×).
    @Test(arguments: [("n2", 1.9), ("n1", 2.0)])
    func aRepairSendsAboutTwiceTheDifferingBytes(repairingNode: String, ratioMax: Double) async throws {
        let outcome = try await RepairBytesBench.run(keys: 100_000, repairingNode: repairingNode)
        print("repair bytes (\(repairingNode) repairs): \(outcome)")
        #expect(outcome.ratio <= ratioMax, "\(outcome)")
    }

    /// The issue's size, when asked for: `QUORUMKV_REPAIR_BYTES_KEYS=1000000 swift test --filter
    /// AntiEntropyBytesTests/measure`.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["QUORUMKV_REPAIR_BYTES_KEYS"] != nil))
    func measure() async throws {
        let keys = Int(ProcessInfo.processInfo.environment["QUORUMKV_REPAIR_BYTES_KEYS"] ?? "") ?? 1_000_000
        for node in ["n2", "n1"] {
            let outcome = try await RepairBytesBench.run(keys: keys, repairingNode: node)
            print("repair bytes (\(node) repairs): \(outcome)")
        }
    }
}
