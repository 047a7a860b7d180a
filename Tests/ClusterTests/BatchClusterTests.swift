import KVClient
import KVCore
import KVWire
import MetricsTestKit
import Synchronization
import Testing

extension RealProcessTests {
    /// Real processes: batch reads and writes of 1,000 keys on 4 nodes (N=3, R=W=2) cost a few
    /// requests per node, not one per key, with every node up and with one SIGKILLed; a client that
    /// speaks only protocol version 3 gets the same answers through each key's own requests.
    /// Addresses 127.0.0.13, .19, .30 and .39 are this suite's alone.
    @Suite(.timeLimit(.minutes(4)))
    struct BatchClusterTests {
        static let keyCount = 1_000
        /// "A few" round trips per node: the first requests, the next replica or a hint after a
        /// failure, a repair.
        static let requestsPerNodeMax = 4

        static func keys() -> [String] { (0..<keyCount).map { "batch-\($0)" } }

        @Test func aThousandKeysCostAFewRequestsPerNodeWithOneReplicaDown() async throws {
            let cluster = try ClusterHarness(hosts: [13, 19, 30, 39])
            defer { cluster.tearDown() }
            try cluster.startAll()
            let metrics = TestMetrics()
            let client = try cluster.client { $0.metricsFactory = metrics }
            let keys = Self.keys()
            let bound = cluster.ids.count * Self.requestsPerNodeMax
            let counted = Mutex<[Int]>([])
            defer { print("batch requests (put, get, put with n2 down, get with n2 down): \(counted.withLock { $0 })") }
            /// Runs `batch` and checks the requests it cost.
            func counting<Result>(_ what: String, _ batch: () async throws -> Result) async throws -> Result {
                let sent = client.dataRequestsSent
                let result = try await batch()
                let requests = client.dataRequestsSent - sent
                counted.withLock { $0.append(requests) }
                #expect(requests <= bound, "\(what): \(requests) requests")
                return result
            }

            let versions = try await counting("put") {
                try await client.put(keys.map { (key: $0, value: "first \($0)") })
            }
            #expect(versions.count == keys.count)
            let read = try await counting("get") { try await client.get(keys: keys) }
            #expect(read.map { $0?.value(as: String.self) } == keys.map { "first \($0)" })
            #expect(zip(read, versions).allSatisfy { $0?.version == $1 })

            cluster.stop("n2")
            let rewritten = try await counting("put, n2 down") {
                try await client.put(keys.map { (key: $0, value: "second \($0)") })
            }
            #expect(rewritten.count == keys.count)
            let again = try await counting("get, n2 down") { try await client.get(keys: keys) }
            #expect(again.map { $0?.value(as: String.self) } == keys.map { "second \($0)" })

            // A client of the previous protocol (no batch messages) reads the same through each key's
            // own requests.
            let previous = try cluster.client { $0.protocolVersions = WireProtocol.versions.capped(at: 3)! }
            let sent = previous.dataRequestsSent
            let some = Array(keys.prefix(50))
            let old = try await previous.get(keys: some)
            #expect(old.map { $0?.value(as: String.self) } == some.map { "second \($0)" })
            #expect(previous.dataRequestsSent - sent >= some.count * 2, "each key's own Gets (R=2)")
            await previous.close()
            await client.close()
            // The client counts each batch call once, under its own operation.
            func calls(_ operation: String) -> Int64 {
                (try? metrics.expectCounter(
                    "quorumkv_client_operations_total",
                    [("operation", operation), ("consistency", "quorum"), ("outcome", "ok")]))?.totalValue ?? 0
            }
            #expect(calls("batch_put") == 2)
            #expect(calls("batch_get") == 2)
        }
    }
}
