import Foundation
import KVBackup
import KVCore
import KVStorage
import KVTLS
import Synchronization
import Testing

/// `RestoreRunner` over real RocksDB checkpoints in a destination and a fake target cluster: what
/// each replica receives, hints included, earlier backups, a checksum mismatch and a node down.
@Suite struct RestoreRunnerTests {
    /// A target cluster in memory: each node applies records by the apply rule (newer versions only).
    final class FakeTarget: RestoreTarget, Sendable {
        let maps: Mutex<ClusterMap>
        var map: ClusterMap { maps.withLock { $0 } }
        let down: Set<String>
        /// Keyspace 0's records by node.
        let stored = Mutex<[String: [[UInt8]: StoredRecord]]>([:])
        /// Every keyspace's records by (keyspace id, node).
        let storedByKeyspace = Mutex<[UInt32: [String: [[UInt8]: StoredRecord]]]>([:])
        let batchBytes = Mutex<[Int]>([])
        let changes = Mutex<[ClusterChange]>([])

        init(nodes: Int, replicationFactor: Int, down: Set<String> = []) {
            maps = Mutex(
                ClusterMap(
                    clusterID: "target", epoch: 2, replicationFactor: replicationFactor,
                    nodes: (1...nodes).map { index in
                        ClusterMap.Node(
                            id: "t\(index)", address: "127.0.0.1:\(7000 + index)",
                            tokens: (0..<8).map { UInt64(index * 8 + $0) &* 0x9E37_79B9_7F4A_7C15 })
                    }))
            self.down = down
        }

        func clusterMap() async throws -> ClusterMap { map }

        func ping(node: String) async throws -> (epoch: UInt64, keys: UInt64) {
            if down.contains(node) { throw BackupError("connection refused") }
            return (map.epoch, 0)
        }

        func apply(_ records: [(key: [UInt8], record: StoredRecord)], keyspace: UInt32, node: String) async throws
            -> Int
        {
            if down.contains(node) { throw BackupError("connection refused") }
            // As a node does: every key must be one it replicates in that keyspace's part.
            let map = self.map
            for (key, _) in records {
                guard let part = map.keyspace(id: keyspace), map.holds(part, key: key),
                    try map.ring(of: part).preferenceList(forKey: key).contains(node)
                else { throw BackupError("\(node): notReplica in keyspace \(keyspace)") }
            }
            batchBytes.withLock { $0.append(records.reduce(0) { $0 + $1.key.count + $1.record.value.count }) }
            storedByKeyspace.withLock { stored in
                for (key, record) in records
                where stored[keyspace]?[node]?[key].map({ $0.version < record.version }) ?? true {
                    stored[keyspace, default: [:]][node, default: [:]][key] = record
                }
            }
            guard keyspace == Keyspace.defaultID else { return records.count }
            return stored.withLock { stored in
                var applied = 0
                for (key, record) in records where stored[node]?[key].map({ $0.version < record.version }) ?? true {
                    stored[node, default: [:]][key] = record
                    applied += 1
                }
                return applied
            }
        }

        func changeCluster(_ change: ClusterChange) async throws -> ClusterMap {
            changes.withLock { $0.append(change) }
            return try maps.withLock { map in
                map = try map.applying(change)
                return map
            }
        }

        /// What every replica of `key` in keyspace `name` holds, when they all agree and no other
        /// node holds it in that keyspace.
        func restored(_ key: String, in name: String) throws -> StoredRecord? {
            let map = self.map
            guard let part = map.keyspace(named: name, forKey: Array(key.utf8)) else { return nil }
            let replicas = try map.ring(of: part).preferenceList(forKey: Array(key.utf8))
            return storedByKeyspace.withLock { stored in
                let held = (stored[part.id] ?? [:]).filter { $0.value[Array(key.utf8)] != nil }
                guard Set(held.keys) == Set(replicas) || held.isEmpty else { return nil }
                let records = Set(held.values.map { $0[Array(key.utf8)]! })
                return records.count == 1 ? records.first : nil
            }
        }

        /// What every replica of `key` holds, when they all agree and no other node holds it.
        func restored(_ key: String) throws -> StoredRecord? {
            let replicas = try map.ring().preferenceList(forKey: Array(key.utf8))
            return stored.withLock { stored in
                let held = stored.filter { $0.value[Array(key.utf8)] != nil }
                guard Set(held.keys) == Set(replicas) || held.isEmpty else { return nil }
                let records = Set(held.values.map { $0[Array(key.utf8)]! })
                return records.count == 1 ? records.first : nil
            }
        }
    }

    final class Scratch {
        let root = NSTemporaryDirectory() + "kvrestore-\(UUID().uuidString)"
        var destination: BackupDestination { BackupDestination(root: root + "/dest") }
        var stores: [String: RocksDBStore] = [:]

        init() throws {
            for node in ["n1", "n2"] { stores[node] = try RocksDBStore(directory: "\(root)/\(node)") }
            try destination.prepare()
        }

        deinit {
            stores.values.forEach { $0.close() }
            try? FileManager.default.removeItem(atPath: root)
        }

        func write(_ node: String, _ key: String, _ record: StoredRecord, keyspace: UInt32 = 0) throws {
            _ = try stores[node]!.keyspace(keyspace).apply(key: Array(key.utf8), record: record)
        }

        func hint(_ node: String, for target: String, _ key: String, _ record: StoredRecord) throws {
            _ = try stores[node]!.storeHint(
                StoredHint(target: target, key: Array(key.utf8), record: record, storedAtMillis: 1), queueMax: 100)
        }

        /// A backup of both stores, as `kvctl backup` leaves it, with the given checkpoint times; with
        /// `base`, an incremental one of the records newer than `since`.
        func backUp(
            _ id: String, hlc: UInt64, since: UInt64? = nil, base: String? = nil, keyspaces: [Keyspace] = []
        ) throws {
            var nodes: [BackupManifest.NodeRecord] = []
            for (index, node) in stores.keys.sorted().enumerated() {
                let hash = { (path: String) in try SHA256Digest.hash(file: path).digest }
                let checkpoint =
                    try since.map { try stores[node]!.createChangesCheckpoint(id: id, since: $0, hash: hash) }
                    ?? stores[node]!.createCheckpoint(id: id, hash: hash)
                var files: [BackupManifest.FileRecord] = []
                for file in checkpoint.files {
                    let sha256 = file.sha256.hexString
                    let target = destination.filePath(sha256: sha256)
                    if !FileManager.default.fileExists(atPath: target) {
                        try FileManager.default.copyItem(atPath: "\(checkpoint.path)/\(file.name)", toPath: target)
                    }
                    files.append(BackupManifest.FileRecord(name: file.name, bytes: file.bytes, sha256: sha256))
                }
                nodes.append(
                    BackupManifest.NodeRecord(
                        node: node, hlc: hlc + UInt64(index), epoch: 1, files: files, since: since))
            }
            var map = ClusterMap(
                clusterID: "source", epoch: 1, replicationFactor: 2,
                nodes: ["n1", "n2"].map { ClusterMap.Node(id: $0, address: "127.0.0.1:7411", tokens: [1]) })
            map.keyspaces = keyspaces
            try destination.write(
                BackupManifest(
                    id: id, startedAt: "", finishedAt: "", clusterID: "source", clusterMap: .init(map), nodes: nodes,
                    base: base))
        }
    }

    static func value(_ hlc: UInt64, _ text: String) -> StoredRecord {
        StoredRecord(version: Version(hlc: hlc, writer: 1), tombstone: false, value: Array(text.utf8))
    }

    static func deleted(_ hlc: UInt64) -> StoredRecord {
        StoredRecord(version: Version(hlc: hlc, writer: 1), tombstone: true, value: [])
    }

    static let firstID = "20261203T100000Z-000001"
    static let secondID = "20261203T110000Z-000002"

    /// Two backups: the first with `late` at its first value; the second with writes after T = 50
    /// (an overwrite, a new key), a delete before it, and hints, one for a key no replica holds.
    static func twoBackups() throws -> Scratch {
        let scratch = try Scratch()
        for node in ["n1", "n2"] {
            try scratch.write(node, "x", value(10, "x1"))
            try scratch.write(node, "late", value(5, "late-first"))
        }
        for index in 0..<300 {
            try scratch.write(index % 2 == 0 ? "n1" : "n2", "bulk-\(index)", value(UInt64(index % 40 + 1), "v\(index)"))
        }
        try scratch.backUp(firstID, hlc: 41)
        try scratch.write("n1", "y", deleted(20))
        try scratch.write("n2", "y", value(15, "y-before-delete"))
        try scratch.write("n1", "late", value(100, "late-second"))
        try scratch.write("n2", "late", value(100, "late-second"))
        try scratch.write("n1", "new", value(90, "after-T"))
        // Hints: a newer version of `x` (still at or below T), and a key only a hint holds.
        try scratch.hint("n2", for: "n9", "x", value(40, "x2-hinted"))
        try scratch.hint("n1", for: "n9", "only-hinted", value(30, "hinted"))
        try scratch.hint("n1", for: "n9", "hinted-later", value(95, "after-T"))
        try scratch.backUp(secondID, hlc: 120)
        return scratch
    }

    @Test func restoresTheNewestAtOrBelowTToEveryReplicaHintsAndEarlierBackupsIncluded() async throws {
        let scratch = try Self.twoBackups()
        let target = FakeTarget(nodes: 4, replicationFactor: 3)
        var runner = RestoreRunner(destination: scratch.destination, target: target)
        runner.asOf = AsOf(hlc: 50)
        let report = try await runner.run()
        #expect(report.backup == Self.secondID && report.earlierBackupsRead == [Self.firstID])
        #expect(report.asOf == 50 && report.targetNodes == ["t1", "t2", "t3", "t4"])

        #expect(try target.restored("x") == Self.value(40, "x2-hinted"))
        #expect(try target.restored("only-hinted") == Self.value(30, "hinted"))
        #expect(try target.restored("y") == Self.deleted(20))
        #expect(try target.restored("late") == Self.value(5, "late-first"))
        #expect(
            try target.restored("new") == nil
                && target.stored.withLock { $0.values.allSatisfy { $0[Array("new".utf8)] == nil } })
        #expect(target.stored.withLock { $0.values.allSatisfy { $0[Array("hinted-later".utf8)] == nil } })
        for index in 0..<300 {
            #expect(try target.restored("bulk-\(index)") == Self.value(UInt64(index % 40 + 1), "v\(index)"))
        }
        #expect(report.keysRestored == 300 + 3)  // bulk, x, only-hinted, late
        #expect(report.tombstonesRestored == 1)
        #expect(report.recordsNewerSkipped == 4)  // late twice, new, hinted-later
        #expect(report.hintsRead == 3)
        #expect(target.batchBytes.withLock { $0.allSatisfy { $0 <= Limits.merkleRecordBytesPerFrameMax } })
        // The work folder is gone.
        let left = try FileManager.default.contentsOfDirectory(atPath: scratch.destination.root)
        #expect(!left.contains { $0.hasPrefix(".restore-") }, "\(left)")
    }

    /// An incremental backup restores exactly what a full backup taken at the same moment does, at
    /// its cut and at an earlier T: its changes (an overwrite, a delete, new keys, a hint) read with the
    /// full backup it builds on.
    @Test func anIncrementalBackupRestoresWhatAFullOneTakenThenWould() async throws {
        let scratch = try Scratch()
        for index in 0..<200 {
            try scratch.write(
                index % 2 == 0 ? "n1" : "n2", "bulk-\(index)", Self.value(UInt64(index % 40 + 1), "v\(index)"))
        }
        for node in ["n1", "n2"] {
            try scratch.write(node, "late", Self.value(5, "late-first"))
            try scratch.write(node, "doomed", Self.value(7, "doomed"))
        }
        try scratch.backUp("20261203T100000Z-000001", hlc: 41)
        try scratch.write("n1", "doomed", Self.deleted(60))
        try scratch.write("n1", "late", Self.value(100, "late-second"))
        try scratch.write("n2", "late", Self.value(100, "late-second"))
        try scratch.write("n1", "new", Self.value(90, "new"))
        try scratch.write("n2", "bulk-7", Self.value(110, "rewritten"))
        try scratch.hint("n2", for: "n9", "only-hinted", Self.value(70, "hinted"))
        try scratch.backUp("20261203T110000Z-000002", hlc: 120, since: 41, base: "20261203T100000Z-000001")
        try scratch.backUp("20261203T120000Z-000003", hlc: 120)
        let incremental = try scratch.destination.manifest("20261203T110000Z-000002")
        let full = try scratch.destination.manifest("20261203T120000Z-000003")
        #expect(incremental.format == 2 && full.format == 1)
        #expect(incremental.nodes.reduce(0) { $0 + $1.bytes } < full.nodes.reduce(0) { $0 + $1.bytes } / 2)

        let keys = (0..<200).map { "bulk-\($0)" } + ["late", "doomed", "new", "only-hinted"]
        for asOf in [nil, AsOf(hlc: 95)] {
            var states: [[String: StoredRecord?]] = []
            for id in [incremental.id, full.id] {
                let target = FakeTarget(nodes: 3, replicationFactor: 2)
                var runner = RestoreRunner(destination: scratch.destination, target: target)
                runner.backupID = id
                runner.asOf = asOf
                let report = try await runner.run()
                #expect(report.basesRead == (id == incremental.id ? ["20261203T100000Z-000001"] : []))
                states.append(Dictionary(uniqueKeysWithValues: try keys.map { ($0, try target.restored($0)) }))
            }
            #expect(states[0] == states[1], "as of \(asOf.map { "\($0)" } ?? "the cut")")
            #expect(states[0]["doomed"] == .some(Self.deleted(60)))
            #expect(
                states[0]["late"] == .some(asOf == nil ? Self.value(100, "late-second") : Self.value(5, "late-first")))
            #expect(states[0]["bulk-8"] == .some(Self.value(9, "v8")))
        }
    }

    @Test func theDefaultIsTheLatestBackupAtItsCut() async throws {
        let scratch = try Self.twoBackups()
        let target = FakeTarget(nodes: 2, replicationFactor: 1)
        let report = try await RestoreRunner(destination: scratch.destination, target: target).run()
        #expect(report.asOf == 120 && report.earlierBackupsRead.isEmpty)
        #expect(try target.restored("late") == Self.value(100, "late-second"))
        #expect(try target.restored("hinted-later") == Self.value(95, "after-T"))
        #expect(try target.restored("y") == Self.deleted(20))
    }

    @Test func largeRecordsGoInBatchesWithinTheFrameBound() async throws {
        let scratch = try Scratch()
        for index in 0..<12 {
            let record = StoredRecord(
                version: Version(hlc: UInt64(index + 1), writer: 1), tombstone: false,
                value: [UInt8](repeating: UInt8(index), count: 300_000))
            try scratch.write("n1", "large-\(index)", record)
            try scratch.write("n2", "large-\(index)", record)
        }
        try scratch.backUp(Self.firstID, hlc: 100)
        let target = FakeTarget(nodes: 3, replicationFactor: 3)
        var runner = RestoreRunner(destination: scratch.destination, target: target)
        runner.batchesInFlightMax = 2
        let report = try await runner.run()
        #expect(report.keysRestored == 12)
        let batches = target.batchBytes.withLock { $0 }
        #expect(batches.allSatisfy { $0 <= Limits.merkleRecordBytesPerFrameMax }, "\(batches)")
        // Three records fit in a batch: each of the 3 replicas gets 12 records in 4 batches.
        #expect(batches.count == 12 && report.batchesSent == 12, "\(batches)")
        #expect(report.bytesSent == 3 * 12 * UInt64(300_000 + "large-0".utf8.count + 1) - 3 * 10)
        for index in 0..<12 { #expect(try target.restored("large-\(index)")?.value.count == 300_000) }
    }

    @Test func aFileThatDiffersFromItsManifestFailsTheRestoreNamingIt() async throws {
        let scratch = try Self.twoBackups()
        let manifest = try scratch.destination.manifest(Self.secondID)
        let file = try #require(manifest.nodes[0].files.first { $0.isTableFile })
        let path = scratch.destination.filePath(sha256: file.sha256)
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count / 2] ^= 0xFF
        try FileManager.default.removeItem(atPath: path)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let target = FakeTarget(nodes: 3, replicationFactor: 3)
        await #expect {
            try await RestoreRunner(destination: scratch.destination, target: target).run()
        } throws: { error in
            "\(error)".contains(file.name) && "\(error)".contains("does not match its manifest")
        }
        #expect(target.stored.withLock { $0.isEmpty })
    }

    @Test func aTargetNodeDownFailsTheRestoreNamingIt() async throws {
        let scratch = try Self.twoBackups()
        let target = FakeTarget(nodes: 4, replicationFactor: 2, down: ["t3"])
        await #expect {
            try await RestoreRunner(destination: scratch.destination, target: target).run()
        } throws: { error in
            "\(error)".contains("t3")
        }
    }

    // MARK: - Keyspaces

    /// The source's `accounts` keyspace, id 5 (the target gives it another id when it creates it).
    static let accounts = Keyspace(id: 5, name: "accounts", placement: .simple(replicas: 2), writeLevel: .all)

    /// A full backup, then an incremental one, of the default keyspace and `accounts`, the same key
    /// bytes in both with different values; `accounts` overwritten and deleted after T = 50.
    static func keyspaceBackups() throws -> Scratch {
        let scratch = try Scratch()
        for index in 0..<100 {
            let node = index % 2 == 0 ? "n1" : "n2"
            try scratch.write(node, "k\(index)", value(UInt64(index % 30 + 1), "default-\(index)"))
            try scratch.write(node, "k\(index)", value(UInt64(index % 30 + 1), "accounts-\(index)"), keyspace: 5)
        }
        try scratch.backUp(firstID, hlc: 40, keyspaces: [accounts])
        for node in ["n1", "n2"] {
            try scratch.write(node, "k1", value(60, "accounts-1-later"), keyspace: 5)
            try scratch.write(node, "k2", deleted(61), keyspace: 5)
            try scratch.write(node, "only-accounts", value(45, "accounts-new"), keyspace: 5)
        }
        try scratch.hint("n1", for: "n9", "k1", value(55, "default-1-hinted"))
        _ = try scratch.stores["n2"]!.storeHint(
            StoredHint(
                target: "n9", key: Array("hinted-accounts".utf8), record: value(47, "from-a-hint"), storedAtMillis: 1,
                keyspace: 5), queueMax: 100)
        try scratch.backUp(secondID, hlc: 120, since: 35, base: firstID, keyspaces: [accounts])
        return scratch
    }

    @Test func everyKeyspaceIsRestoredIntoTheTargetsKeyspaceOfThatNameCreatedFirst() async throws {
        let scratch = try Self.keyspaceBackups()
        let manifest = try scratch.destination.manifest(Self.secondID)
        #expect(manifest.format == 3 && manifest.clusterMap.keyspaces?.map(\.id) == [5])
        #expect(manifest.clusterMap.keyspaces?.first?.settings?.writeLevel == .all)

        for asOf in [nil, AsOf(hlc: 50)] {
            let target = FakeTarget(nodes: 4, replicationFactor: 3)
            var runner = RestoreRunner(destination: scratch.destination, target: target)
            runner.asOf = asOf
            let report = try await runner.run()
            #expect(report.keyspacesCreated == ["accounts"] && report.basesRead == [Self.firstID])
            #expect(report.keyspaces.map(\.name) == ["default", "accounts"])
            // Created from the backup's definition (under the target's own next id).
            let created = try #require(target.map.keyspace(named: "accounts"))
            #expect(created.placement == .simple(replicas: 2) && created.writeLevel == .all && created.id != 5)
            for index in 3..<100 {
                #expect(
                    try target.restored("k\(index)", in: "default")
                        == Self.value(UInt64(index % 30 + 1), "default-\(index)"))
                #expect(
                    try target.restored("k\(index)", in: "accounts")
                        == Self.value(UInt64(index % 30 + 1), "accounts-\(index)"))
            }
            #expect(
                try target.restored("k1", in: "default")
                    == (asOf == nil ? Self.value(55, "default-1-hinted") : Self.value(2, "default-1")))
            #expect(try target.restored("hinted-accounts", in: "accounts") == Self.value(47, "from-a-hint"))
            #expect(try target.restored("hinted-accounts", in: "default") == nil)
            #expect(try target.restored("only-accounts", in: "accounts") == Self.value(45, "accounts-new"))
            #expect(try target.restored("only-accounts", in: "default") == nil)
            if asOf == nil {
                #expect(try target.restored("k1", in: "accounts") == Self.value(60, "accounts-1-later"))
                #expect(try target.restored("k2", in: "accounts") == Self.deleted(61))
            } else {
                // Per keyspace: the values at T, from the full backup the incremental one builds on.
                #expect(try target.restored("k1", in: "accounts") == Self.value(2, "accounts-1"))
                #expect(try target.restored("k2", in: "accounts") == Self.value(3, "accounts-2"))
            }
            #expect(try target.restored("k2", in: "default") == Self.value(3, "default-2"))
            let counts = Dictionary(uniqueKeysWithValues: report.keyspaces.map { ($0.name, $0) })
            #expect(counts["default"]?.keysRestored == 100)
            #expect(counts["accounts"]?.keysRestored == (asOf == nil ? 101 : 102), "\(report.keyspaces)")
            #expect(report.keysRestored == counts["default"]!.keysRestored + counts["accounts"]!.keysRestored)
        }
    }

    @Test func aTargetKeyspaceOfThatNameIsUsedAsItIs() async throws {
        let scratch = try Self.keyspaceBackups()
        let target = FakeTarget(nodes: 3, replicationFactor: 3)
        // The target's own accounts, split in two parts on the main ring: keys go to the part holding them.
        _ = try await target.changeCluster(
            .createKeyspace(
                "accounts",
                KeyspaceSettings(placement: .simple(replicas: 3), splits: [.init(lowKey: Array("k5".utf8), ring: "")])))
        target.changes.withLock { $0.removeAll() }
        let report = try await RestoreRunner(destination: scratch.destination, target: target).run()
        #expect(report.keyspacesCreated.isEmpty && target.changes.withLock { $0.isEmpty })
        let parts = target.map.parts(named: "accounts")
        #expect(parts.count == 2)
        for index in 3..<100 {
            #expect(
                try target.restored("k\(index)", in: "accounts")
                    == Self.value(UInt64(index % 30 + 1), "accounts-\(index)"))
        }
        let byPart = target.storedByKeyspace.withLock { stored in parts.map { stored[$0.id]?.isEmpty == false } }
        #expect(byPart == [true, true])
    }

    @Test func aMissingKeyspaceIsRefusedNamingItWhenCreationIsOff() async throws {
        let scratch = try Self.keyspaceBackups()
        let target = FakeTarget(nodes: 3, replicationFactor: 3)
        var runner = RestoreRunner(destination: scratch.destination, target: target)
        runner.createMissingKeyspaces = false
        await #expect {
            try await runner.run()
        } throws: { error in
            "\(error)".contains("no keyspace 'accounts'")
                && "\(error)".contains("kvctl keyspace create accounts --placement simple:2 --read quorum --write all")
        }
        #expect(target.stored.withLock { $0.isEmpty } && target.changes.withLock { $0.isEmpty })
    }

    @Test func aSmallerTargetGetsTheKeyspaceWithItsOwnNodeCount() async throws {
        let scratch = try Self.keyspaceBackups()
        let target = FakeTarget(nodes: 1, replicationFactor: 1)
        let report = try await RestoreRunner(destination: scratch.destination, target: target).run()
        #expect(report.keyspacesCreated == ["accounts"])
        #expect(target.map.keyspace(named: "accounts")?.placement == .simple(replicas: 1))
        #expect(try target.restored("k50", in: "accounts") == Self.value(21, "accounts-50"))
    }

    /// A backup whose manifest names no keyspace (made before keyspaces were recorded) restores the
    /// default keyspace alone, as before, though its checkpoints hold another keyspace's family.
    @Test func aBackupWithoutKeyspacesRestoresTheDefaultKeyspaceAlone() async throws {
        let scratch = try Scratch()
        for index in 0..<10 {
            try scratch.write("n1", "k\(index)", Self.value(5, "default"))
            try scratch.write("n1", "k\(index)", Self.value(6, "other"), keyspace: 5)
        }
        try scratch.backUp(Self.firstID, hlc: 40)
        let manifest = try scratch.destination.manifest(Self.firstID)
        #expect(manifest.format == 1 && manifest.clusterMap.keyspaces == nil)
        let target = FakeTarget(nodes: 3, replicationFactor: 2)
        let report = try await RestoreRunner(destination: scratch.destination, target: target).run()
        #expect(report.keyspaces.map(\.name) == ["default"] && report.keyspacesCreated.isEmpty)
        #expect(report.keysRestored == 10)
        #expect(target.storedByKeyspace.withLock { Array($0.keys) } == [0])
        #expect(try target.restored("k3") == Self.value(5, "default"))
    }

    @Test func verifyChecksAndListsTheKeyspaces() throws {
        let scratch = try Self.keyspaceBackups()
        let report = try scratch.destination.verify()
        #expect(report.ok, "\(report.problems)")
        #expect(
            report.keyspaces[Self.secondID] == [
                RestoreKeyspace(name: "default", backupIDs: [0]), RestoreKeyspace(name: "accounts", backupIDs: [5]),
            ])
        var damaged = try scratch.destination.manifest(Self.secondID)
        damaged.clusterMap.keyspaces?[0].placement = "lots"
        let first = damaged.clusterMap.keyspaces![0]
        damaged.clusterMap.keyspaces?.append(first)
        #expect(BackupDestination.keyspaceProblems(of: damaged).count == 3)
    }
}
