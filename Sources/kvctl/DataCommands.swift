import ArgumentParser
import Foundation
import KVClient
import KVCore

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

    func validate() throws {
        if value != nil && file != nil {
            throw ValidationError("give the value either as an argument or with --file, not both")
        }
    }

    func run() async throws {
        try await reportingFailures(json: global.json) {
            let bytes = try readValue()
            let version = try await global.withClient { client in
                try await client.put(Array(key.utf8), value: bytes)
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

    func run() async throws {
        try await reportingFailures(json: global.json) {
            let found = try await global.withClient { client in
                try await client.get(Array(key.utf8))
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
                FileHandle.standardOutput.write(Data(found.value))
                if isatty(STDOUT_FILENO) == 1 && found.value.last != UInt8(ascii: "\n") {
                    FileHandle.standardOutput.write(Data("\n".utf8))
                }
            }
        }
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete a key (writes a tombstone).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The key (UTF-8).")
    var key: String

    func run() async throws {
        try await reportingFailures(json: global.json) {
            let version = try await global.withClient { client in
                try await client.delete(Array(key.utf8))
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
        abstract: "Show each node up or down, with its ping latency.",
        discussion: "Exit code 1 when any node is down."
    )

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await reportingFailures(json: global.json) {
            let statuses = try await global.withClient { client in
                await client.status()
            }
            if global.json {
                try printJSON(
                    StatusDocument(
                        ok: statuses.allSatisfy(\.isUp),
                        nodes: statuses.map { status in
                            NodeDocument(
                                address: status.address, node: status.nodeID, up: status.isUp,
                                latencyMillis: status.latency.map(millis), keys: status.keys, error: status.error)
                        }))
            } else {
                print("NODE        ADDRESS                STATE  LATENCY    KEYS")
                for status in statuses {
                    let name = (status.nodeID ?? "?").padding(toLength: 11, withPad: " ", startingAt: 0)
                    let address = status.address.padding(toLength: 22, withPad: " ", startingAt: 0)
                    if status.isUp {
                        let latency = String(format: "%.2f ms", status.latency.map(millis) ?? 0)
                            .padding(toLength: 10, withPad: " ", startingAt: 0)
                        print("\(name) \(address) up     \(latency) \(status.keys ?? 0)")
                    } else {
                        print("\(name) \(address) DOWN   -          -     (\(status.error ?? ""))")
                    }
                }
            }
            if !statuses.allSatisfy(\.isUp) {
                throw ExitCode(1)
            }
        }
    }
}

private func millis(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) * 1000 + Double(attoseconds) / 1e15
}

private struct WriteDocument: Encodable {
    var ok: Bool
    var key: String
    var version: String
    var bytes: Int
}

private struct ReadDocument: Encodable {
    var ok: Bool
    var key: String
    var found: Bool
    /// The value as UTF-8 text, or null when it is not valid UTF-8 (then read `valueBase64`).
    var value: String?
    var valueBase64: String?
    var version: String?
}

private struct StatusDocument: Encodable {
    var ok: Bool
    var nodes: [NodeDocument]
}

private struct NodeDocument: Encodable {
    var address: String
    var node: String?
    var up: Bool
    var latencyMillis: Double?
    var keys: UInt64?
    var error: String?
}
