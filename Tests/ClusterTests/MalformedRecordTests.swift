import Foundation
import KVCore
import KVRPC
import KVWire
import NIOCore
import Testing

extension RealProcessTests.FirstHalf {
    /// A record no write could have made (a tombstone with a value) from a client certificate: the
    /// node trapped in `StoredRecord.init` on a `Hint` and a `HintBatch` carrying one, which killed
    /// it. Now each is refused as `invalidRequest`, and the node serves on.
    @Suite(.timeLimit(.minutes(2)))
    struct MalformedRecordTests {
        @Test func aTombstoneWithAValueIsRefusedWithoutATrap() async throws {
            let cluster = try ClusterHarness(nodes: 2, firstHost: 146, replicationFactor: 2)
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            expectSuccess(try cluster.kvctl(["put", "kept", "value"]))
            let connection = try await MisplacedHintClusterTests.connect(cluster, to: "n1", as: "client", role: .client)
            let nowMillis = UInt64(Date().timeIntervalSince1970 * 1000)
            let record = Record(
                key: ByteBuffer(string: "kept"), version: Version(hlc: nowMillis << 16, writer: 9), tombstone: true,
                value: ByteBuffer(string: "a tombstone with a value"), expiresAtMillis: nil)
            await #expect(throws: RPCError.remote(.invalidRequest, message: "")) {
                _ = try await connection.call(
                    .hintRequest(HintRequest(target: "n2", record: record, keyspace: 0)), timeout: .seconds(10))
            }
            let batch = try await connection.call(
                .hintBatchRequest(HintBatchRequest(keyspace: 0, hints: [BatchHint(target: "n2", record: record)])),
                timeout: .seconds(10))
            guard case .hintBatchResponse(let response) = batch else {
                Issue.record("answered \(batch.type)")
                return
            }
            #expect(response.items.count == 1 && response.items[0].outcome == nil, "\(response)")
            #expect(response.items.first?.error?.message.contains("a tombstone carries no value") == true)
            // An empty key is no key (FRAMES.md): a read of one is refused, not answered as absent.
            await #expect(throws: RPCError.remote(.invalidRequest, message: "")) {
                _ = try await connection.call(
                    .getRequest(GetRequest(key: ByteBuffer(), keyspace: 0)), timeout: .seconds(10))
            }
            let reads = try await connection.call(
                .getBatchRequest(GetBatchRequest(keyspace: 0, keys: [ByteBuffer(), ByteBuffer(string: "kept")])),
                timeout: .seconds(10))
            guard case .getBatchResponse(let answers) = reads else {
                Issue.record("answered \(reads.type)")
                return
            }
            #expect(answers.items.first?.error?.code == .invalidRequest, "\(answers)")
            #expect(answers.items.last?.record?.value == ByteBuffer(string: "value"), "\(answers)")
            await connection.close()
            #expect(cluster.isRunning("n1"))
            #expect(try cluster.kvctl(["get", "kept", "--consistency", "all"]).stdout == "value")
        }
    }
}
