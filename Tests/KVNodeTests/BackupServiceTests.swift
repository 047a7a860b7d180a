import Foundation
import KVCore
import KVNode
import KVRPC
import KVStorage
import KVTLS
import KVWire
import Metrics
import MetricsTestKit
import NIOCore
import NIOPosix
import Testing

/// The node's side of backups (`ReplicaService+Backup.swift`) over a real RocksDB store: a checkpoint
/// with checksums and the node's clock, bounded reads of listed files only, release.
@Suite struct BackupServiceTests {
    @Test func checkpointReadAndReleaseRefusingHostileRequests() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kvnode-backup-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try RocksDBStore(directory: path)
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let statistics = withMetricsFactory(TestMetrics()) { NodeStatistics(nodeID: "n1") }
        let service = ReplicaService(
            nodeID: "n1",
            membership: try Membership(initial: ServiceFixture.cluster, store: store, votes: TestMapVotes()),
            store: store, pool: pool, statistics: statistics, wallMillis: { 1_700_000_000_000 })
        for index in 0..<100 {
            _ = try store.apply(
                key: Array("k\(index)".utf8),
                record: StoredRecord(
                    version: Version(hlc: UInt64(index + 1), writer: 1), tombstone: false,
                    value: Array(repeating: UInt8(index), count: 3000)))
        }

        let answer = try await service.handle(
            .backupCheckpointRequest(BackupCheckpointRequest(id: "b1")), from: ServiceFixture.admin)
        guard case .backupCheckpointResponse(let checkpoint) = answer else {
            Issue.record("answered \(answer.type)")
            return
        }
        #expect(checkpoint.node == "n1" && checkpoint.id == "b1" && checkpoint.epoch == 1)
        #expect(checkpoint.hlc >> 16 == 1_700_000_000_000, "the node's clock when it took the checkpoint")
        #expect(FileManager.default.fileExists(atPath: "\(path)/checkpoints/b1"))
        let table = try #require(checkpoint.files.first { $0.name.hasSuffix(".sst") })

        // The whole file, in chunks, matches its checksum; a request for more than the cap gets the cap.
        var bytes: [UInt8] = []
        while UInt64(bytes.count) < table.bytes {
            let read = try await service.handle(
                .backupReadRequest(
                    BackupReadRequest(id: "b1", file: table.name, offset: UInt64(bytes.count), length: .max)),
                from: ServiceFixture.admin)
            guard case .backupReadResponse(let chunk) = read, chunk.data.readableBytes > 0 else {
                Issue.record("answered \(read.type) or nothing")
                return
            }
            #expect(chunk.data.readableBytes <= Limits.backupChunkBytesMax)
            bytes += Array(chunk.data.readableBytesView)
        }
        #expect(SHA256Digest.hash(bytes) == Array(table.sha256.readableBytesView))

        for (id, file, offset) in [
            ("b1", "../../etc/passwd", UInt64(0)), ("b1", "/etc/passwd", 0), ("b1", "..", 0), ("nope", table.name, 0),
            ("../b1", table.name, 0),
        ] {
            await #expect(throws: RPCError.self) {
                _ = try await service.handle(
                    .backupReadRequest(BackupReadRequest(id: id, file: file, offset: offset, length: 10)),
                    from: ServiceFixture.admin)
            }
        }
        await #expect(throws: RPCError.self) {
            _ = try await service.handle(
                .backupCheckpointRequest(BackupCheckpointRequest(id: "../escape")), from: ServiceFixture.admin)
        }
        let past = try await service.handle(
            .backupReadRequest(BackupReadRequest(id: "b1", file: table.name, offset: .max, length: 10)),
            from: ServiceFixture.admin)
        #expect(past == .backupReadResponse(BackupReadResponse(data: ByteBuffer())))

        let released = try await service.handle(
            .backupReleaseRequest(BackupReleaseRequest(id: "b1")), from: ServiceFixture.admin)
        #expect(released == .backupReleaseResponse(BackupReleaseResponse(released: true)))
        #expect(!FileManager.default.fileExists(atPath: "\(path)/checkpoints/b1"))
        store.close()
        try await pool.shutdownGracefully()
    }

    /// Backups read every file of a node: only admin certificates may ask.
    @Test(arguments: [
        MessageType.backupCheckpointRequest, .backupChangesRequest, .backupReadRequest, .backupReleaseRequest,
    ])
    func backupRequestsAreForAdminsOnly(_ type: MessageType) {
        #expect(RPCAuthorization.permits(.admin, toSend: type))
        #expect(!RPCAuthorization.permits(.node, toSend: type))
        #expect(!RPCAuthorization.permits(.client, toSend: type))
    }
}
