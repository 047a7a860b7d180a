import Foundation
import KVBackup
import KVCore
import Testing

/// `--as-of` parsing, the choice of backup and T, and which records a restore keeps.
@Suite struct RestoreSelectionTests {
    // MARK: --as-of

    struct Vector: Sendable, CustomStringConvertible {
        var text: String
        var hlc: UInt64
        var description: String { text }
    }

    /// 2026-12-03T12:00:00Z is 1796299200 s after the epoch.
    static let noonMillis: UInt64 = 1_796_299_200_000

    static let vectors: [Vector] = [
        Vector(text: "2026-12-03T12:00:00Z", hlc: noonMillis << 16 | 0xFFFF),
        Vector(text: "2026-12-03T12:00:00.123Z", hlc: (noonMillis + 123) << 16 | 0xFFFF),
        Vector(text: "2026-12-03T12:00:00.5Z", hlc: (noonMillis + 500) << 16 | 0xFFFF),
        // Digits past the millisecond are cut, never rounded into the next millisecond.
        Vector(text: "2026-12-03T12:00:00.999999Z", hlc: (noonMillis + 999) << 16 | 0xFFFF),
        Vector(text: "2026-12-03T13:00:00.010+01:00", hlc: (noonMillis + 10) << 16 | 0xFFFF),
        Vector(text: "hlc:12345", hlc: 12345),
        Vector(text: "HLC:117726000480010241", hlc: 117_726_000_480_010_241),
    ]

    @Test(arguments: vectors) func parsesAsOf(_ vector: Vector) throws {
        #expect(try AsOf(parsing: vector.text).hlc == vector.hlc)
    }

    @Test(arguments: [
        "", "yesterday", "2026-12-03", "2026-12-03 12:00:00Z", "2026-12-03T12:00:00.Z", "hlc:", "hlc:-1", "hlc:0",
        "hlc:12x", "12345", "2026-13-03T12:00:00Z",
    ])
    func refusesGarbage(_ text: String) {
        #expect(throws: BackupError.self) { try AsOf(parsing: text) }
    }

    // MARK: Backup and T

    static func manifest(_ id: String, cut: UInt64, cluster: String = "test", base: String? = nil) -> BackupManifest {
        let map = ClusterMap(
            clusterID: cluster, epoch: 1, replicationFactor: 3,
            nodes: [ClusterMap.Node(id: "n1", address: "127.0.0.1:7411", tokens: [1])])
        return BackupManifest(
            id: id, startedAt: "", finishedAt: "", clusterID: cluster, clusterMap: .init(map),
            nodes: [
                BackupManifest.NodeRecord(node: "n1", hlc: cut + 7, epoch: 1, files: []),
                BackupManifest.NodeRecord(node: "n2", hlc: cut, epoch: 1, files: []),
            ], base: base)
    }

    /// An incremental backup is read with its bases down to a full one; the earlier backups are the
    /// others; a missing base is named.
    @Test func anIncrementalBackupIsReadWithItsBases() throws {
        let backups = [
            Self.manifest("20261203T090000Z-000001", cut: 1000),
            Self.manifest("20261203T100000Z-000002", cut: 2000),
            Self.manifest("20261203T110000Z-000003", cut: 3000, base: "20261203T100000Z-000002"),
            Self.manifest("20261203T120000Z-000004", cut: 4000, base: "20261203T110000Z-000003"),
        ]
        let plan = try RestorePlan(manifests: backups, backup: nil, asOf: nil)
        #expect(
            plan.chain.map(\.id) == ["20261203T120000Z-000004", "20261203T110000Z-000003", "20261203T100000Z-000002"])
        #expect(plan.earlier.map(\.id) == ["20261203T090000Z-000001"])
        #expect {
            try RestorePlan(manifests: backups.filter { $0.id != "20261203T110000Z-000003" }, backup: nil, asOf: nil)
        } throws: { error in
            "\(error)".contains("builds on backup 20261203T110000Z-000003, which the destination no longer holds")
        }
    }

    /// Two backups started in the same second: their ids' random suffixes do not sort by time, so
    /// the latest is the one with the later cut (a restore once took the full backup here and lost
    /// the incremental one's writes).
    @Test func theLatestOfTwoBackupsInOneSecondIsTheOneWithTheLaterCut() throws {
        let backups = [
            Self.manifest("20261203T090000Z-ffffff", cut: 1000),
            Self.manifest("20261203T090000Z-000001", cut: 1001, base: "20261203T090000Z-ffffff"),
        ]
        let plan = try RestorePlan(manifests: backups, backup: nil, asOf: nil)
        #expect(plan.backup.id == "20261203T090000Z-000001")
        #expect(plan.chain.map(\.id) == ["20261203T090000Z-000001", "20261203T090000Z-ffffff"])
        #expect(plan.earlier.isEmpty)
        let full = try RestorePlan(manifests: backups, backup: "20261203T090000Z-ffffff", asOf: nil)
        #expect(full.earlier.isEmpty)
    }

    static let backups = [
        manifest("20261203T100000Z-000002", cut: 2000),
        manifest("20261203T090000Z-000001", cut: 1000),
        manifest("20261203T093000Z-0000aa", cut: 1500, cluster: "other"),
        manifest("20261203T110000Z-000003", cut: 3000),
    ]

    @Test func theDefaultIsTheLatestBackupAtItsCut() throws {
        let plan = try RestorePlan(manifests: Self.backups, backup: nil, asOf: nil)
        #expect(plan.backup.id == "20261203T110000Z-000003")
        #expect(plan.asOf == 3000)
        // Earlier backups of the same cluster, newest first.
        #expect(plan.earlier.map(\.id) == ["20261203T100000Z-000002", "20261203T090000Z-000001"])
    }

    @Test func aChosenBackupAndAnEarlierTime() throws {
        let plan = try RestorePlan(
            manifests: Self.backups, backup: "20261203T100000Z-000002", asOf: AsOf(hlc: 1200))
        #expect(plan.backup.id == "20261203T100000Z-000002" && plan.asOf == 1200)
        #expect(plan.earlier.map(\.id) == ["20261203T090000Z-000001"])
        // T at the cut itself is fine.
        #expect(try RestorePlan(manifests: Self.backups, backup: nil, asOf: AsOf(hlc: 3000)).asOf == 3000)
    }

    @Test func aTimeLaterThanTheCutIsRefused() {
        #expect {
            try RestorePlan(manifests: Self.backups, backup: nil, asOf: AsOf(hlc: 3001))
        } throws: { error in
            "\(error)".contains("later than backup 20261203T110000Z-000003's cut")
        }
        #expect(throws: BackupError.self) {
            try RestorePlan(manifests: Self.backups, backup: "20261203T090000Z-000001", asOf: AsOf(hlc: 1001))
        }
        #expect(throws: BackupError.self) { try RestorePlan(manifests: Self.backups, backup: "nope", asOf: nil) }
        #expect(throws: BackupError.self) { try RestorePlan(manifests: [], backup: nil, asOf: nil) }
    }

    // MARK: Newest at or below T across backups

    static func value(_ hlc: UInt64, _ text: String, writer: UInt64 = 1) -> StoredRecord {
        StoredRecord(version: Version(hlc: hlc, writer: writer), tombstone: false, value: Array(text.utf8))
    }

    static func deleted(_ hlc: UInt64) -> StoredRecord {
        StoredRecord(version: Version(hlc: hlc, writer: 1), tombstone: true, value: [])
    }

    static func key(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func keepsTheNewestVersionAtOrBelowTAcrossNodesAndBackups() {
        let chosen: [[UInt8]: [StoredRecord]] = [
            // All copies at or below T: the newest wins (a replica that missed the last write).
            Self.key("a"): [Self.value(10, "a1"), Self.value(20, "a2"), Self.value(10, "a1")],
            // Deleted before T: a tombstone.
            Self.key("b"): [Self.deleted(30), Self.deleted(30)],
            // Overwritten after T on every replica: the earlier backup's value.
            Self.key("c"): [Self.value(60, "c3"), Self.value(60, "c3")],
            // Overwritten after T on one replica only, which had a version newer than the other's
            // before: the earlier backup holds that newer one.
            Self.key("d"): [Self.value(15, "d1"), Self.value(70, "d3")],
            // Written first after T: nothing.
            Self.key("e"): [Self.value(80, "e1")],
            // Deleted after T: the value before.
            Self.key("f"): [Self.deleted(90), Self.value(12, "f1")],
            // A hint newer than the data copies but at or below T.
            Self.key("g"): [Self.value(5, "g1"), Self.value(45, "g-hinted")],
        ]
        let earlier: [[[UInt8]: [StoredRecord]]] = [
            [
                Self.key("c"): [Self.value(40, "c2"), Self.value(55, "c-after-T")],
                Self.key("d"): [Self.value(25, "d2")],
                // A key the chosen backup does not hold (its tombstone was purged): not brought back.
                Self.key("z"): [Self.value(3, "zombie")],
                // Older than what the chosen backup gave: not written again.
                Self.key("a"): [Self.value(10, "a1")],
            ],
            [Self.key("c"): [Self.value(35, "c1")], Self.key("d"): [Self.value(22, "older")]],
        ]
        let result = RestoreSelection.result(asOf: 50, chosen: chosen, earlier: earlier)
        #expect(
            result == [
                Self.key("a"): Self.value(20, "a2"),
                Self.key("b"): Self.deleted(30),
                Self.key("c"): Self.value(40, "c2"),
                Self.key("d"): Self.value(25, "d2"),
                Self.key("f"): Self.value(12, "f1"),
                Self.key("g"): Self.value(45, "g-hinted"),
            ])
    }

    @Test func countsWhatItKeptAndSkipped() {
        var selection = RestoreSelection(asOf: 50)
        #expect(selection.chosen(key: Self.key("a"), records: [Self.value(10, "a"), Self.value(10, "a")]) != nil)
        #expect(selection.chosen(key: Self.key("b"), records: [Self.deleted(20)]) == Self.deleted(20))
        #expect(selection.chosen(key: Self.key("c"), records: [Self.value(60, "c"), Self.value(5, "c0")]) != nil)
        #expect(selection.chosen(key: Self.key("e"), records: [Self.value(80, "e")]) == nil)
        #expect(selection.isPending(Self.key("c")) && selection.isPending(Self.key("e")))
        #expect(!selection.isPending(Self.key("a")))
        #expect(selection.earlier(key: Self.key("e"), records: [Self.deleted(49)]) == Self.deleted(49))
        // The same version again is not written twice.
        #expect(selection.earlier(key: Self.key("e"), records: [Self.deleted(49)]) == nil)
        #expect(selection.earlier(key: Self.key("a"), records: [Self.value(30, "a-newer")]) == nil)
        #expect(selection.valuesRestored == 2)  // a, c
        #expect(selection.tombstonesRestored == 2)  // b, e
        #expect(selection.recordsNewerSkipped == 2)
    }
}
