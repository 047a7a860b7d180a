import Foundation
import KVClient
import KVCore
import KVWire
import MetricsTestKit
import Synchronization
import Testing

extension RealProcessTests.FirstHalf {
    /// Real processes: batch reads and writes of 1,000 keys on 4 nodes (N=3, R=W=2) cost a few
    /// requests per node, not one per key, with every node up and with one SIGKILLed; a client that
    /// speaks only protocol version 3 gets the same answers through each key's own requests.
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
                    [
                        ("operation", operation), ("consistency", "quorum"), ("keyspace", "default"),
                        ("outcome", "ok"),
                    ]))?.totalValue ?? 0
            }
            #expect(calls("batch_put") == 2)
            #expect(calls("batch_get") == 2)
        }

        /// One client running more batch writes at once than a node's storage queue admits (each key
        /// of a `PutBatch` is a job of its own there) gets every key written, none refused
        /// `overloaded`: the client holds the batches past its window of keys in flight to the node
        /// until earlier ones are answered. The node is stopped while the batches are sent, so that
        /// it reads all that was sent at once when it resumes, as a node busy elsewhere would; its
        /// storage queue is the least that holds the client's whole window (`batchKeysInFlightPerNode`,
        /// 1,500 here, below the default 2,048, which this node's queue could not hold), which 6,000
        /// keys sent at once overflowed every time without the window (the default 4,096, only now and
        /// then).
        /// Closing the client while batches wait for room ends them at once.
        @Test func concurrentBatchesOfOneClientNeverOverflowANode() async throws {
            let cluster = try ClusterHarness(hosts: [28], replicationFactor: 1)
            // The client's window set to the node's queue, below the default window (2,048): the setting
            // is what protects the node.
            let queue = 1_500
            cluster.extraArguments = ["--storage-queue-max", "\(queue)"]
            defer { cluster.tearDown() }
            try cluster.startAll()
            let metrics = TestMetrics()
            let timeout = Duration.seconds(60)
            let client = try cluster.client(timeout: timeout) {
                $0.metricsFactory = metrics
                $0.batchKeysInFlightPerNode = queue
            }
            let admin = try cluster.client(certificate: "admin")
            let (batches, keysPerBatch) = (60, 100)
            // All at once, they would be more jobs than the node admits, even with its default queue.
            #expect(batches * keysPerBatch > max(queue, Limits.storageQueueMax))
            try await client.put("window-warm-up", value: "connected")
            var stopped = false
            defer { if stopped { cluster.signal("n1", SIGCONT) } }

            /// Runs the batches with n1 stopped until each has sent its request or waits in the client
            /// for room, then `next`; returns how many failed.
            func batchesWhileStopped(_ round: Int, then next: () async -> Void) async -> Int {
                let sentBefore = client.dataRequestsSent
                cluster.signal("n1", SIGSTOP)
                stopped = true
                return await withTaskGroup(of: Int.self) { group in
                    for batch in 0..<batches {
                        group.addTask {
                            let entries = (0..<keysPerBatch).map {
                                (key: "window-\(round)-\(batch)-\($0)", value: "v\($0)")
                            }
                            let written = try? await client.put(entries)
                            return written?.count == keysPerBatch ? 0 : 1
                        }
                    }
                    func waitingBatches() -> Int {
                        let keys = (try? metrics.expectGauge("quorumkv_client_batch_keys_waiting"))?.lastValue ?? 0
                        return Int(keys) / keysPerBatch
                    }
                    let deadline = ContinuousClock.now + .seconds(10)
                    while client.dataRequestsSent - sentBefore + waitingBatches() < batches,
                        ContinuousClock.now < deadline
                    {
                        try? await Task.sleep(for: .milliseconds(10))
                    }
                    #expect(waitingBatches() > 0, "no batch waited for room in the client")
                    await next()
                    return await group.reduce(0, +)
                }
            }

            let failed = await batchesWhileStopped(1) {
                cluster.signal("n1", SIGCONT)
                stopped = false
            }
            #expect(failed == 0, "\(failed) of \(batches) batches failed")
            let stats = try await admin.nodeStatistics(node: "n1")
            #expect(stats.refused("queue_full") == 0, "\(stats)")
            #expect(try metrics.expectGauge("quorumkv_client_batch_keys_waiting").lastValue == 0)
            await admin.close()

            // The batches waiting for room, and those whose node does not answer, fail when the
            // client closes, long before their request timeout.
            let closing = ContinuousClock.now
            let failedAtClose = await batchesWhileStopped(2) { await client.close() }
            #expect(failedAtClose == batches)
            #expect(ContinuousClock.now - closing < timeout / 2)
            #expect(try metrics.expectGauge("quorumkv_client_batch_keys_waiting").lastValue == 0)
        }
    }
}
