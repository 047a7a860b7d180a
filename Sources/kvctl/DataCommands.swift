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

    @Option(help: "Time to live (250ms, 30s, 30m, 12h, 7d): the key reads as absent everywhere afterwards.")
    var ttl: String?

    @OptionGroup var consistency: ConsistencyOptions

    func validate() throws {
        if value != nil && file != nil {
            throw ValidationError("give the value either as an argument or with --file, not both")
        }
        if let ttl, Duration(parsingShort: ttl) == nil {
            throw ValidationError("--ttl must be a whole number with a unit: 250ms, 30s, 30m, 12h or 7d")
        }
        if ttl != nil && node != nil {
            throw ValidationError("--ttl is for coordinated writes, not --node")
        }
    }

    func run() async throws {
        try await reportingFailures(json: global.json) {
            let bytes = try readValue()
            if let node {
                let outcome = try await global.withClient { client in
                    try await client.keyspace(global.keyspaceName).writeReplica(
                        Array(key.utf8), value: bytes, node: node)
                }
                try reportReplicaWrite(outcome, key: key, node: node, bytes: bytes.count, json: global.json)
                return
            }
            let version = try await global.withClient { client in
                try await client.keyspace(global.keyspaceName).put(
                    Array(key.utf8), value: bytes, consistency: consistency.write,
                    timeToLive: ttl.flatMap(Duration.init(parsingShort:)))
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
                try await client.keyspace(global.keyspaceName).get(
                    Array(key.utf8), consistency: consistency.read, repair: repairMode)
            }
            guard let found else {
                try notFound("key not found: \(key)", ReadDocument(ok: true, key: key, found: false))
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

    /// A key that is not there: with `--json`, `document` alone on stdout (one JSON document); else
    /// `message` on stderr. Exit code 2 either way.
    private func notFound(_ message: String, _ document: ReadDocument) throws -> Never {
        if global.json {
            try printJSON(document)
            throw ExitCode(exitCodeNotFound)
        }
        throw CommandFailure(message, exitCode: exitCodeNotFound)
    }

    private var repairMode: KVReadRepair? {
        switch repair {
        case "background": .background
        case "blocking": .blocking
        case "none": KVReadRepair.none
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
                try await client.keyspace(global.keyspaceName).replicaRecord(Array(key.utf8), node: node)
            }
        } catch let error as KVClientError where error.refusalCode == .notReplica {
            // The node does not keep the key's range in its map: it holds nothing for it.
            try notFound(
                "\(node) is not a replica of \(key): \(error)",
                ReadDocument(ok: true, key: key, found: false, node: node))
        }
        guard let record else {
            try notFound("key not found on \(node): \(key)", ReadDocument(ok: true, key: key, found: false, node: node))
        }
        // An expired value is a delete at its own version (by this host's clock): shown as absent.
        let deleted = record.isDeleted(atMillis: UInt64(max(0, Date().timeIntervalSince1970 * 1000)))
        let expiry = record.expiresAtMillis == 0 ? nil : record.expiresAtMillis
        if global.json {
            try printJSON(
                ReadDocument(
                    ok: true, key: key, found: !deleted,
                    value: deleted ? nil : String(validating: record.value, as: UTF8.self),
                    valueBase64: deleted ? nil : Data(record.value).base64EncodedString(),
                    version: "\(record.version)", node: node, tombstone: record.tombstone, expiresAtMillis: expiry,
                    expired: expiry.map { _ in deleted && !record.tombstone }))
        } else {
            let state =
                record.tombstone
                ? " (tombstone)" : expiry.map { deleted ? " (expired at \($0) ms)" : " (expires at \($0) ms)" } ?? ""
            printError("\(node): version \(record.version)\(state)")
            if !deleted {
                writeValue(record.value)
            }
        }
        if deleted {
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
                    try await client.keyspace(global.keyspaceName).writeReplica(
                        Array(key.utf8), value: [], tombstone: true, node: node)
                }
                try reportReplicaWrite(outcome, key: key, node: node, bytes: 0, json: global.json)
                return
            }
            let version = try await global.withClient { client in
                try await client.keyspace(global.keyspaceName).delete(Array(key.utf8), consistency: consistency.write)
            }
            if global.json {
                try printJSON(WriteDocument(ok: true, key: key, version: "\(version)", bytes: 0))
            } else {
                print("OK \(version)")
            }
        }
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
    /// Milliseconds since 1970 when the value expires (a write with a time to live).
    var expiresAtMillis: UInt64?
    /// Whether the value has expired (it then reads as absent).
    var expired: Bool?
}
