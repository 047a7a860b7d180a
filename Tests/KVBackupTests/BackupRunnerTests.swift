import Foundation
import KVBackup
import KVCore
import KVTLS
import Synchronization
import Testing

/// A cluster of one node whose checkpoint holds one file, served from memory; it counts what it serves.
private final class MemorySource: BackupSource {
    let content: [UInt8]
    let sha256: String
    let bytesServed = Atomic<Int>(0)
    /// The `since` of every checkpoint asked for (-1 for a full one).
    let sinceAsked = Mutex<[Int64]>([])

    init(bytes: Int) {
        content = (0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        sha256 = SHA256Digest.hash(content).hexString
    }

    func clusterMap() async throws -> ClusterMap {
        ClusterMap(
            clusterID: "test", epoch: 1, replicationFactor: 1,
            nodes: [ClusterMap.Node(id: "n1", address: "127.0.0.1:7411", tokens: [1])])
    }

    func checkpoint(id: String, node: String, since: UInt64?) async throws -> NodeCheckpoint {
        let asked = sinceAsked.withLock { asked in
            asked.append(since.map { Int64($0) } ?? -1)
            return asked.count
        }
        return NodeCheckpoint(
            node: node, hlc: UInt64(asked) << 32, epoch: 1,
            files: [BackupManifest.FileRecord(name: "000001.sst", bytes: UInt64(content.count), sha256: sha256)],
            since: since)
    }

    func read(id: String, file: String, offset: UInt64, length: Int, node: String) async throws -> [UInt8] {
        let start = Int(offset)
        let end = min(content.count, start + length)
        bytesServed.add(end - start, ordering: .relaxed)
        return Array(content[start..<end])
    }

    func release(id: String, node: String) async throws {}
}

struct BackupRunnerTests {
    /// A backup builds on the destination's latest, asking the nodes for what changed since its cut less
    /// the overlap; `incremental = false` (`--full`) asks for whole checkpoints.
    @Test func aSecondBackupIsIncrementalOnTheFirst() async throws {
        let root = NSTemporaryDirectory() + "kvbackup-incremental-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let source = MemorySource(bytes: 1000)
        var runner = BackupRunner(source: source, destination: BackupDestination(root: root))
        runner.incrementalOverlap = .milliseconds(3)
        let first = try await runner.run(id: "20261203T100000Z-000001").manifest
        let second = try await runner.run(id: "20261203T110000Z-000002").manifest
        runner.incremental = false
        let third = try await runner.run(id: "20261203T120000Z-000003").manifest
        #expect(first.base == nil && second.base == first.id && third.base == nil)
        #expect(source.sinceAsked.withLock { $0 } == [-1, Int64(first.cut - (3 << 16)), -1])
        #expect(second.nodes.map(\.since) == [first.cut - (3 << 16)])
        #expect(
            try RestorePlan(manifests: BackupDestination(root: root).manifests(), backup: second.id, asOf: nil)
                .chain.map(\.id) == [second.id, first.id])
    }

    /// `--rate`: a node's files are read no faster than the rate (after one second's burst), and the
    /// copy is whole.
    @Test func aRateLimitPacesTheReadsOfEachNode() async throws {
        let root = NSTemporaryDirectory() + "kvbackup-rate-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let source = MemorySource(bytes: 3 * 262_144)
        var runner = BackupRunner(source: source, destination: BackupDestination(root: root))
        runner.chunkBytes = 65_536
        runner.bytesPerSecondPerNode = 262_144
        let started = ContinuousClock.now
        let report = try await runner.run()
        let took = ContinuousClock.now - started
        #expect(report.bytesCopied == UInt64(source.content.count))
        #expect(source.bytesServed.load(ordering: .relaxed) == source.content.count)
        // A burst of one second's worth, then the other two at the rate: at least about 2 s.
        #expect(took >= .milliseconds(1_700), "3 × 256 KiB at 256 KiB/s took \(took)")
        #expect(try BackupDestination(root: root).verify().ok)
    }
}
