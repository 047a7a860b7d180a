import ArgumentParser
import Foundation
import KVBackup
import KVClient
import KVCore

/// `kvctl backup`: back up every node (default), verify, list and prune a destination.
struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Back up every node into a folder, and verify, list and prune backups (admin certificate).",
        discussion: """
            kvctl backup --dest DIR: every node takes a RocksDB checkpoint (hard links, writes go on) of its data, \
            hints and metadata; kvctl copies the files DIR does not hold yet into DIR/files/<sha256>, then writes \
            DIR/backups/<id>/manifest.json (the cluster map, each node's checkpoint time and files). When DIR holds \
            a backup of the cluster already, the new one is incremental: each node checkpoints only the records and \
            hints written since that backup's cut (--full for a whole checkpoint). An interrupted backup is resumed \
            by running it again. docs/operations.md ("Backups").
            """,
        subcommands: [BackupCreate.self, BackupVerify.self, BackupList.self, BackupPrune.self],
        defaultSubcommand: BackupCreate.self
    )
}

/// `kvctl backup [create] --dest DIR`.
struct BackupCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Back up every node of the cluster into --dest (the default backup command).",
        discussion: """
            Prints the backup's id, its cut (the earliest checkpoint time), the backup it builds on when \
            incremental, and the files copied and skipped (already in the destination); --json prints them as one \
            document. Progress goes to stderr. Exit code 1 when a node cannot be backed up; its checkpoints are \
            released all the same.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "The destination folder (created when missing).")
    var dest: String

    @Option(name: .customLong("chunk-bytes"), help: "Bytes asked per read of a node's file (4096...1048576).")
    var chunkBytes = Limits.backupChunkBytesMax

    @Option(
        help: ArgumentHelp(
            "The most bytes per second read from each node (default: no limit).",
            discussion: "Leaves the nodes' disks and cores to their clients while the backup runs."))
    var rate: Int?

    @Flag(
        help: ArgumentHelp(
            "Take every node's whole checkpoint, even when DIR holds an earlier backup to build on.",
            discussion:
                "An incremental backup is restored with every backup it builds on, down to a full one: a full backup now and then keeps that chain short and lets `backup prune` remove the older ones."
        ))
    var full = false

    @Option(
        help: ArgumentHelp(
            "Seconds before the base backup's cut an incremental backup reaches back (default 60).",
            discussion:
                "A write stamped just before the cut by a client whose clock lags, or held up in the network, can reach its replicas after their checkpoints; the overlap copies it in the next backup. At least the clock skew between hosts."
        ))
    var overlap = 60

    func validate() throws {
        guard (0...86_400).contains(overlap) else { throw ValidationError("--overlap must be 0...86400 seconds") }
        if let rate, rate < 65_536 || rate > 10_000_000_000 {
            throw ValidationError("--rate must be between 65536 and 10000000000 bytes per second")
        }
        guard chunkBytes >= 4096, chunkBytes <= Limits.backupChunkBytesMax else {
            throw ValidationError("--chunk-bytes must be between 4096 and \(Limits.backupChunkBytesMax)")
        }
    }

    func run() async throws {
        try await reportingFailures(json: global.json) {
            let destination = BackupDestination(root: dest)
            let report = try await global.withClient { client in
                var runner = BackupRunner(source: ClusterBackupSource(client: client), destination: destination)
                runner.progress = { printError($0) }
                runner.chunkBytes = chunkBytes
                runner.bytesPerSecondPerNode = rate
                runner.incremental = !full
                runner.incrementalOverlap = .seconds(overlap)
                return try await runner.run()
            }
            let document = BackupDocument(report)
            if global.json {
                try printJSON(document)
            } else {
                print("backup \(document.id): \(document.nodes) nodes, cut \(document.cut) (\(document.cutTime))")
                if let base = document.base {
                    print(
                        "incremental on backup \(base): \(document.nodes - document.fullCheckpoints) nodes sent their changes since its cut, \(document.fullCheckpoints) a whole checkpoint"
                    )
                }
                print(
                    "files: \(document.filesCopied) copied (\(document.bytesCopied) bytes, \(document.filesResumed) resumed), \(document.filesSkipped) already in \(dest) (\(document.bytesSkipped) bytes)"
                )
                print("table files: \(document.tableFilesCopied) copied, \(document.tableFilesSkipped) skipped")
                print("keyspaces: \(document.keyspaces.joined(separator: ", "))")
            }
        }
    }
}

/// `kvctl backup --json`.
struct BackupDocument: Encodable {
    var ok = true
    var id: String
    var cut: UInt64
    var cutTime: String
    var nodes: Int
    /// The backup this one builds on, when incremental.
    var base: String?
    /// Nodes that sent a whole checkpoint (all of them in a full backup).
    var fullCheckpoints: Int
    var filesCopied: Int
    var filesSkipped: Int
    var filesResumed: Int
    var tableFilesCopied: Int
    var tableFilesSkipped: Int
    var bytesCopied: UInt64
    var bytesSkipped: UInt64
    /// The keyspaces the backup holds: `default`, then those of the cluster map, by name.
    var keyspaces: [String]

    init(_ report: BackupReport) {
        keyspaces = RestoreKeyspace.all(in: report.manifest).map(\.name)
        id = report.manifest.id
        cut = report.manifest.cut
        cutTime = report.manifest.cutTime
        nodes = report.manifest.nodes.count
        base = report.manifest.base
        fullCheckpoints = report.manifest.nodes.count { $0.since == nil }
        filesCopied = report.filesCopied
        filesSkipped = report.filesSkipped
        filesResumed = report.filesResumed
        tableFilesCopied = report.tableFilesCopied
        tableFilesSkipped = report.tableFilesSkipped
        bytesCopied = report.bytesCopied
        bytesSkipped = report.bytesSkipped
    }
}

/// `kvctl backup verify DIR [--backup ID]`.
struct BackupVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Read every file of every backup in DIR (or of --backup ID) and check it against its manifest.",
        discussion: """
            Exit code 1 when a file is missing or differs; each such file is named on stderr. With --deep, \
            also rebuild each node's checkpoint, open it with RocksDB and read every record and hint, as a \
            restore would: a checkpoint that does not open or read whole is named on stderr too. --json prints \
            one document (with --deep, each node's records per keyspace and hints in `readBack`).
            """
    )

    /// `--json` (one JSON document on stdout) is the global option: kvctl's own copy of it takes the
    /// flag wherever it stands, so a command's flag of that name would never be set.
    @OptionGroup(visibility: .hidden) var global: GlobalOptions
    var json: Bool { global.json }

    @Flag(
        help: "Also open each node's checkpoint and read every record and hint (takes as long as reading the backup).")
    var deep = false

    @Argument(help: "The backup destination folder.")
    var directory: String

    @Option(help: "Verify this backup only.")
    var backup: String?

    func run() async throws {
        try await reportingFailures(json: json) {
            let report = try BackupDestination(root: directory).verify(backup: backup, deep: deep)
            guard !report.backups.isEmpty else { throw CommandFailure("no backup in \(directory)") }
            if json {
                try printJSON(VerifyDocument(report, deep: deep))
            } else {
                print(
                    "\(report.backups.count) backups, \(report.filesCheckedText): \(report.ok ? "ok" : "\(report.problems.count) problems")"
                )
                for id in report.backups {
                    let names = (report.keyspaces[id] ?? []).map(\.name)
                    print("\(id): keyspaces \(names.joined(separator: ", "))")
                    for node in report.readBack where node.backup == id {
                        let records = report.recordsByKeyspace(node).map { "\($0.key) \($0.value)" }
                        print("  \(node.node): records \(records.joined(separator: ", ")); hints \(node.hints)")
                    }
                }
            }
            for problem in report.problems { printError("kvctl: \(problem)") }
            if !report.ok { throw ExitCode(1) }
        }
    }
}

extension BackupDestination.VerifyReport {
    fileprivate var filesCheckedText: String { "\(filesChecked) files (\(bytesChecked) bytes) read" }

    /// The records `node`'s checkpoint held by keyspace name (a split keyspace's parts together; `id N`
    /// for a family the backup's map does not name), sorted by name.
    fileprivate func recordsByKeyspace(_ node: BackupDestination.ReadBack) -> [(key: String, value: Int)] {
        let names = Dictionary(
            (keyspaces[node.backup] ?? []).flatMap { keyspace in keyspace.backupIDs.map { ($0, keyspace.name) } },
            uniquingKeysWith: { first, _ in first })
        let byName = Dictionary(node.records.map { (names[$0.key] ?? "id \($0.key)", $0.value) }, uniquingKeysWith: +)
        return byName.sorted { $0.key < $1.key }
    }
}

private struct VerifyDocument: Encodable {
    struct Problem: Encodable {
        var backup, node, file, path, reason: String
    }
    var ok: Bool
    var backups: [String]
    var filesChecked: Int
    var bytesChecked: UInt64
    var problems: [Problem]
    /// Each backup's keyspaces by name, with their parts' ids in the backup.
    var keyspaces: [String: [String: [UInt32]]]
    struct ReadBack: Encodable {
        var backup, node: String
        var records: [String: Int]
        var hints: Int
    }
    /// With --deep: what each node's checkpoint held, records by keyspace name.
    var readBack: [ReadBack]?

    init(_ report: BackupDestination.VerifyReport, deep: Bool) {
        keyspaces = report.keyspaces.mapValues { keyspaces in
            Dictionary(keyspaces.map { ($0.name, $0.backupIDs) }, uniquingKeysWith: { first, _ in first })
        }
        ok = report.ok
        backups = report.backups
        filesChecked = report.filesChecked
        bytesChecked = report.bytesChecked
        problems = report.problems.map {
            Problem(backup: $0.backup, node: $0.node, file: $0.file, path: $0.path, reason: $0.reason)
        }
        readBack =
            deep
            ? report.readBack.map { node in
                ReadBack(
                    backup: node.backup, node: node.node,
                    records: Dictionary(report.recordsByKeyspace(node), uniquingKeysWith: +), hints: node.hints)
            } : nil
    }
}

/// `kvctl backup list DIR`.
struct BackupList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "The finished backups in DIR, oldest first.")

    /// `--json` (one JSON document on stdout) is the global option: kvctl's own copy of it takes the
    /// flag wherever it stands, so a command's flag of that name would never be set.
    @OptionGroup(visibility: .hidden) var global: GlobalOptions
    var json: Bool { global.json }

    @Argument(help: "The backup destination folder.")
    var directory: String

    private struct Entry: Encodable {
        var id: String
        var startedAt: String
        var cut: UInt64
        var cutTime: String
        var nodes: [String]
        var files: Int
        var bytes: UInt64
        /// The backup it builds on, when incremental.
        var base: String?
        /// `default`, then the keyspaces of its cluster map.
        var keyspaces: [String]
    }

    private struct Document: Encodable {
        var ok = true
        var backups: [Entry]
    }

    func run() async throws {
        try await reportingFailures(json: json) {
            let destination = BackupDestination(root: directory)
            try destination.requireBackups()
            let entries = try destination.manifests().map { manifest in
                Entry(
                    id: manifest.id, startedAt: manifest.startedAt, cut: manifest.cut, cutTime: manifest.cutTime,
                    nodes: manifest.nodes.map(\.node), files: manifest.files.count,
                    bytes: manifest.nodes.reduce(0) { $0 &+ $1.bytes }, base: manifest.base,
                    keyspaces: RestoreKeyspace.all(in: manifest).map(\.name))
            }
            if json {
                try printJSON(Document(backups: entries))
                return
            }
            print("ID                        CUT                         NODES  FILES    BYTES        BASE")
            for entry in entries {
                print(
                    "\(entry.id.padding(toLength: 25, withPad: " ", startingAt: 0)) \(entry.cutTime.padding(toLength: 27, withPad: " ", startingAt: 0)) \(String(entry.nodes.count).padding(toLength: 6, withPad: " ", startingAt: 0)) \(String(entry.files).padding(toLength: 8, withPad: " ", startingAt: 0)) \(String(entry.bytes).padding(toLength: 12, withPad: " ", startingAt: 0)) \(entry.base ?? "full")"
                )
            }
        }
    }
}

/// `kvctl backup prune DIR --keep N`.
struct BackupPrune: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove all but the newest N backups in DIR, and the files no remaining backup lists.",
        discussion: "Waits for no running backup: it fails at once when one holds DIR/.lock."
    )

    /// `--json` (one JSON document on stdout) is the global option: kvctl's own copy of it takes the
    /// flag wherever it stands, so a command's flag of that name would never be set.
    @OptionGroup(visibility: .hidden) var global: GlobalOptions
    var json: Bool { global.json }

    @Argument(help: "The backup destination folder.")
    var directory: String

    @Option(help: "How many backups to keep (the newest).")
    var keep: Int

    @Flag(name: .customLong("dry-run"), help: "Only print what would be removed.")
    var dryRun = false

    @Option(
        name: .customLong("partial-age"),
        help: "Hours an interrupted backup's half-copied files wait for a backup to resume them (default 24).")
    var partialAgeHours = 24

    func validate() throws {
        guard keep >= 1 else { throw ValidationError("--keep must be at least 1") }
        guard (0...87_600).contains(partialAgeHours) else {
            throw ValidationError("--partial-age must be 0...87600 hours")
        }
    }

    private struct Document: Encodable {
        var ok = true
        var dryRun: Bool
        var backupsRemoved: [String]
        var filesRemoved: Int
        var partialsRemoved: Int
        var bytesRemoved: UInt64
    }

    func run() async throws {
        try await reportingFailures(json: json) {
            let destination = BackupDestination(root: directory)
            let age = Duration.seconds(partialAgeHours * 3600)
            let plan =
                dryRun
                ? try destination.prunePlan(keep: keep, partialAge: age)
                : try destination.prune(keep: keep, partialAge: age)
            if json {
                try printJSON(
                    Document(
                        dryRun: dryRun, backupsRemoved: plan.backups, filesRemoved: plan.files.count,
                        partialsRemoved: plan.partials.count, bytesRemoved: plan.bytes))
            } else {
                let verb = dryRun ? "would remove" : "removed"
                print(
                    "\(verb) \(plan.backups.count) backups (\(plan.backups.joined(separator: ", "))), \(plan.files.count) files and \(plan.partials.count) abandoned partial copies (\(plan.bytes) bytes)"
                )
            }
        }
    }
}
