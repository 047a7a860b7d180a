import Foundation
import KVBackup
import KVCore
import KVTLS
import Testing

/// A destination in a temporary folder, with files written as a backup would leave them.
private final class Scratch {
    let root: String
    let destination: BackupDestination

    init() throws {
        root = NSTemporaryDirectory() + "kvbackup-\(UUID().uuidString)"
        destination = BackupDestination(root: root)
        try destination.prepare()
    }

    deinit {
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Stores `content` as `files/<sha256>` and returns its record under `name`.
    func store(_ content: String, as name: String) throws -> BackupManifest.FileRecord {
        let bytes = Array(content.utf8)
        let sha256 = SHA256Digest.hash(bytes).hexString
        _ = FileManager.default.createFile(atPath: destination.filePath(sha256: sha256), contents: Data(bytes))
        return BackupManifest.FileRecord(name: name, bytes: UInt64(bytes.count), sha256: sha256)
    }

    func backup(
        _ id: String, _ nodes: [String: [BackupManifest.FileRecord]], hlc: UInt64 = 5 << 16, base: String? = nil
    ) throws {
        let map = ClusterMap(
            clusterID: "test", epoch: 3, replicationFactor: 3,
            nodes: nodes.keys.sorted().map { ClusterMap.Node(id: $0, address: "127.0.0.1:7411", tokens: [1]) })
        let records = nodes.keys.sorted().enumerated().map { index, node in
            BackupManifest.NodeRecord(node: node, hlc: hlc + UInt64(index), epoch: 3, files: nodes[node]!)
        }
        try destination.write(
            BackupManifest(
                id: id, startedAt: "2026-12-03T12:00:00.000Z", finishedAt: "2026-12-03T12:00:01.000Z",
                clusterID: "test", clusterMap: .init(map), nodes: records, base: base))
    }
}

@Suite("Backup destination: manifests, verify, prune")
struct BackupDestinationTests {
    @Test func manifestRoundTripsAndRecordsTheCut() throws {
        let scratch = try Scratch()
        let table = try scratch.store("table one", as: "000010.sst")
        try scratch.backup("20261203T120000Z-000001", ["n1": [table], "n2": [table]], hlc: 7 << 16)
        let manifest = try scratch.destination.manifest("20261203T120000Z-000001")
        #expect(manifest.cut == 7 << 16, "the cut is the earliest node's checkpoint time")
        #expect(manifest.nodes.map(\.node) == ["n1", "n2"])
        #expect(manifest.clusterMap.epoch == 3)
        #expect(manifest.files == [table, table])
        #expect(try scratch.destination.backupIDs() == ["20261203T120000Z-000001"])
    }

    /// Two backups started in the same second: their ids' random suffixes say nothing of their
    /// order, their cuts do (a prune once kept the wrong one).
    @Test func backupsAreOrderedByTheirCutNotTheirID() throws {
        let scratch = try Scratch()
        let table = try scratch.store("table", as: "000010.sst")
        try scratch.backup("20261203T120000Z-ffffff", ["n1": [table]], hlc: 5 << 16)
        try scratch.backup("20261203T120000Z-000001", ["n1": [table]], hlc: 6 << 16)
        #expect(try scratch.destination.backupIDs() == ["20261203T120000Z-ffffff", "20261203T120000Z-000001"])
        #expect(try scratch.destination.prunePlan(keep: 1).backups == ["20261203T120000Z-ffffff"])
    }

    @Test func aBackupWithoutItsManifestIsNotListed() throws {
        let scratch = try Scratch()
        try FileManager.default.createDirectory(
            atPath: "\(scratch.destination.backupsDirectory)/20261203T120000Z-000002", withIntermediateDirectories: true
        )
        #expect(try scratch.destination.backupIDs().isEmpty)
    }

    @Test func verifyPassesOnIntactFilesAndNamesACorruptOne() throws {
        let scratch = try Scratch()
        let good = try scratch.store("good table", as: "000011.sst")
        let bad = try scratch.store("table to damage", as: "000012.sst")
        let gone = try scratch.store("table to lose", as: "000013.sst")
        try scratch.backup("20261203T120000Z-000003", ["n1": [good, bad], "n2": [gone]])
        #expect(try scratch.destination.verify().ok)

        // Same size, one byte changed; and one file removed.
        try Data("table to dAmage".utf8).write(
            to: URL(fileURLWithPath: scratch.destination.filePath(sha256: bad.sha256)))
        try FileManager.default.removeItem(atPath: scratch.destination.filePath(sha256: gone.sha256))
        let report = try scratch.destination.verify(backup: "20261203T120000Z-000003")
        #expect(!report.ok)
        #expect(report.problems.count == 2, "\(report.problems)")
        let damaged = try #require(report.problems.first { $0.file == "000012.sst" })
        #expect(damaged.node == "n1" && damaged.reason.contains("checksum mismatch"), "\(damaged)")
        let missing = try #require(report.problems.first { $0.file == "000013.sst" })
        #expect(missing.node == "n2" && missing.reason == "missing", "\(missing)")
        #expect(!report.problems.contains { $0.file == "000011.sst" })
    }

    @Test func verifyOfAnUnknownBackupThrows() throws {
        let scratch = try Scratch()
        #expect(throws: BackupError.self) { try scratch.destination.verify(backup: "20261203T120000Z-000009") }
        #expect(throws: BackupError.self) { try scratch.destination.verify(backup: "../etc") }
    }

    @Test func pruneKeepsTheNewestAndRemovesOnlyFilesNoKeptBackupLists() throws {
        let scratch = try Scratch()
        let shared = try scratch.store("shared table", as: "000020.sst")
        let oldOnly = try scratch.store("old table", as: "000021.sst")
        let newOnly = try scratch.store("new table", as: "000022.sst")
        try scratch.backup("20261203T120000Z-000010", ["n1": [shared, oldOnly]])
        try scratch.backup("20261203T130000Z-000011", ["n1": [shared, newOnly]])
        // A copy an interrupted backup left: kept for the next backup to resume.
        let partial = scratch.destination.partialPath(sha256: String(repeating: "a", count: 64))
        _ = FileManager.default.createFile(atPath: partial, contents: Data("half".utf8))

        let plan = try scratch.destination.prunePlan(keep: 1)
        #expect(plan.backups == ["20261203T120000Z-000010"])
        #expect(plan.files == [oldOnly.sha256])
        try scratch.destination.prune(keep: 1)

        #expect(try scratch.destination.backupIDs() == ["20261203T130000Z-000011"])
        let files = FileManager.default
        #expect(!files.fileExists(atPath: scratch.destination.filePath(sha256: oldOnly.sha256)))
        #expect(files.fileExists(atPath: scratch.destination.filePath(sha256: shared.sha256)))
        #expect(files.fileExists(atPath: scratch.destination.filePath(sha256: newOnly.sha256)))
        #expect(files.fileExists(atPath: partial))
        #expect(try scratch.destination.verify().ok)
        #expect(throws: BackupError.self) { try scratch.destination.prune(keep: 0) }
    }

    /// The backups a kept incremental one builds on stay, down to its full base, and their files too.
    @Test func pruneKeepsTheBasesOfKeptIncrementalBackups() throws {
        let scratch = try Scratch()
        let first = try scratch.store("first table", as: "000040.sst")
        let full = try scratch.store("full table", as: "000041.sst")
        let changes = try scratch.store("changes", as: "000042.sst")
        let more = try scratch.store("more changes", as: "000043.sst")
        try scratch.backup("20261203T100000Z-000001", ["n1": [first]], hlc: 1 << 16)
        try scratch.backup("20261203T110000Z-000002", ["n1": [full]], hlc: 2 << 16)
        try scratch.backup("20261203T120000Z-000003", ["n1": [changes]], hlc: 3 << 16, base: "20261203T110000Z-000002")
        try scratch.backup("20261203T130000Z-000004", ["n1": [more]], hlc: 4 << 16, base: "20261203T120000Z-000003")
        let plan = try scratch.destination.prunePlan(keep: 1)
        #expect(plan.backups == ["20261203T100000Z-000001"])
        #expect(plan.files == [first.sha256])
        try scratch.destination.prune(keep: 1)
        #expect(try RestorePlan(manifests: scratch.destination.manifests(), backup: nil, asOf: nil).chain.count == 3)
        #expect(try scratch.destination.verify().ok)
    }

    /// A `.partial` no backup resumed within the partial age goes with the next prune; a recent one
    /// stays for the backup that resumes it.
    @Test func pruneRemovesPartialCopiesNoBackupResumed() throws {
        let scratch = try Scratch()
        let table = try scratch.store("table", as: "000030.sst")
        try scratch.backup("20261203T120000Z-000020", ["n1": [table]])
        let old = scratch.destination.partialPath(sha256: String(repeating: "b", count: 64))
        let recent = scratch.destination.partialPath(sha256: String(repeating: "c", count: 64))
        _ = FileManager.default.createFile(atPath: old, contents: Data("abandoned".utf8))
        _ = FileManager.default.createFile(atPath: recent, contents: Data("resumable".utf8))
        try FileManager.default.setAttributes(
            [.modificationDate: Date(timeIntervalSinceNow: -2 * 24 * 3600)], ofItemAtPath: old)

        let plan = try scratch.destination.prunePlan(keep: 1)
        #expect(plan.partials == [String(repeating: "b", count: 64)])
        #expect(plan.bytes == UInt64("abandoned".utf8.count))
        try scratch.destination.prune(keep: 1)
        #expect(!FileManager.default.fileExists(atPath: old))
        #expect(FileManager.default.fileExists(atPath: recent))
        // With an age of 0, every partial copy goes.
        try scratch.destination.prune(keep: 1, partialAge: .zero)
        #expect(!FileManager.default.fileExists(atPath: recent))
        #expect(try scratch.destination.backupIDs() == ["20261203T120000Z-000020"])
    }

    @Test func aSecondLockIsRefusedWhileTheFirstIsHeld() throws {
        let scratch = try Scratch()
        let lock = try scratch.destination.lock()
        // flock locks belong to the open file: a second open in this process conflicts too.
        #expect(throws: BackupError.self) { _ = try scratch.destination.lock() }
        withExtendedLifetime(lock) {}
    }

    @Test func backupIDsSortByTimeAndAreValid() {
        let early = BackupTime.newBackupID(now: Date(timeIntervalSince1970: 1_700_000_000))
        let late = BackupTime.newBackupID(now: Date(timeIntervalSince1970: 1_700_000_001))
        #expect(early.hasPrefix("20231114T221320Z-"), "\(early)")
        #expect(early < late)
        #expect(BackupDestination.isValidBackupID(early))
        #expect(!BackupDestination.isValidBackupID("../x"))
        #expect(BackupTime.iso8601(hlc: 1_700_000_000_000 << 16 | 3) == "2023-11-14T22:13:20.000Z")
    }
}
