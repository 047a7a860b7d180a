import ArgumentParser
import Foundation
import KVClient
import KVConfig
import KVCore

/// `kvctl keyspace …`: the cluster's keyspaces, each with its own N, levels and TTL, created, altered
/// and dropped as cluster-map changes (admin certificate), like `kvctl cluster set-placement`.
struct KeyspaceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keyspace",
        abstract: "List, show, create, alter or drop keyspaces (changes need an admin certificate).",
        discussion: """
            A keyspace is a namespace of keys with its own placement (N, zones), default read and \
            write levels and default time to live. Select one for put, get, delete and ring KEY with \
            the global --keyspace NAME (env QUORUMKV_KEYSPACE).
            """,
        subcommands: [List.self, Show.self, Create.self, Alter.self, Drop.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the keyspaces of the latest cluster map.")

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingFailures(json: global.json) {
                let map = try await global.withClient { client in try await client.latestClusterMap() }
                let rows = KeyspaceDocument.all(of: map)
                if global.json {
                    try printJSON(KeyspaceListDocument(epoch: map.epoch, keyspaces: rows))
                } else {
                    printKeyspaceTable(rows)
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one keyspace's settings.")

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The keyspace's name.") var name: String

        func run() async throws {
            try await reportingFailures(json: global.json) {
                let map = try await global.withClient { client in try await client.latestClusterMap() }
                guard let keyspace = map.keyspace(named: name) else { throw unknownKeyspace(name, in: map) }
                let row = KeyspaceDocument(keyspace, of: map)
                if global.json {
                    try printJSON(row)
                    return
                }
                print("keyspace   \(row.name) (id \(row.id))")
                print("placement  \(row.placement) (N=\(row.replicationFactor))")
                print("read       \(row.read)")
                print("write      \(row.write)")
                print("ttl        \(row.ttl ?? "none")")
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a keyspace (empty: nothing streams).",
            discussion: """
                Defaults: simple:3 (fewer on a smaller cluster), quorum reads and writes, no TTL. \
                --rf N is simple:N; --placement takes any rule set-placement takes.
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var settings: KeyspaceSettingOptions

        @Argument(help: "The keyspace's name: letters, digits, '_' or '-', starting with a letter.") var name: String

        func validate() throws {
            try settings.validate()
            if settings.ttl == "none" { throw ValidationError("--ttl none is for alter; omit --ttl instead") }
        }

        func run() async throws {
            try await changeKeyspace(.createKeyspace(name, settings.settings()), name: name, global: global)
        }
    }

    struct Alter: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a keyspace's default read or write level or TTL (--ttl none: no TTL).",
            discussion: "Its placement cannot change yet: that would move its data, which nodes cannot do yet.")

        @OptionGroup var global: GlobalOptions
        @OptionGroup var settings: KeyspaceSettingOptions

        @Argument(help: "The keyspace's name.") var name: String

        func validate() throws {
            try settings.validate()
        }

        func run() async throws {
            try await changeKeyspace(.alterKeyspace(name, settings.settings()), name: name, global: global)
        }
    }

    struct Drop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drop a keyspace and its data (--force).",
            discussion: """
                Its data is gone for good and its name free again (a new keyspace of that name is \
                another keyspace). Without --force nothing is changed.
                """)

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The keyspace's name.") var name: String

        @Flag(help: "Drop it: without this flag, only say what would be dropped.") var force = false

        func run() async throws {
            if force {
                try await changeKeyspace(.dropKeyspace(name), name: name, global: global)
                return
            }
            try await reportingFailures(json: global.json) {
                let map = try await global.withClient { client in try await client.latestClusterMap() }
                guard let keyspace = map.keyspace(named: name), keyspace.id != Keyspace.defaultID else {
                    throw CommandFailure(
                        name == Keyspace.defaultName
                            ? "the default keyspace cannot be dropped" : unknownKeyspace(name, in: map).description)
                }
                throw CommandFailure(
                    "dropping keyspace '\(keyspace.name)' (id \(keyspace.id), \(keyspace.placement)) deletes all its data; pass --force to drop it"
                )
            }
        }
    }
}

/// `--rf`, `--placement`, `--read`, `--write` and `--ttl` of `keyspace create` and `alter`.
struct KeyspaceSettingOptions: ParsableArguments {
    @Option(name: .customLong("rf"), help: "Its replication factor N (the rule simple:N).")
    var replicationFactor: Int?

    @Option(help: "Its placement rule: simple:N, zones:ZONE=COUNT,... or spread:N/M.")
    var placement: String?

    @Option(help: "The level of reads that name none: one, quorum, all, local_quorum, each_quorum or a count.")
    var read: String?

    @Option(help: "The level of writes that name none (as --read).")
    var write: String?

    @Option(help: "The time to live of writes that name none (250ms, 30s, 30m, 12h, 7d; alter: none removes it).")
    var ttl: String?

    func validate() throws {
        if replicationFactor != nil && placement != nil {
            throw ValidationError("give either --rf or --placement, not both")
        }
        if let replicationFactor, !(1...Limits.replicationFactorMax).contains(replicationFactor) {
            throw ValidationError("--rf must be 1...\(Limits.replicationFactorMax)")
        }
        if let placement, Placement(parsing: placement) == nil {
            throw ValidationError("--placement '\(placement)' is not simple:N, zones:ZONE=COUNT,... or spread:N/M")
        }
        for (name, level) in [("--read", read), ("--write", write)] {
            if let level, ConsistencyLevel(parsing: level) == nil {
                throw ValidationError("\(name) must be one, quorum, all, local_quorum, each_quorum or a number")
            }
        }
        if let ttl, ttl != "none", Duration(parsingShort: ttl) == nil {
            throw ValidationError("--ttl must be a whole number with a unit (250ms, 30s, 30m, 12h or 7d) or none")
        }
    }

    /// The settings given; those not given are nil (create: the defaults; alter: unchanged).
    func settings() -> KeyspaceSettings {
        KeyspaceSettings(
            placement: replicationFactor.map { .simple(replicas: $0) } ?? placement.flatMap(Placement.init(parsing:)),
            readLevel: read.flatMap(ConsistencyLevel.init(parsing:)),
            writeLevel: write.flatMap(ConsistencyLevel.init(parsing:)),
            timeToLive: ttl.map { $0 == "none" ? nil : Duration(parsingShort: $0) })
    }
}

/// Makes a keyspace change through the cluster-change path every map change takes
/// (`KVClient.changeCluster`), then says what keyspace `name` is in the decided map.
private func changeKeyspace(_ change: ClusterChange, name: String, global: GlobalOptions) async throws {
    try await reportingFailures(json: global.json) {
        let map = try await global.withClient { client in try await client.changeCluster(change) }
        // The keyspace as decided (for a drop: the dropped one, the last of that name).
        let keyspace = map.keyspaces.last { $0.name == name }
        if global.json {
            try printJSON(
                KeyspaceChangeDocument(epoch: map.epoch, keyspace: keyspace.map { KeyspaceDocument($0, of: map) }))
        } else {
            print("epoch \(map.epoch): \(change)" + (keyspace.map { ": \($0)" } ?? ""))
        }
    }
}

/// The failure of a command about a keyspace `map` does not have.
private func unknownKeyspace(_ name: String, in map: ClusterMap) -> CommandFailure {
    let known = KeyspaceDocument.all(of: map).map(\.name).joined(separator: ", ")
    let dropped = map.keyspaces.contains { $0.dropped && $0.name == name }
    return CommandFailure(
        (dropped ? "keyspace '\(name)' was dropped" : "no keyspace '\(name)'")
            + " in the cluster map (epoch \(map.epoch); keyspaces: \(known))")
}

/// The keyspace `--keyspace` names, in `map`; a failure naming it when the map has no such keyspace.
func selectedKeyspace(_ global: GlobalOptions, in map: ClusterMap) throws -> Keyspace {
    guard let keyspace = map.keyspace(named: global.keyspaceName) else {
        throw unknownKeyspace(global.keyspaceName, in: map)
    }
    return keyspace
}

/// Prints one line per keyspace (`keyspace list`, `cluster show`).
func printKeyspaceTable(_ rows: [KeyspaceDocument]) {
    let width = max(8, rows.map(\.name.count).max() ?? 0)
    print(
        "KEYSPACE".padding(toLength: width, withPad: " ", startingAt: 0)
            + "  ID    PLACEMENT             READ          WRITE         TTL")
    for row in rows {
        print(
            row.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                + String(row.id).padding(toLength: 5, withPad: " ", startingAt: 0) + " "
                + row.placement.padding(toLength: 21, withPad: " ", startingAt: 0) + " "
                + row.read.padding(toLength: 13, withPad: " ", startingAt: 0) + " "
                + row.write.padding(toLength: 13, withPad: " ", startingAt: 0) + " " + (row.ttl ?? "-"))
    }
}

/// One keyspace in `--json` output. The default keyspace's levels are `quorum`, what a client uses
/// unless it is configured otherwise.
struct KeyspaceDocument: Encodable {
    var id: UInt32
    var name: String
    var placement: String
    var replicationFactor: Int
    var read: String
    var write: String
    /// `30m`; nil: writes do not expire unless they say so.
    var ttl: String?
    var dropped: Bool

    init(_ keyspace: Keyspace, of map: ClusterMap) {
        id = keyspace.id
        name = keyspace.name
        placement = "\(keyspace.placement)"
        replicationFactor = keyspace.placement.replicationFactor
        read = "\(keyspace.readLevel)"
        write = "\(keyspace.writeLevel)"
        ttl = keyspace.timeToLive?.parsableShortDescription
        dropped = keyspace.dropped
    }

    /// The keyspaces of `map` not dropped, `default` first.
    static func all(of map: ClusterMap) -> [KeyspaceDocument] {
        ([map.defaultKeyspace] + map.keyspaces.filter { !$0.dropped }).map { KeyspaceDocument($0, of: map) }
    }
}

private struct KeyspaceListDocument: Encodable {
    var epoch: UInt64
    var keyspaces: [KeyspaceDocument]
}

private struct KeyspaceChangeDocument: Encodable {
    var ok = true
    var epoch: UInt64
    var keyspace: KeyspaceDocument?
}
