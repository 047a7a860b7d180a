import ArgumentParser
import Foundation
import KVBackup
import KVClient
import KVCore

/// `kvctl restore --from DIR [--backup ID] [--as-of TIME]`: rebuild the cluster kvctl points at from
/// a backup.
struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Rebuild a (new, empty) cluster from a backup, as of its cut or an earlier time (admin certificate).",
        discussion: """
            Writes every key's newest version at or below T, found in the backup's node checkpoints (data and \
            hints) or, for keys overwritten after T, in an earlier backup in DIR, with its own version, to every \
            replica of the key on the target cluster (the one --cluster/--endpoints name: any number of nodes, any \
            N). T is the backup's cut by default; --as-of takes an RFC 3339 time (2026-12-03T12:00:00Z, with or \
            without a fraction) or hlc:NUMBER, and must not be later than the cut. Deletes at or below T are \
            restored as tombstones. Every keyspace the backup holds is restored into the keyspace of that name on \
            the target; one the target lacks is created first from the backup's definition (refused instead with \
            --no-create-keyspaces). Exit code 1 when a target node does not answer or acknowledge (it is named). \
            Progress goes to stderr; --json prints the summary as one document. docs/operations.md ("Restore").
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "The backup destination folder (what kvctl backup --dest wrote).")
    var from: String

    @Option(help: "The backup to restore (kvctl backup list); the latest by default.")
    var backup: String?

    @Option(
        name: .customLong("as-of"),
        help:
            "Keep the writes up to this time: RFC 3339 (2026-12-03T12:00:00.123Z) or hlc:NUMBER; the backup's cut by default."
    )
    var asOf: String?

    @Option(help: "Batches of records in flight at once (1...64).")
    var concurrency = 8

    @Option(
        name: .customLong("work-dir"),
        help:
            "Where the checkpoints are rebuilt (must not exist; removed afterwards); a new folder in --from by default."
    )
    var workDirectory: String?

    @Flag(
        name: .customLong("create-keyspaces"), inversion: .prefixedNo,
        help:
            "Create a keyspace the target lacks from the backup's definition before writing any record (--no-create-keyspaces: refuse, naming it)."
    )
    var createKeyspaces = true

    func validate() throws {
        guard concurrency >= 1, concurrency <= 64 else { throw ValidationError("--concurrency must be 1...64") }
        if let asOf {
            do {
                _ = try AsOf(parsing: asOf)
            } catch {
                throw ValidationError("\(error)")
            }
        }
        if let backup, !BackupDestination.isValidBackupID(backup) {
            throw ValidationError("--backup '\(backup)' is not a backup id")
        }
    }

    func run() async throws {
        try await reportingFailures(json: global.json) {
            let report = try await global.withClient { client in
                var runner = RestoreRunner(
                    destination: BackupDestination(root: from), target: ClusterRestoreTarget(client: client))
                runner.backupID = backup
                runner.asOf = try asOf.map { try AsOf(parsing: $0) }
                runner.batchesInFlightMax = concurrency
                runner.workDirectory = workDirectory
                runner.createMissingKeyspaces = createKeyspaces
                runner.progress = { printError($0) }
                return try await runner.run()
            }
            let document = RestoreDocument(report)
            if global.json {
                try printJSON(document)
            } else {
                print(
                    "restored backup \(document.backup) as of hlc:\(document.asOf) (\(document.asOfTime)) into \(document.targetNodes.count) nodes (N=\(document.replicationFactor))"
                )
                if !document.basesRead.isEmpty {
                    print(
                        "incremental: read with the backups it builds on: \(document.basesRead.joined(separator: ", "))"
                    )
                }
                if !document.earlierBackupsRead.isEmpty {
                    print("earlier backups read: \(document.earlierBackupsRead.joined(separator: ", "))")
                }
                print(
                    "keys: \(document.keysRestored) restored, \(document.tombstonesRestored) tombstones, \(document.recordsNewerSkipped) records newer than T skipped"
                )
                for keyspace in document.keyspaces {
                    print(
                        "keyspace \(keyspace.name)\(document.keyspacesCreated.contains(keyspace.name) ? " (created)" : ""): \(keyspace.keysRestored) keys, \(keyspace.tombstonesRestored) tombstones"
                    )
                }
                print(
                    "sent: \(document.batchesSent) batches, \(document.bytesSent) bytes, in \(String(format: "%.1f", document.seconds)) s"
                )
            }
        }
    }
}

/// `kvctl restore --json`.
struct RestoreDocument: Encodable {
    var ok = true
    var backup: String
    var basesRead: [String]
    var earlierBackupsRead: [String]
    var asOf: UInt64
    var asOfTime: String
    var targetNodes: [String]
    var replicationFactor: Int
    var keysRestored: Int
    var tombstonesRestored: Int
    var recordsNewerSkipped: Int
    var recordsRead: Int
    var hintsRead: Int
    var recordsApplied: Int
    var batchesSent: Int
    var bytesSent: UInt64
    var seconds: Double
    /// Each keyspace restored, `default` first.
    var keyspaces: [KeyspaceCounts]
    /// The keyspaces the target lacked and the restore created.
    var keyspacesCreated: [String]

    struct KeyspaceCounts: Encodable {
        var name: String
        var keysRestored: Int
        var tombstonesRestored: Int
        var recordsNewerSkipped: Int
    }

    init(_ report: RestoreReport) {
        keyspaces = report.keyspaces.map {
            KeyspaceCounts(
                name: $0.name, keysRestored: $0.keysRestored, tombstonesRestored: $0.tombstonesRestored,
                recordsNewerSkipped: $0.recordsNewerSkipped)
        }
        keyspacesCreated = report.keyspacesCreated
        backup = report.backup
        basesRead = report.basesRead
        earlierBackupsRead = report.earlierBackupsRead
        asOf = report.asOf
        asOfTime = BackupTime.iso8601(hlc: report.asOf)
        targetNodes = report.targetNodes
        replicationFactor = report.targetReplicationFactor
        keysRestored = report.keysRestored
        tombstonesRestored = report.tombstonesRestored
        recordsNewerSkipped = report.recordsNewerSkipped
        recordsRead = report.recordsRead
        hintsRead = report.hintsRead
        recordsApplied = report.recordsApplied
        batchesSent = report.batchesSent
        bytesSent = report.bytesSent
        let (seconds, attoseconds) = report.duration.components
        self.seconds = Double(seconds) + Double(attoseconds) / 1e18
    }
}
