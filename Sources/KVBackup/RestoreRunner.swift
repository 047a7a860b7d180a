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

    public init(destination: BackupDestination, target: any RestoreTarget) {
        self.destination = destination
        self.target = target
    }

    public func run() async throws -> RestoreReport {
        let clock = ContinuousClock()
        let started = clock.now
        guard FileManager.default.fileExists(atPath: destination.backupsDirectory) else {
            throw BackupError("\(destination.root) holds no backups (no \(destination.backupsDirectory))")
        }
        let plan = try RestorePlan(manifests: destination.manifests(), backup: backupID, asOf: asOf)
        var report = RestoreReport(backup: plan.backup.id, asOf: plan.asOf)
        report.basesRead = plan.chain.dropFirst().map(\.id)
        let ring = try await targetRing(&report)
        progress(
            "restoring backup \(plan.backup.id)\(plan.chain.count > 1 ? " (incremental, with the \(plan.chain.count - 1) backups it builds on)" : "") as of \(AsOf(hlc: plan.asOf)) into \(report.targetNodes.count) nodes (N=\(report.targetReplicationFactor))"
        )

        let work =
            workDirectory
            ?? "\(destination.root)/.restore-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        guard !FileManager.default.fileExists(atPath: work) else {
            throw BackupError("the work folder \(work) exists already")
        }
        defer { try? FileManager.default.removeItem(atPath: work) }

        var selection = RestoreSelection(asOf: plan.asOf)
        var sender = Sender(
            target: target, ring: ring, inFlightMax: max(1, batchesInFlightMax), progress: progress,
            progressInterval: progressInterval)
        try await withThrowingTaskGroup(of: Sender.Acknowledged.self) { group in
            do {
                // The chosen backup and those it builds on: every key, all its copies at once.
                var readers: [RocksDBCheckpointReader] = []
                defer { readers.forEach { $0.close() } }
                for backup in plan.chain { readers += try open(backup, in: work) }
                var hinted: [[UInt8]: [StoredRecord]] = [:]
                for reader in readers {
                    for hint in try reader.hints() {
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
            if selection.needsEarlierBackups {
                let keys = selection.pending.keys.sorted { $0.lexicographicallyPrecedes($1) }
                for backup in plan.earlier {
                    progress("reading backup \(backup.id) for \(keys.count) keys written after T")
                    report.earlierBackupsRead.append(backup.id)
                    let readers = try open(backup, in: work)
                    defer { readers.forEach { $0.close() } }
                    var copies: [[UInt8]: [StoredRecord]] = [:]
                    for reader in readers {
                        for hint in try reader.hints() where selection.isPending(hint.key) {
                            copies[hint.key, default: []].append(hint.record)
                            report.hintsRead += 1
                        }
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
            try await sender.finish(report: &report, group: &group)
        }
        report.keysRestored = selection.valuesRestored
        report.tombstonesRestored = selection.tombstonesRestored
        report.recordsNewerSkipped = selection.recordsNewerSkipped
        report.duration = clock.now - started
        return report
    }

    /// The target's latest map as a ring, after checking that it is not changing and that every node
    /// owning ranges answers (a restore needs every replica's acknowledgement).
    private func targetRing(_ report: inout RestoreReport) async throws -> Ring {
        let map = try await target.clusterMap()
        guard map.changeEpoch == nil, map.pendingReplicationFactor == nil,
            !map.nodes.contains(where: { $0.state == .joining || $0.state == .leaving })
        else {
            throw BackupError(
                "the target cluster is changing its membership or N (epoch \(map.epoch)); restore once it is done")
        }
        let owners = map.nodes.filter(\.state.ownsRanges)
        if let down = owners.first(where: { $0.state == .down }) {
            throw BackupError("target node \(down.id) (\(down.address)) is marked down in the cluster map")
        }
        let ring: Ring
        do {
            ring = try map.ring()
        } catch {
            throw BackupError("the target cluster's map makes no ring: \(error)")
        }
        let target = self.target
        let answers = await withTaskGroup(of: (String, String, Result<UInt64, any Error>).self) { group in
            for node in owners {
                group.addTask {
                    do {
                        return (node.id, node.address, .success(try await target.ping(node: node.id)))
                    } catch {
                        return (node.id, node.address, .failure(error))
                    }
                }
            }
            var answers: [(String, String, Result<UInt64, any Error>)] = []
            for await answer in group { answers.append(answer) }
            return answers.sorted { $0.0 < $1.0 }
        }
        for (node, address, answer) in answers {
            switch answer {
            case .failure(let error):
                throw BackupError("target node \(node) (\(address)) does not answer: \(error)")
            case .success(let keys) where keys > 0:
                progress(
                    "warning: target node \(node) already holds about \(keys) keys; a restore is meant for an empty cluster (what it holds newer wins)"
                )
            case .success:
                break
            }
        }
        report.targetNodes = owners.map(\.id)
        report.targetReplicationFactor = map.replicationFactor
        return ring
    }

    /// Rebuilds and opens every node checkpoint of `backup`.
    private func open(_ backup: BackupManifest, in work: String) throws -> [RocksDBCheckpointReader] {
        var readers: [RocksDBCheckpointReader] = []
        do {
            for (index, node) in backup.nodes.enumerated() {
                let folder = "\(work)/\(backup.id)/\(index)"
                try destination.assembleCheckpoint(node, of: backup.id, into: folder)
                do {
                    readers.append(try RocksDBCheckpointReader(directory: folder))
                } catch {
                    throw BackupError("backup \(backup.id), node \(node.node): cannot open its checkpoint: \(error)")
                }
            }
            progress("backup \(backup.id): \(backup.nodes.count) node checkpoints rebuilt and checked")
            return readers
        } catch {
            readers.forEach { $0.close() }
            throw error
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
        var batches: RestoreBatches
        let inFlightMax: Int
        let progress: @Sendable (String) -> Void
        let progressInterval: Duration
        private var inFlight = 0
        private var lastProgress = ContinuousClock.now
        private let started = ContinuousClock.now

        init(
            target: any RestoreTarget, ring: Ring, inFlightMax: Int, progress: @escaping @Sendable (String) -> Void,
            progressInterval: Duration
        ) {
            self.target = target
            self.batches = RestoreBatches(ring: ring)
            self.inFlightMax = inFlightMax
            self.progress = progress
            self.progressInterval = progressInterval
        }

        mutating func send(
            key: [UInt8], record: StoredRecord, report: inout RestoreReport, selection: RestoreSelection,
            group: inout ThrowingTaskGroup<Acknowledged, any Error>
        ) async throws {
            for batch in batches.add(key: key, record: record) {
                try await dispatch(batch, report: &report, group: &group)
            }
            let now = ContinuousClock.now
            if now - lastProgress >= progressInterval {
                lastProgress = now
                progress(
                    "\(report.recordsRead) records and \(report.hintsRead) hints read, \(selection.valuesRestored) keys and \(selection.tombstonesRestored) tombstones kept, \(selection.recordsNewerSkipped) newer than T skipped; \(report.batchesSent) batches (\(report.bytesSent) bytes) acknowledged, \((now - started).components.seconds) s"
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
            let bytes = UInt64(batch.bytes)
            group.addTask {
                do {
                    return Acknowledged(applied: try await target.apply(records, node: node), bytes: bytes)
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
