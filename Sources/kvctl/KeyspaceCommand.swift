import ArgumentParser
import Foundation
import KVClient
import KVConfig
import KVCore
import KVTLS

/// `kvctl keyspace …`: the cluster's keyspaces, each with its own N, levels and TTL, on one ring or
/// split by key range across rings, created, altered, moved and dropped as cluster-map changes (admin
/// certificate), like `kvctl cluster set-placement`.
struct KeyspaceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keyspace",
        abstract: "List, show, create, alter, move or drop keyspaces (changes need an admin certificate).",
        discussion: """
            A keyspace is a namespace of keys with its own placement (N, zones), default read and \
            write levels and default time to live. It lives on one ring of nodes (--ring; the main \
            ring by default) or is split by key range into parts, each on its own ring (--split). \
            Select one for put, get, delete and ring KEY with the global --keyspace NAME (env \
            QUORUMKV_KEYSPACE).
            """,
        subcommands: [List.self, Show.self, Create.self, Alter.self, Move.self, Drop.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the keyspaces of the latest cluster map, one line per part.")

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingFailures(json: global.json) {
                let (map, keys) = try await global.withClient(latestMapAndKeys)
                let rows = KeyspaceDocument.all(of: map).map { $0.counting(keys) }
                if global.json {
                    try printJSON(KeyspaceListDocument(epoch: map.epoch, keyspaces: rows))
                } else {
                    printKeyspaceTable(rows)
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one keyspace's settings and parts.")

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The keyspace's name.") var name: String

        func run() async throws {
            try await reportingFailures(json: global.json) {
                let (map, keys) = try await global.withClient(latestMapAndKeys)
                let parts = map.parts(named: name)
                guard !parts.isEmpty else { throw unknownKeyspace(name, in: map) }
                let row = KeyspaceDocument(parts: parts).counting(keys)
                if global.json {
                    try printJSON(row)
                    return
                }
                print("keyspace   \(row.name) (id \(row.id))")
                print(
                    "placement  \(row.placement) (N=\(row.replicationFactor))"
                        + (row.pendingPlacement.map { ", becoming \($0)" } ?? ""))
                print("read       \(row.read)")
                print("write      \(row.write)")
                print("ttl        \(row.ttl ?? "none")")
                if let keys = row.keys {
                    print("keys       ~\(keys) (estimate: the copies the nodes up count, over N)")
                }
                for part in row.parts {
                    print(
                        "part       from \(part.lowKey.isEmpty ? "the first key" : "'\(part.lowKey)'") (id \(part.id)): "
                            + "ring \(part.ring)" + (part.pendingRing.map { ", moving to ring \($0)" } ?? ""))
                }
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a keyspace (empty: nothing streams).",
            discussion: """
                Defaults: simple:3 (fewer on a smaller cluster), quorum reads and writes, no TTL, the \
                main ring. --rf N is simple:N; --placement takes any rule set-placement takes. \
                --split KEY:RING puts the keys from KEY on (up to the next split) on ring RING ('main': \
                the main ring); the keys below the first split live on --ring. Each part is placed by \
                the same rule on its own ring.
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var settings: KeyspaceSettingOptions

        @Argument(help: "The keyspace's name: letters, digits, '_' or '-', starting with a letter.") var name: String

        @Option(help: "The ring of its keys (of the keys below the first split): 'main' or a ring's name.")
        var ring: String?

        @Option(
            help: ArgumentHelp(
                "Split it at KEY: the keys from KEY on live on ring RING ('main' or a name); repeatable.",
                valueName: "KEY:RING"))
        var split: [String] = []

        func validate() throws {
            try settings.validate()
            if settings.ttl == "none" { throw ValidationError("--ttl none is for alter; omit --ttl instead") }
            if let ring { _ = try parseRing(ring, option: "--ring") }
            for split in split { _ = try parseSplit(split) }
        }

        func run() async throws {
            var keyspaceSettings = settings.settings()
            keyspaceSettings.ring = try ring.map { try parseRing($0, option: "--ring") }
            keyspaceSettings.splits = try split.map(parseSplit)
            try await changeKeyspace(.createKeyspace(name, keyspaceSettings), name: name, global: global)
        }
    }

    struct Alter: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a keyspace's placement (--rf, --placement), default levels or TTL (--ttl none: no TTL).",
            discussion: """
                A new placement streams as set-placement does: nodes that become replicas of the \
                keyspace's ranges receive them, then reads use the new rule. Like set-placement, it \
                waits for the ranges to move (progress on stderr) unless --no-wait. Levels and TTL \
                change at once.
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var settings: KeyspaceSettingOptions
        @OptionGroup var wait: ChangeWaitOptions

        @Argument(help: "The keyspace's name.") var name: String

        func validate() throws {
            try settings.validate()
        }

        func run() async throws {
            try await runChange(.alterKeyspace(name, settings.settings()), global: global, wait: wait)
        }
    }

    struct Move: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move one part of a keyspace to another ring: its new nodes receive it, then own it.",
            discussion: """
                The part is the one starting at --from (the KEY given at create --split; '' for the \
                first part). Writes go to both rings while the new ring's nodes receive the part's \
                ranges; then reads and writes use the new ring only and the old ring's nodes drop \
                what they no longer hold. Like set-placement, it waits for the ranges to move \
                (progress on stderr) unless --no-wait.
                """)

        @OptionGroup var global: GlobalOptions
        @OptionGroup var wait: ChangeWaitOptions

        @Argument(help: "The keyspace's name.") var name: String

        @Option(help: "The low key of the part to move ('' for the first part).") var from: String

        @Option(help: "The ring it moves to: 'main' or a ring's name.") var to: String

        func validate() throws {
            _ = try parseRing(to, option: "--to")
        }

        func run() async throws {
            let change = ClusterChange.moveKeyspaceRange(
                name, lowKey: Array(from.utf8), ring: try parseRing(to, option: "--to"))
            try await runChange(change, global: global, wait: wait)
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

    @Option(help: "Replicas per zone, as NetworkTopologyStrategy: ZONE:COUNT,... (the rule zones:ZONE=COUNT,...).")
    var zones: String?

    /// `--zones dc1:3,dc2:2` as the rule `zones:dc1=3,dc2=2`.
    var zonesRule: String? {
        zones.map {
            "zones:"
                + $0.split(separator: ",").map { $0.replacingOccurrences(of: ":", with: "=") }.joined(separator: ",")
        }
    }

    @Option(help: "The level of reads that name none: one, quorum, all, local_quorum, each_quorum or a count.")
    var read: String?

    @Option(help: "The level of writes that name none (as --read).")
    var write: String?

    @Option(help: "The time to live of writes that name none (250ms, 30s, 30m, 12h, 7d; alter: none removes it).")
    var ttl: String?

    func validate() throws {
        guard [replicationFactor != nil, placement != nil, zones != nil].count(where: { $0 }) <= 1 else {
            throw ValidationError("give one of --rf, --placement and --zones")
        }
        if let zonesRule, Placement(parsing: zonesRule) == nil {
            throw ValidationError("--zones '\(zones ?? "")' is not ZONE:COUNT,... (for example dc1:3,dc2:2)")
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
            placement: replicationFactor.map { .simple(replicas: $0) }
                ?? (placement ?? zonesRule).flatMap(Placement.init(parsing:)),
            readLevel: read.flatMap(ConsistencyLevel.init(parsing:)),
            writeLevel: write.flatMap(ConsistencyLevel.init(parsing:)),
            timeToLive: ttl.map { $0 == "none" ? nil : Duration(parsingShort: $0) })
    }
}

/// A ring as an operator names it: `main` (the main ring, stored empty) or a ring's name.
func parseRing(_ text: String, option: String) throws -> String {
    if text == Keyspace.mainRingName { return "" }
    guard Keyspace.isValidName(text) else {
        throw ValidationError(
            "\(option) '\(text)' is not a ring: '\(Keyspace.mainRingName)' or 1-\(Limits.nameBytesMax) letters, digits, '_' or '-', starting with a letter"
        )
    }
    return text
}

/// `--split KEY:RING`: split at the last ':' (a ring's name has none; a key may).
private func parseSplit(_ text: String) throws -> KeyspaceSplit {
    guard let colon = text.lastIndex(of: ":"), colon != text.startIndex else {
        throw ValidationError("--split '\(text)' is not KEY:RING (e.g. n:east)")
    }
    let ring = try parseRing(String(text[text.index(after: colon)...]), option: "--split")
    return KeyspaceSplit(lowKey: Array(text[..<colon].utf8), ring: ring)
}

/// Makes a keyspace change through the cluster-change path every map change takes
/// (`KVClient.changeCluster`), then says what keyspace `name` is in the decided map.
private func changeKeyspace(_ change: ClusterChange, name: String, global: GlobalOptions) async throws {
    try await reportingFailures(json: global.json) {
        let map = try await global.withClient { client in try await client.changeCluster(change) }
        // The keyspace as decided (for a drop: the dropped parts, the last keyspace of that name).
        let parts = map.parts(named: name)
        let lastFirst = map.keyspaces.last { $0.name == name && $0.lowKey.isEmpty }
        let decided =
            parts.isEmpty ? map.keyspaces.filter { $0.name == name && $0.id >= (lastFirst?.id ?? .max) } : parts
        let document = decided.isEmpty ? nil : KeyspaceDocument(parts: decided)
        if global.json {
            try printJSON(KeyspaceChangeDocument(epoch: map.epoch, keyspace: document))
        } else {
            print(
                "epoch \(map.epoch): \(change)"
                    + (decided.isEmpty ? "" : ": \(decided.map(\.description).joined(separator: "; "))"))
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

/// Prints one line per keyspace part (`keyspace list`, `cluster show`): a keyspace that is not split
/// is one part, from the first key.
func printKeyspaceTable(_ rows: [KeyspaceDocument]) {
    let width = max(8, rows.map(\.name.count).max() ?? 0)
    let fromWidth = max(4, rows.flatMap { $0.parts.map(\.lowKey.count) }.max() ?? 0)
    print(
        "KEYSPACE".padding(toLength: width, withPad: " ", startingAt: 0)
            + "  ID    PLACEMENT             READ          WRITE         TTL    "
            + "FROM".padding(toLength: fromWidth, withPad: " ", startingAt: 0) + "  "
            + "~KEYS".padding(toLength: 10, withPad: " ", startingAt: 0) + "  RING")
    for row in rows {
        for part in row.parts {
            let placement = row.placement + (row.pendingPlacement.map { "→\($0)" } ?? "")
            print(
                row.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                    + String(part.id).padding(toLength: 5, withPad: " ", startingAt: 0) + " "
                    + placement.padding(toLength: 21, withPad: " ", startingAt: 0) + " "
                    + row.read.padding(toLength: 13, withPad: " ", startingAt: 0) + " "
                    + row.write.padding(toLength: 13, withPad: " ", startingAt: 0) + " "
                    + (row.ttl ?? "-").padding(toLength: 6, withPad: " ", startingAt: 0) + " "
                    + (part.lowKey.isEmpty ? "-" : part.lowKey).padding(
                        toLength: fromWidth, withPad: " ", startingAt: 0)
                    + "  " + (part.keys.map(String.init) ?? "-").padding(toLength: 10, withPad: " ", startingAt: 0)
                    + "  " + part.ring + (part.pendingRing.map { " → \($0)" } ?? ""))
        }
    }
}

/// The latest cluster map, and each keyspace part's keys estimated from the nodes' counts
/// (`NodeStatus.keyspaceKeys`) when the certificate is an admin's (the counts come with `Admin`
/// stats); none otherwise.
func latestMapAndKeys(_ client: KVClient) async throws -> (ClusterMap, [UInt32: UInt64]) {
    let map = try await client.latestClusterMap()
    guard client.identity.role == .admin else { return (map, [:]) }
    return (map, NodeStatus.keyspaceKeys(try await client.status(), map: map))
}

/// One keyspace in `--json` output, with its parts (one when it is not split). The default
/// keyspace's levels are `quorum`, what a client uses unless it is configured otherwise. Placement,
/// levels and TTL are the same in every part.
struct KeyspaceDocument: Encodable {
    /// The first part's id.
    var id: UInt32
    var name: String
    var placement: String
    var replicationFactor: Int
    /// The placement being streamed to (`alter --rf/--placement`); nil when it is not changing.
    var pendingPlacement: String?
    var read: String
    var write: String
    /// `30m`; nil: writes do not expire unless they say so.
    var ttl: String?
    var dropped: Bool
    /// The parts by low key, the first from the first key.
    var parts: [PartDocument]
    /// Its keys, estimated (`NodeStatus.keyspaceKeys`: the parts' added up); nil without an admin
    /// certificate, or when no node counted them.
    var keys: UInt64?

    /// One part: the keys from `lowKey` (empty for the first part) up to the next part's, on `ring`.
    struct PartDocument: Encodable {
        var id: UInt32
        /// The low key as text, or hex (`0x…`) when it is not printable.
        var lowKey: String
        /// `main` or a ring's name.
        var ring: String
        /// The ring the part is moving to (`keyspace move`); nil when it is not moving.
        var pendingRing: String?
        /// Its keys, estimated; nil as the keyspace's.
        var keys: UInt64?
    }

    /// The document with the keys `keys` (by part id) estimates.
    func counting(_ keys: [UInt32: UInt64]) -> KeyspaceDocument {
        var document = self
        for index in document.parts.indices { document.parts[index].keys = keys[document.parts[index].id] }
        let counted = document.parts.compactMap(\.keys)
        document.keys = counted.isEmpty ? nil : counted.reduce(0, NodeStatus.saturatingSum)
        return document
    }

    /// The keyspace made of `parts` (by low key, at least one: the first gives the settings).
    init(parts: [Keyspace]) {
        precondition(!parts.isEmpty, "a keyspace has a part")
        let first = parts[0]
        id = first.id
        name = first.name
        placement = "\(first.placement)"
        replicationFactor = first.placement.replicationFactor
        pendingPlacement = first.pendingPlacement.map { "\($0)" }
        read = "\(first.readLevel)"
        write = "\(first.writeLevel)"
        ttl = first.timeToLive?.parsableShortDescription
        dropped = first.dropped
        self.parts = parts.map { part in
            PartDocument(
                id: part.id, lowKey: part.lowKey.isEmpty ? "" : Keyspace.describe(key: part.lowKey),
                ring: Keyspace.ringName(part.ring), pendingRing: part.pendingRing.map(Keyspace.ringName))
        }
    }

    /// The keyspaces of `map` not dropped, `default` first, then by first part's id.
    static func all(of map: ClusterMap) -> [KeyspaceDocument] {
        let names = map.keyspaces.filter { !$0.dropped && $0.lowKey.isEmpty }.sorted { $0.id < $1.id }.map(\.name)
        return ([Keyspace.defaultName] + names).map { KeyspaceDocument(parts: map.parts(named: $0)) }
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
