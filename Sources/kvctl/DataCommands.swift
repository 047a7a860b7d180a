import ArgumentParser
import Foundation
import KVClient
import KVCore
import KVTLS
import KVWire

/// Exit code for a key that does not exist (or was deleted).
let exitCodeNotFound: Int32 = 2

struct Put: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a value.",
        discussion:
            "The value comes from VALUE, from --file, or from stdin when neither is given; bytes are stored untouched."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The key (UTF-8).")
    var key: String

    @Argument(help: "The value (UTF-8). Omit it to read --file or stdin.")
    var value: String?

    @Option(help: "Read the value from this file ('-' for stdin).")
    var file: String?

    @Option(help: "Write to this one replica only, bypassing coordination (admin certificate only).")
    var node: String?

    @OptionGroup var consistency: ConsistencyOptions

    func validate() throws {
        if value != nil && file != nil {
            throw ValidationError("give the value either as an argument or with --file, not both")
        }
    }

    func run() async throws {
        try await reportingFailures(json: global.json) {
            let bytes = try readValue()
            if let node {
                let outcome = try await global.withClient { client in
                    try await client.writeReplica(Array(key.utf8), value: bytes, node: node)
                }
                try reportReplicaWrite(outcome, key: key, node: node, bytes: bytes.count, json: global.json)
                return
            }
            let version = try await global.withClient { client in
                try await client.put(Array(key.utf8), value: bytes, consistency: consistency.write)
            }
            if global.json {
                try printJSON(WriteDocument(ok: true, key: key, version: "\(version)", bytes: bytes.count))
            } else {
                print("OK \(version)")
            }
        }
    }

    private func readValue() throws -> [UInt8] {
        if let value { return Array(value.utf8) }
        if let file, file != "-" {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw CommandFailure("cannot read \(file)")
            }
            return Array(data)
        }
        return Array(FileHandle.standardInput.readDataToEndOfFile())
    }
}

struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read a value.",
        discussion: "Prints the value's bytes untouched on stdout; exit code 2 when the key does not exist."
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The key (UTF-8).")
    var key: String

    @Option(help: "Read this one replica only, bypassing coordination, and print its version (admin certificate only).")
    var node: String?

    @Option(help: "Read repair of stale replicas: background (default), blocking (before answering) or none.")
    var repair: String?

    @OptionGroup var consistency: ConsistencyOptions

    func run() async throws {
        try await reportingFailures(json: global.json) {
            if let node {
                try await readReplica(node)
                return
            }
            let found = try await global.withClient { client in
                try await client.get(Array(key.utf8), consistency: consistency.read, repair: repairMode)
            }
            guard let found else {
                if global.json {
                    try printJSON(ReadDocument(ok: true, key: key, found: false))
                }
                throw CommandFailure("key not found: \(key)", exitCode: exitCodeNotFound)
            }
            if global.json {
                try printJSON(
                    ReadDocument(
                        ok: true, key: key, found: true,
                        value: String(validating: found.value, as: UTF8.self),
                        valueBase64: Data(found.value).base64EncodedString(),
                        version: "\(found.version)"))
            } else {
                writeValue(found.value)
            }
        }
    }

    private var repairMode: ReadOperation.Repair? {
        switch repair {
        case "background": .background
        case "blocking": .blocking
        case "none": ReadOperation.Repair.none
        default: nil
        }
    }

    func validate() throws {
        if let repair, !["background", "blocking", "none"].contains(repair) {
            throw ValidationError("--repair must be background, blocking or none")
        }
    }

    /// `get --node`: what one replica holds, tombstones included, with its version.
    private func readReplica(_ node: String) async throws {
        let record: StoredRecord?
        do {
            record = try await global.withClient { client in
                try await client.replicaRecord(Array(key.utf8), node: node)
            }
        } catch let error as KVClientError where error.refusalCode == .notReplica {
            // The node does not keep the key's range in its map: it holds nothing for it.
            if global.json {
                try printJSON(ReadDocument(ok: true, key: key, found: false, node: node))
            }
            throw CommandFailure("\(node) is not a replica of \(key): \(error)", exitCode: exitCodeNotFound)
        }
        guard let record else {
            if global.json {
                try printJSON(ReadDocument(ok: true, key: key, found: false, node: node))
            }
            throw CommandFailure("key not found on \(node): \(key)", exitCode: exitCodeNotFound)
        }
        if global.json {
            try printJSON(
                ReadDocument(
                    ok: true, key: key, found: !record.tombstone,
                    value: record.tombstone ? nil : String(validating: record.value, as: UTF8.self),
                    valueBase64: record.tombstone ? nil : Data(record.value).base64EncodedString(),
                    version: "\(record.version)", node: node, tombstone: record.tombstone))
        } else {
            printError("\(node): version \(record.version)\(record.tombstone ? " (tombstone)" : "")")
            if !record.tombstone {
                writeValue(record.value)
            }
        }
        if record.tombstone {
            throw ExitCode(exitCodeNotFound)
        }
    }
}

/// Writes value bytes untouched; a newline follows only on a terminal, for people.
private func writeValue(_ value: [UInt8]) {
    FileHandle.standardOutput.write(Data(value))
    if isatty(STDOUT_FILENO) == 1 && value.last != UInt8(ascii: "\n") {
        FileHandle.standardOutput.write(Data("\n".utf8))
    }
}

private func reportReplicaWrite(_ outcome: ApplyOutcome, key: String, node: String, bytes: Int, json: Bool) throws {
    switch outcome {
    case .applied:
        if json {
            try printJSON(WriteDocument(ok: true, key: key, version: "written", bytes: bytes, node: node))
        } else {
            print("OK (\(node) only)")
        }
    case .superseded(let current):
        throw CommandFailure("\(node) holds a newer version (\(current)); nothing written")
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete a key (writes a tombstone).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The key (UTF-8).")
    var key: String

    @Option(help: "Delete on this one replica only, bypassing coordination (admin certificate only).")
    var node: String?

    @OptionGroup var consistency: ConsistencyOptions

    func run() async throws {
        try await reportingFailures(json: global.json) {
            if let node {
                let outcome = try await global.withClient { client in
                    try await client.writeReplica(Array(key.utf8), value: [], tombstone: true, node: node)
                }
                try reportReplicaWrite(outcome, key: key, node: node, bytes: 0, json: global.json)
                return
            }
            let version = try await global.withClient { client in
                try await client.delete(Array(key.utf8), consistency: consistency.write)
            }
            if global.json {
                try printJSON(WriteDocument(ok: true, key: key, version: "\(version)", bytes: 0))
            } else {
                print("OK \(version)")
            }
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show each node up or down, with its ping latency, and (admin certificate) its hint counters.",
        discussion: """
            With an admin certificate a second section shows each node's hints stored, replayed, expired, \
            refused and queued per target, the read repairs it received, and the token ranges due for \
            anti-entropy. Exit code 1 when any node is down.
            """
    )

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await reportingFailures(json: global.json) {
            let (statuses, withCounters) = try await global.withClient { client in
                (try await client.status(), client.identity.role == .admin)
            }
            if global.json {
                try printJSON(
                    StatusDocument(
                        ok: statuses.allSatisfy(\.isUp), counters: withCounters,
                        nodes: statuses.map(NodeDocument.init)))
            } else {
                printNodes(statuses)
                print("")
                if withCounters {
                    printCounters(statuses)
                    print("")
                    printAntiEntropy(statuses)
                    print("")
                    printHealth(statuses)
                    print("")
                    printMembership(statuses)
                } else {
                    print("(admin certificate needed for counters)")
                }
            }
            if !statuses.allSatisfy(\.isUp) {
                throw ExitCode(1)
            }
        }
    }

    private func printNodes(_ statuses: [NodeStatus]) {
        print(row(["NODE", "ADDRESS", "STATE", "LATENCY", "KEYS", "HINTS"], widths: [11, 22, 6, 10, 10]))
        for status in statuses {
            guard status.isUp else {
                let fields = [status.nodeID, status.address, "DOWN", "-", "-", "-    (\(status.error ?? ""))"]
                print(row(fields, widths: [11, 22, 6, 10, 10]))
                continue
            }
            let latency = String(format: "%.2f ms", status.latency.map { $0 / .milliseconds(1) } ?? 0)
            let fields = [
                status.nodeID, status.address, "up", latency, String(status.keys ?? 0), String(status.hintsQueued ?? 0),
            ]
            print(row(fields, widths: [11, 22, 6, 10, 10]))
        }
    }

    /// The "hints" section: each node's counters since it started, and its queue per target.
    private func printCounters(_ statuses: [NodeStatus]) {
        let widths = [11, 10, 10, 10, 10, 10, 8]
        print(
            row(["HINTS", "STORED", "REPLAYED", "EXPIRED", "REFUSED", "REPAIRS", "AE-DUE", "QUEUED"], widths: widths))
        for status in statuses {
            guard status.isUp else {
                print(row([status.nodeID, "-    (down)"], widths: widths))
                continue
            }
            if let error = status.countersError {
                print(row([status.nodeID, "-    (counters unavailable: \(error))"], widths: widths))
                continue
            }
            func text(_ value: UInt64?) -> String { value.map(String.init) ?? "-" }
            let queued = (status.hintsQueuedPerTarget ?? [:]).sorted { $0.key < $1.key }
                .map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            let fields = [
                status.nodeID, text(status.hintsStored), text(status.hintsReplayed), text(status.hintsExpired),
                text(status.hintsRefused), text(status.readRepairsReceived), text(status.antiEntropyRangesDue),
                queued.isEmpty ? "-" : queued,
            ]
            print(row(fields, widths: widths))
        }
    }

    /// The "anti-entropy" section: ranges compared, records copied and tombstones purged since the
    /// node started, when its last whole pass ended without error, and the oldest time one of its
    /// ranges was last compared (`--json` has each range's).
    private func printAntiEntropy(_ statuses: [NodeStatus]) {
        let widths = [13, 10, 10, 10, 10, 21]
        print(
            row(
                ["ANTI-ENTROPY", "COMPARED", "SENT", "RECEIVED", "PURGED", "LAST-FULL-PASS", "OLDEST-RANGE"],
                widths: widths))
        for status in statuses where status.isUp && status.countersError == nil {
            func text(_ value: UInt64?) -> String { value.map(String.init) ?? "-" }
            func time(_ millis: UInt64?) -> String {
                guard let millis else { return "-" }
                guard millis > 0 else { return "never" }
                return ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
            }
            let fields = [
                status.nodeID, text(status.antiEntropyRangesCompared), text(status.antiEntropyKeysSent),
                text(status.antiEntropyKeysReceived), text(status.tombstonesPurged),
                time(status.antiEntropyLastFullPassMillis), time(status.antiEntropyOldestRangeComparedMillis),
            ]
            print(row(fields, widths: widths))
        }
    }

    /// The "health" section: the peers each node's failure detector suspects, and its phi for each.
    private func printHealth(_ statuses: [NodeStatus]) {
        let widths = [13, 12, 20]
        print(row(["HEALTH", "CERT-EXPIRES", "SUSPECTS", "PHI"], widths: widths))
        for status in statuses where status.isUp && status.countersError == nil {
            let suspects = status.peersSuspected.map { $0.isEmpty ? "none" : $0.joined(separator: ",") } ?? "-"
            let phi = (status.peerPhi ?? [:]).sorted { $0.key < $1.key }
                .map { "\($0.key)=\(String(format: "%.1f", $0.value))" }.joined(separator: " ")
            let expires = status.certificateNotAfterSeconds.map {
                String(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval($0))).prefix(10))
            }
            print(row([status.nodeID, expires ?? "-", suspects, phi.isEmpty ? "-" : phi], widths: widths))
        }
    }

    /// Each node's map epoch, the change in progress, and the ranges it receives (or last received).
    private func printMembership(_ statuses: [NodeStatus]) {
        let widths = [13, 7, 10, 10, 10]
        print(row(["MEMBERSHIP", "EPOCH", "STREAMED", "RESENT", "DROPPED", "CHANGE"], widths: widths))
        for status in statuses where status.isUp && status.countersError == nil {
            print(
                row(
                    [
                        status.nodeID, status.clusterEpoch.map(String.init) ?? "-",
                        status.streamKeysReceived.map(String.init) ?? "-",
                        status.streamKeysResent.map(String.init) ?? "-",
                        status.handoffKeysDeleted.map(String.init) ?? "-", status.clusterChange ?? "-",
                    ], widths: widths))
        }
        for status in statuses {
            let transfers = (status.transfers ?? [:]).sorted { $0.key < $1.key }
            guard !transfers.isEmpty else { continue }
            let done = transfers.filter { $0.value.hasPrefix("done") }.count
            print("\(status.nodeID) receives \(transfers.count) ranges, \(done) done:")
            for (range, progress) in transfers where !progress.hasPrefix("done") {
                print("  \(range)  \(progress)")
            }
        }
    }

    /// Fields padded to `widths` and separated by one space; the fields past `widths` follow unpadded.
    private func row(_ fields: [String], widths: [Int]) -> String {
        fields.enumerated().map { index, field in
            index < widths.count && index < fields.count - 1
                ? field.padding(toLength: max(widths[index], field.count), withPad: " ", startingAt: 0) : field
        }.joined(separator: " ")
    }
}

private struct WriteDocument: Encodable {
    var ok: Bool
    var key: String
    var version: String
    var bytes: Int
    var node: String?
}

private struct ReadDocument: Encodable {
    var ok: Bool
    var key: String
    var found: Bool
    /// The value as UTF-8 text, or null when it is not valid UTF-8 (then read `valueBase64`).
    var value: String?
    var valueBase64: String?
    var version: String?
    var node: String?
    var tombstone: Bool?
}

private struct StatusDocument: Encodable {
    var ok: Bool
    /// Whether the counters were asked for (an admin certificate); a node's counter fields are absent
    /// when they were not, when the node is down, or when it did not answer them (`countersError`).
    var counters: Bool
    var nodes: [NodeDocument]
}

/// One node in `kvctl status --json`; the fields are listed in the README ("kvctl status").
private struct NodeDocument: Encodable {
    var address: String
    var node: String
    var up: Bool
    var latencyMillis: Double?
    var keys: UInt64?
    var hintsQueued: UInt64?
    var error: String?
    var hintsStored: UInt64?
    var hintsReplayed: UInt64?
    var hintsExpired: UInt64?
    var hintsRefused: UInt64?
    var readRepairsReceived: UInt64?
    var readRepairsApplied: UInt64?
    var antiEntropyRangesDue: UInt64?
    var antiEntropyRangesCompared: UInt64?
    var antiEntropyKeysSent: UInt64?
    var antiEntropyKeysReceived: UInt64?
    var antiEntropyLastFullPassMillis: UInt64?
    var tombstonesPurged: UInt64?
    var antiEntropyOldestRangeComparedMillis: UInt64?
    var peerPhi: [String: Double]?
    var peersSuspected: [String]?
    var clusterEpoch: UInt64?
    var clusterChange: String?
    var transfers: [String: String]?
    var streamKeysReceived: UInt64?
    var streamKeysResent: UInt64?
    var handoffKeysDeleted: UInt64?
    var antiEntropyRangeComparedMillis: [String: UInt64]?
    var hintsQueuedPerTarget: [String: UInt64]?
    var certificateNotAfterSeconds: UInt64?
    var countersError: String?

    init(_ status: NodeStatus) {
        address = status.address
        node = status.nodeID
        up = status.isUp
        latencyMillis = status.latency.map { $0 / .milliseconds(1) }
        keys = status.keys
        hintsQueued = status.hintsQueued
        error = status.error
        hintsStored = status.hintsStored
        hintsReplayed = status.hintsReplayed
        hintsExpired = status.hintsExpired
        hintsRefused = status.hintsRefused
        readRepairsReceived = status.readRepairsReceived
        readRepairsApplied = status.readRepairsApplied
        antiEntropyRangesDue = status.antiEntropyRangesDue
        antiEntropyRangesCompared = status.antiEntropyRangesCompared
        antiEntropyKeysSent = status.antiEntropyKeysSent
        antiEntropyKeysReceived = status.antiEntropyKeysReceived
        antiEntropyLastFullPassMillis = status.antiEntropyLastFullPassMillis
        tombstonesPurged = status.tombstonesPurged
        antiEntropyOldestRangeComparedMillis = status.antiEntropyOldestRangeComparedMillis
        peerPhi = status.peerPhi
        peersSuspected = status.peersSuspected
        clusterEpoch = status.clusterEpoch
        clusterChange = status.clusterChange
        transfers = status.transfers
        streamKeysReceived = status.streamKeysReceived
        streamKeysResent = status.streamKeysResent
        handoffKeysDeleted = status.handoffKeysDeleted
        antiEntropyRangeComparedMillis = status.antiEntropyRangeComparedMillis
        hintsQueuedPerTarget = status.hintsQueuedPerTarget
        certificateNotAfterSeconds = status.certificateNotAfterSeconds
        countersError = status.countersError
    }
}
