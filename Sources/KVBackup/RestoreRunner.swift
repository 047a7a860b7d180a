import Foundation
import KVCore
import KVStorage

/// What one restore did.
public struct RestoreReport: Sendable {
    /// The backup restored, the backups it builds on (incremental; read with it), and the earlier ones
    /// read for keys it holds only newer than T.
    public var backup: String
    public var basesRead: [String] = []
    public var earlierBackupsRead: [String] = []
    /// T.
    public var asOf: UInt64
    /// The target's nodes written to, and its N.
    public var targetNodes: [String] = []
    public var targetReplicationFactor = 0
    /// Keys restored with a value, and as tombstones (deleted at or before T).
    public var keysRestored = 0
    public var tombstonesRestored = 0
    /// Copies (data or hint records, any node, any backup read) newer than T, left out.
    public var recordsNewerSkipped = 0
    /// Records read from the checkpoints: `data` records and hints.
    public var recordsRead = 0
    public var hintsRead = 0
    /// Bytes of keys and values sent, every replica counted; the `MerkleApply` batches carrying them.
    public var bytesSent: UInt64 = 0
    public var batchesSent = 0
    /// Record writes the replicas applied (the others they held at that version or newer).
    public var recordsApplied = 0
    public var duration: Duration = .zero
    /// Each keyspace restored (`default` first), with its own counts.
    public var keyspaces: [KeyspaceCounts] = []
    /// The keyspaces the target lacked and the restore created from the backup's definitions.
    public var keyspacesCreated: [String] = []

    /// What a restore wrote of one keyspace.
    public struct KeyspaceCounts: Sendable, Hashable {
        public var name: String
        public var keysRestored = 0
        public var tombstonesRestored = 0
        public var recordsNewerSkipped = 0

        public init(name: String) {
            self.name = name
        }
    }

    public init(backup: String, asOf: UInt64) {
        self.backup = backup
        self.asOf = asOf
    }
}

/// `kvctl restore`: rebuilds a cluster from a backup, keeping exactly the writes with a version at
/// or below T (`RestorePlan`, `RestoreSelection`).
///
/// Each node checkpoint of the chosen backup is rebuilt in a work folder
/// (`BackupDestination.assembleCheckpoint`, checksums checked) and opened read-only; their `data`
/// records are read together in order, so every key comes once with all its copies, and its hints
/// (writes a node held for another replica, which may exist nowhere else) join the copies of their
/// key. The record kept is written with its own version to every replica of the key in the
/// target's latest map (`RestoreBatches`, `MerkleApply` through the apply rule), a bounded number
/// of batches in flight; every replica must acknowledge. Earlier backups are then read for the keys
/// the chosen one holds only newer than T.
///
/// Keyspaces: each keyspace the backup's map names (`BackupManifest.MapRecord.keyspaces`; only
/// `default` in a backup made before keyspaces) is restored in turn, as above, with a selection of
/// its own (the same key bytes in two keyspaces are two keys): its parts' `data.<id>` families and
/// its hints are read, and each record goes to the replicas of the key's part of the keyspace of
/// that name in the target's map, with that part's id in `MerkleApply`. A keyspace the target lacks
/// is created first from the backup's definition through the cluster-change path, as Cassandra
/// restores the schema before the data (`createMissingKeyspaces`; off: the restore refuses, naming
/// it and the command that creates it), before any record is written.
public struct RestoreRunner: Sendable {
    public var destination: BackupDestination
    public var target: any RestoreTarget
    /// The backup to restore; the latest when nil.
    public var backupID: String?
    /// T; the backup's cut when nil.
    public var asOf: AsOf?
    /// `MerkleApply` batches in flight at once, all nodes together.
    public var batchesInFlightMax = 8
    /// Where the checkpoints are rebuilt (a folder that must not exist; removed afterwards); a new
    /// folder in the destination by default, so that table files can be hard links.
    public var workDirectory: String?
    /// Progress lines (to stderr in kvctl), about one a second.
    public var progress: @Sendable (String) -> Void = { _ in }
    public var progressInterval: Duration = .seconds(1)
    /// Whether a keyspace the target lacks is created from the backup's definition (`kvctl restore
    /// --no-create-keyspaces` turns it off: the restore then refuses, naming it).
    public var createMissingKeyspaces = true
    /// How long the target's nodes may take to learn the map that created keyspaces.
    public var mapPropagationWaitMax: Duration = .seconds(30)

    public init(destination: BackupDestination, target: any RestoreTarget) {
        self.destination = destination
        self.target = target
    }

    public func run() async throws -> RestoreReport {
        let clock = ContinuousClock()
        let started = clock.now
        try destination.requireBackups()
        let plan = try RestorePlan(manifests: destination.manifests(), backup: backupID, asOf: asOf)
        var report = RestoreReport(backup: plan.backup.id, asOf: plan.asOf)
        report.basesRead = plan.chain.dropFirst().map(\.id)
        let keyspaces = RestoreKeyspace.all(in: plan.backup)
        let routes = try await targetRoutes(plan.backup, keyspaces: keyspaces, report: &report)
        progress(
            "restoring backup \(plan.backup.id)\(plan.chain.count > 1 ? " (incremental, with the \(plan.chain.count - 1) backups it builds on)" : "") as of \(AsOf(hlc: plan.asOf)) into \(report.targetNodes.count) nodes (N=\(report.targetReplicationFactor)), keyspaces \(keyspaces.map(\.name).joined(separator: ", "))"
        )

        let work =
            workDirectory
            ?? "\(destination.root)/.restore-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        guard !FileManager.default.fileExists(atPath: work) else {
            throw BackupError("the work folder \(work) exists already")
        }
        defer { try? FileManager.default.removeItem(atPath: work) }

        // Every checkpoint of the chain rebuilt (and checked) before any record is written.
        var folders = Folders(destination: destination, work: work, progress: progress)
        for backup in plan.chain { _ = try folders.of(backup) }
        warnAboutUnnamedKeyspaces(plan.chain, keyspaces: keyspaces, folders: &folders)

        var sender = Sender(
            target: target, routes: routes, inFlightMax: max(1, batchesInFlightMax), progress: progress,
            progressInterval: progressInterval)
        try await withThrowingTaskGroup(of: Sender.Acknowledged.self) { group in
            for keyspace in keyspaces {
                var selection = RestoreSelection(asOf: plan.asOf)
                sender.keyspace = keyspace.name
                try await restore(
                    keyspace, plan: plan, folders: &folders, selection: &selection, sender: &sender,
                    report: &report, group: &group)
                var counts = RestoreReport.KeyspaceCounts(name: keyspace.name)
                counts.keysRestored = selection.valuesRestored
                counts.tombstonesRestored = selection.tombstonesRestored
                counts.recordsNewerSkipped = selection.recordsNewerSkipped
                report.keyspaces.append(counts)
                report.keysRestored += counts.keysRestored
                report.tombstonesRestored += counts.tombstonesRestored
                report.recordsNewerSkipped += counts.recordsNewerSkipped
                sender.restoredBefore = report.keysRestored
            }
            try await sender.finish(report: &report, group: &group)
        }
        report.duration = clock.now - started
        return report
    }

    /// Restores one keyspace: the chain's records and hints of its parts, every key once with all its
    /// copies, then earlier backups for its keys the chain holds only newer than T.
    private func restore(
        _ keyspace: RestoreKeyspace, plan: RestorePlan, folders: inout Folders, selection: inout RestoreSelection,
        sender: inout Sender, report: inout RestoreReport,
        group: inout ThrowingTaskGroup<Sender.Acknowledged, any Error>
    ) async throws {
        let ids = Set(keyspace.backupIDs)
        do {
            var readers: [RocksDBCheckpointReader] = []
            defer { readers.forEach { $0.close() } }
            var hinted: [[UInt8]: [StoredRecord]] = [:]
            for backup in plan.chain {
                readers += try folders.readers(of: backup, keyspaces: ids)
                for hint in try folders.hints(of: backup) where ids.contains(hint.keyspace) {
                    hinted[hint.key, default: []].append(hint.record)
                    report.hintsRead += 1
                }
            }
            var merged = MergedCheckpoints(readers)
            while let (key, copies) = try merged.next() {
                report.recordsRead += copies.count
                let all = copies + (hinted.removeValue(forKey: key) ?? [])
                if let record = selection.chosen(key: key, records: all) {
                    try await sender.send(
                        key: key, record: record, report: &report, selection: selection, group: &group)
                }
            }
            // Keys only hints hold (the write reached no replica that was backed up).
            for key in hinted.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                if let record = selection.chosen(key: key, records: hinted[key]!) {
                    try await sender.send(
                        key: key, record: record, report: &report, selection: selection, group: &group)
                }
            }
        }
        // Earlier backups, newest first, for the keys the chosen one holds only newer than T.
        guard selection.needsEarlierBackups else { return }
        let keys = selection.pending.keys.sorted { $0.lexicographicallyPrecedes($1) }
        for backup in plan.earlier {
            progress("reading backup \(backup.id) for \(keys.count) keys of keyspace \(keyspace.name) written after T")
            if !report.earlierBackupsRead.contains(backup.id) { report.earlierBackupsRead.append(backup.id) }
            let readers = try folders.readers(of: backup, keyspaces: ids)
            defer { readers.forEach { $0.close() } }
            var copies: [[UInt8]: [StoredRecord]] = [:]
            for hint in try folders.hints(of: backup) where ids.contains(hint.keyspace) && selection.isPending(hint.key)
            {
                copies[hint.key, default: []].append(hint.record)
                report.hintsRead += 1
            }
            for key in keys {
                var found = copies[key] ?? []
                for reader in readers {
                    if let record = try reader.record(forKey: key) {
                        found.append(record)
                        report.recordsRead += 1
                    }
                }
                if let record = selection.earlier(key: key, records: found) {
                    try await sender.send(
                        key: key, record: record, report: &report, selection: selection, group: &group)
                }
            }
        }
    }

    /// Says which keyspace families the chain's checkpoints hold that the backup's map does not name
    /// (a keyspace created while the backup ran, or a backup made before keyspaces): not restored.
    private func warnAboutUnnamedKeyspaces(
        _ chain: [BackupManifest], keyspaces: [RestoreKeyspace], folders: inout Folders
    ) {
        let named = Set(keyspaces.flatMap(\.backupIDs))
        var unnamed = Set<UInt32>()
        for backup in chain {
            guard let held = try? folders.keyspaceIDs(of: backup) else { continue }
            unnamed.formUnion(held.subtracting(named))
        }
        if !unnamed.isEmpty {
            progress(
                "warning: the checkpoints hold keyspaces \(unnamed.sorted().map(String.init).joined(separator: ", ")) (by id) that backup \(chain[0].id)'s cluster map does not name (created during the backup, or a backup made before kvctl recorded keyspaces): not restored"
            )
        }
    }

    /// The target's latest map, after checking that it is not changing and that every node owning
    /// ranges answers (a restore needs every replica's acknowledgement), with every keyspace of the
    /// backup: those it lacks created first (or refused), then the routes to their replicas.
    private func targetRoutes(
        _ backup: BackupManifest, keyspaces: [RestoreKeyspace], report: inout RestoreReport
    ) async throws -> RestoreRoutes {
        var map = try await target.clusterMap()
        guard !map.isChanging else {
            throw BackupError(
                "the target cluster is changing its membership, N or a keyspace's placement (epoch \(map.epoch)); restore once it is done"
            )
        }
        let owners = map.nodes.filter(\.state.ownsRanges)
        if let down = owners.first(where: { $0.state == .down }) {
            throw BackupError("target node \(down.id) (\(down.address)) is marked down in the cluster map")
        }
        let answers = await ping(owners)
        for (node, address, answer) in answers {
            switch answer {
            case .failure(let error):
                throw BackupError("target node \(node) (\(address)) does not answer: \(error)")
            case .success(let answer) where answer.keys > 0:
                progress(
                    "warning: target node \(node) already holds about \(answer.keys) keys; a restore is meant for an empty cluster (what it holds newer wins)"
                )
            case .success:
                break
            }
        }
        // Schema first: every keyspace the target lacks, created before any record is written.
        let definitions = backup.clusterMap.keyspacesByName
        for keyspace in keyspaces where map.keyspace(named: keyspace.name) == nil {
            let parts = definitions[keyspace.name] ?? []
            let command = RestoreKeyspace.createCommand(of: keyspace.name, parts: parts)
            guard createMissingKeyspaces else {
                throw BackupError(
                    "the target cluster has no keyspace '\(keyspace.name)', which backup \(backup.id) holds; create it first (\(command)) and run the restore again, or let the restore create it (without --no-create-keyspaces)"
                )
            }
            let (change, note) = try RestoreKeyspace.creation(of: keyspace.name, parts: parts, in: map)
            do {
                map = try await target.changeCluster(change)
            } catch {
                throw BackupError(
                    "cannot create keyspace '\(keyspace.name)' in the target cluster as backup \(backup.id) defines it: \(error); create it with settings that fit the target (as: \(command)) and run the restore again"
                )
            }
            if let note { progress("warning: \(note)") }
            progress("created keyspace '\(keyspace.name)' in the target cluster (epoch \(map.epoch))")
            report.keyspacesCreated.append(keyspace.name)
        }
        if !report.keyspacesCreated.isEmpty { try await awaitEpoch(map.epoch, on: owners) }
        let routes: RestoreRoutes
        do {
            routes = try RestoreRoutes(map: map, names: keyspaces.map(\.name))
        } catch {
            throw BackupError("\(error)")
        }
        report.targetNodes = owners.map(\.id)
        report.targetReplicationFactor = map.replicationFactor
        return routes
    }

    private func ping(_ nodes: [ClusterMap.Node]) async -> [(
        String, String, Result<(epoch: UInt64, keys: UInt64), any Error>
    )] {
        let target = self.target
        return await withTaskGroup(of: (String, String, Result<(epoch: UInt64, keys: UInt64), any Error>).self) {
            group in
            for node in nodes {
                group.addTask {
                    do {
                        return (node.id, node.address, .success(try await target.ping(node: node.id)))
                    } catch {
                        return (node.id, node.address, .failure(error))
                    }
                }
            }
            var answers: [(String, String, Result<(epoch: UInt64, keys: UInt64), any Error>)] = []
            for await answer in group { answers.append(answer) }
            return answers.sorted { $0.0 < $1.0 }
        }
    }

    /// Waits until every one of `nodes` holds a map of `epoch` or later (the one that created the
    /// keyspaces: a node still on an older one would refuse their records), at most
    /// `mapPropagationWaitMax`.
    private func awaitEpoch(_ epoch: UInt64, on nodes: [ClusterMap.Node]) async throws {
        let deadline = ContinuousClock.now + mapPropagationWaitMax
        while true {
            let behind = await ping(nodes).filter { answer in
                guard case .success(let ping) = answer.2 else { return true }
                return ping.epoch < epoch
            }
            if behind.isEmpty { return }
            guard ContinuousClock.now < deadline else {
                throw BackupError(
                    "target nodes \(behind.map(\.0).joined(separator: ", ")) did not learn the cluster map of epoch \(epoch) (the keyspaces created) within \(mapPropagationWaitMax); run the restore again"
                )
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// The chain's and earlier backups' node checkpoints, each rebuilt once in the work folder, and
    /// what they hold.
    private struct Folders {
        let destination: BackupDestination
        let work: String
        let progress: @Sendable (String) -> Void
        private var folders: [String: [(node: String, folder: String)]] = [:]
        private var held: [String: [UInt32]] = [:]

        init(destination: BackupDestination, work: String, progress: @escaping @Sendable (String) -> Void) {
            self.destination = destination
            self.work = work
            self.progress = progress
        }

        /// Rebuilds every node checkpoint of `backup` (once), checksums checked.
        mutating func of(_ backup: BackupManifest) throws -> [(node: String, folder: String)] {
            if let known = folders[backup.id] { return known }
            var built: [(node: String, folder: String)] = []
            for (index, node) in backup.nodes.enumerated() {
                let folder = "\(work)/\(backup.id)/\(index)"
                try destination.assembleCheckpoint(node, of: backup.id, into: folder)
                built.append((node.node, folder))
            }
            progress("backup \(backup.id): \(backup.nodes.count) node checkpoints rebuilt and checked")
            folders[backup.id] = built
            return built
        }

        /// The keyspaces (by id) whose `data` a checkpoint folder holds.
        mutating func held(_ folder: String, backup: String, node: String) throws -> [UInt32] {
            if let known = held[folder] { return known }
            do {
                let ids = try RocksDBCheckpointReader.keyspaces(in: folder)
                held[folder] = ids
                return ids
            } catch {
                throw BackupError("backup \(backup), node \(node): cannot open its checkpoint: \(error)")
            }
        }

        /// Every keyspace id some checkpoint of `backup` holds.
        mutating func keyspaceIDs(of backup: BackupManifest) throws -> Set<UInt32> {
            var ids = Set<UInt32>()
            for (node, folder) in try of(backup) { ids.formUnion(try held(folder, backup: backup.id, node: node)) }
            return ids
        }

        /// A reader of each part of `keyspaces` each checkpoint of `backup` holds.
        mutating func readers(of backup: BackupManifest, keyspaces: Set<UInt32>) throws -> [RocksDBCheckpointReader] {
            var readers: [RocksDBCheckpointReader] = []
            do {
                for (node, folder) in try of(backup) {
                    for id in try held(folder, backup: backup.id, node: node) where keyspaces.contains(id) {
                        do {
                            readers.append(try RocksDBCheckpointReader(directory: folder, keyspace: id))
                        } catch {
                            throw BackupError("backup \(backup.id), node \(node): cannot open its checkpoint: \(error)")
                        }
                    }
                }
                return readers
            } catch {
                readers.forEach { $0.close() }
                throw error
            }
        }

        /// Every hint of every keyspace the checkpoints of `backup` hold.
        mutating func hints(of backup: BackupManifest) throws -> [StoredHint] {
            var hints: [StoredHint] = []
            for (node, folder) in try of(backup) {
                do {
                    let reader = try RocksDBCheckpointReader(directory: folder)
                    defer { reader.close() }
                    hints += try reader.allHints()
                } catch {
                    throw BackupError("backup \(backup.id), node \(node): cannot read its hints: \(error)")
                }
            }
            return hints
        }
    }

    /// Batches by replica and sends them as child tasks of the restore's group, a bounded number at
    /// once; the first failure ends the restore, naming the node (the group cancels the others).
    private struct Sender {
        struct Acknowledged: Sendable {
            var applied: Int
            var bytes: UInt64
        }

        let target: any RestoreTarget
        let routes: RestoreRoutes
        var batches = RestoreBatches()
        /// The keyspace whose records `send` is given now (by name).
        var keyspace = Keyspace.defaultName
        /// Keys restored in the keyspaces done, for progress.
        var restoredBefore = 0
        let inFlightMax: Int
        let progress: @Sendable (String) -> Void
        let progressInterval: Duration
        private var inFlight = 0
        private var lastProgress = ContinuousClock.now
        private let started = ContinuousClock.now

        init(
            target: any RestoreTarget, routes: RestoreRoutes, inFlightMax: Int,
            progress: @escaping @Sendable (String) -> Void, progressInterval: Duration
        ) {
            self.target = target
            self.routes = routes
            self.inFlightMax = inFlightMax
            self.progress = progress
            self.progressInterval = progressInterval
        }

        mutating func send(
            key: [UInt8], record: StoredRecord, report: inout RestoreReport, selection: RestoreSelection,
            group: inout ThrowingTaskGroup<Acknowledged, any Error>
        ) async throws {
            guard let route = routes.route(keyspace, key: key) else {
                // `RestoreRoutes` holds every part of every keyspace restored: never here.
                throw BackupError("the target cluster has no part of keyspace '\(keyspace)' for a key")
            }
            for batch in batches.add(key: key, record: record, keyspace: route.keyspace, replicas: route.replicas) {
                try await dispatch(batch, report: &report, group: &group)
            }
            let now = ContinuousClock.now
            if now - lastProgress >= progressInterval {
                lastProgress = now
                progress(
                    "keyspace \(keyspace): \(report.recordsRead) records and \(report.hintsRead) hints read, \(restoredBefore + selection.valuesRestored) keys and \(selection.tombstonesRestored) tombstones kept, \(selection.recordsNewerSkipped) newer than T skipped; \(report.batchesSent) batches (\(report.bytesSent) bytes) acknowledged, \((now - started).components.seconds) s"
                )
            }
        }

        mutating func finish(
            report: inout RestoreReport, group: inout ThrowingTaskGroup<Acknowledged, any Error>
        ) async throws {
            for batch in batches.drain() { try await dispatch(batch, report: &report, group: &group) }
            while inFlight > 0 { try await settleOne(report: &report, group: &group) }
        }

        private mutating func dispatch(
            _ batch: RestoreBatches.Batch, report: inout RestoreReport,
            group: inout ThrowingTaskGroup<Acknowledged, any Error>
        ) async throws {
            while inFlight >= inFlightMax { try await settleOne(report: &report, group: &group) }
            let target = self.target
            let records = batch.records
            let node = batch.node
            let keyspace = batch.keyspace
            let bytes = UInt64(batch.bytes)
            group.addTask {
                do {
                    return Acknowledged(
                        applied: try await target.apply(records, keyspace: keyspace, node: node), bytes: bytes)
                } catch {
                    throw BackupError("target node \(node) did not acknowledge \(records.count) records: \(error)")
                }
            }
            inFlight += 1
        }

        private mutating func settleOne(
            report: inout RestoreReport, group: inout ThrowingTaskGroup<Acknowledged, any Error>
        ) async throws {
            guard let acknowledged = try await group.next() else { return }
            inFlight -= 1
            report.recordsApplied += acknowledged.applied
            report.batchesSent += 1
            report.bytesSent &+= acknowledged.bytes
        }
    }
}
