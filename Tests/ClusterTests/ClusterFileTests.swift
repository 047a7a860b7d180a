import Foundation
import KVConfig
import KVCore
import Synchronization
import Testing

/// `cluster.yaml`'s zones and placement rule (issue 20).
@Suite struct ClusterFileTests {
    static let zoned = """
        cluster-id: zoned
        placement: spread:3/1
        tokens-per-node: 8
        nodes:
          - {id: n1, address: 127.0.0.1:7411, zone: a}
          - {id: n2, address: 127.0.0.2:7411, zone: b}
          - {id: n3, address: 127.0.0.3:7411, zone: c}
          - {id: n4, address: 127.0.0.4:7411, zone: a}
        """

    @Test func zonesAndTheRuleAreReadAndWrittenBack() throws {
        let map = try ClusterFile.parse(Self.zoned)
        #expect(map.placement == .spread(replicas: 3, perZone: 1) && map.replicationFactor == 3)
        #expect(map.nodes.map(\.zone) == ["a", "b", "c", "a"])
        let ring = try map.ring()
        for token in ring.tokens {
            #expect(Set(ring.preferenceList(for: Token(token)).map { map.node($0)!.zone }).count == 3)
        }
        // What `kvctl` writes for a fresh client reads back as the same map.
        #expect(try ClusterFile.parse(ClusterFile.render(map)) == map)
        // A file without zones is what it always was.
        let plain = try ClusterFile.parse("nodes:\n  - {id: n1, address: 127.0.0.1:7411}\n")
        #expect(plain.placement == .simple(replicas: 1) && plain.nodes[0].zone == "")
        #expect(!ClusterFile.render(plain).contains("placement"))
    }

    @Test(arguments: [
        ("placement: spread:3", "is not simple:N"),
        ("placement: zones:a=2,d=1", "zone \"d\" has 0 nodes"),
        ("replication-factor: 2\nplacement: spread:3/1", "disagrees with placement"),
        ("placement: zones:a=1,b=1,c=1,a=1", "is not simple:N"),
    ])
    func aRuleTheNodesCannotMeetIsAClearError(_ setting: String, _ reason: String) throws {
        let text = Self.zoned.replacingOccurrences(of: "placement: spread:3/1", with: setting)
        let error = try #require(throws: ConfigError.self) { try ClusterFile.parse(text) }
        #expect(error.description.contains(reason), "\(error)")
    }

    /// A file of the wrong shape names the setting and what it should be (`YAMLErrors`), not Swift's
    /// `DecodingError` with its debug description.
    @Test(arguments: [
        (
            "replication-factor: 99999999999999999999\nnodes:\n  - {id: n1, address: 127.0.0.1:1}\n",
            "'replication-factor': expected a whole number (in range)"
        ),
        ("epoch: -3\nnodes:\n  - {id: n1, address: 127.0.0.1:1}\n", "'epoch': expected a whole number (in range)"),
        ("nodes:\n  - id: n1\n", "'nodes[0].address' is missing"),
        ("nodes:\n  - {id: [1, 2], address: 127.0.0.1:1}\n", "'nodes[0].id': expected a single value, found a list"),
        ("nodes: 5\n", "'nodes': expected a list"),
        ("nodes:\n  - 7\n", "'nodes[0]': expected a mapping"),
    ])
    func aFileOfTheWrongShapeNamesTheSetting(_ text: String, _ reason: String) throws {
        let error = try #require(throws: ConfigError.self) { try ClusterFile.parse(text, source: "c.yaml") }
        #expect(error.description == "c.yaml: \(reason)")
    }
}

/// `cluster.yaml`'s keyspaces (issue 20): what `kvctl` renders for a fresh client reads back as the
/// same keyspaces, dropped ones included (their ids are never given again).
@Suite struct ClusterFileKeyspaceTests {
    static let keyspaces = """
        keyspaces:
          - {id: 1, name: cache, placement: simple:3, read: one, write: one, ttl: 30m}
          - {id: 2, name: accounts, placement: "simple:4", read: 3, write: quorum}
          - {id: 3, name: cache, placement: simple:2, dropped: true}
        """

    @Test func keyspacesAreReadAndWrittenBack() throws {
        let map = try ClusterFile.parse(
            ClusterFileTests.zoned.replacingOccurrences(of: "spread:3/1", with: "simple:3") + "\n" + Self.keyspaces)
        #expect(map.keyspaces.map(\.name) == ["cache", "accounts", "cache"])
        let cache = try #require(map.keyspace(named: "cache"))
        #expect(cache.id == 1 && cache.placement == .simple(replicas: 3) && cache.readLevel == .one)
        #expect(cache.writeLevel == .one && cache.timeToLive == .seconds(1800))
        let accounts = try #require(map.keyspace(named: "accounts"))
        #expect(accounts.readLevel == .count(3) && accounts.writeLevel == .quorum && accounts.timeToLive == nil)
        #expect(map.keyspaces[2].dropped && map.keyspace(id: 3) == nil)
        #expect(try map.ring(of: accounts).replicationFactor == 4)
        // A client starting from the rendered file knows every keyspace as the map had it.
        #expect(try ClusterFile.parse(ClusterFile.render(map)) == map)

        // A map grown by changes, as `kvctl` writes it out.
        var grown = try map.applying(
            .createKeyspace("sessions", KeyspaceSettings(timeToLive: .some(.milliseconds(1500)))))
        grown = try grown.applying(.dropKeyspace("accounts"))
        let rendered = ClusterFile.render(grown)
        #expect(rendered.contains("ttl: 1500ms") && rendered.contains("dropped: true"))
        let read = try ClusterFile.parse(rendered)
        #expect(read.keyspaces == grown.keyspaces && read.keyspace(named: "sessions")?.id == 4)
        // No keyspaces: the file is what it always was.
        #expect(!ClusterFile.render(try ClusterFile.parse(ClusterFileTests.zoned)).contains("keyspaces"))
    }

    @Test(arguments: [
        ("{id: 1, name: 9lives, placement: simple:3}", "not a keyspace name"),
        ("{id: 1, name: a, placement: simple:3}\n  - {id: 1, name: b, placement: simple:3}", "id 1 is taken"),
        ("{id: 0, name: a, placement: simple:3}", "id 0 is taken or not in"),
        ("{id: 1, name: a, placement: simple:3}\n  - {id: 2, name: a, placement: simple:3}", "listed twice"),
        ("{id: 1, name: default, placement: simple:3}", "not listed"),
        ("{id: 1, name: a, placement: simple:9}", "keyspace 'a'"),
        ("{id: 1, name: a, placement: simple:3, read: 4}", "keyspace 'a'"),
        ("{id: 1, name: a, placement: simple:3, write: most}", "write 'most' is not"),
        ("{id: 1, name: a, placement: simple:3, ttl: 11y}", "ttl '11y'"),
        ("{id: 1, name: a, placement: simple:3, ttl: 4000d}", "ttl '4000d'"),
    ])
    func aKeyspaceTheClusterCannotHaveIsAClearError(_ entry: String, _ reason: String) throws {
        let text =
            ClusterFileTests.zoned.replacingOccurrences(of: "spread:3/1", with: "simple:3") + "\nkeyspaces:\n  - "
            + entry
        let error = try #require(throws: ConfigError.self) { try ClusterFile.parse(text) }
        #expect(error.description.contains(reason), "\(error)")
    }
}

/// `cluster.yaml`'s rings and split keyspaces (issue 20): nodes' rings, each balanced on its own, and
/// keyspace parts (id, low key, ring, pending ring) read and written back.
@Suite struct ClusterFileRingTests {
    static let rings = """
        cluster-id: rings
        tokens-per-node: 8
        nodes:
          - {id: n1, address: 127.0.0.1:7411}
          - {id: n2, address: 127.0.0.2:7411, ring: main}
          - {id: n3, address: 127.0.0.3:7411}
          - {id: n4, address: 127.0.0.4:7411, ring: east}
          - {id: n5, address: 127.0.0.5:7411, ring: east}
          - {id: n6, address: 127.0.0.6:7411, ring: east}
        keyspaces:
          - {id: 1, name: users, placement: simple:3}
          - {id: 2, name: users, placement: simple:3, from: n, ring: east, pending-ring: main}
          - {id: 3, name: logs, placement: simple:3, ring: east}
          - {id: 4, name: blobs, placement: simple:2, pending-placement: simple:3}
          - {id: 5, name: blobs, placement: simple:2, pending-placement: simple:3, from-hex: "00ff", ring: east}
        """

    @Test func ringsAndPartsAreReadAndWrittenBack() throws {
        let map = try ClusterFile.parse(Self.rings)
        #expect(map.nodes.map(\.ring) == ["", "", "", "east", "east", "east"])
        #expect(map.ringNames == ["", "east"])
        // Each ring balanced on its own: the east ring's tokens are those of a ring of its nodes alone.
        var east: [RingNode] = []
        for node in map.nodes where node.ring == "east" {
            #expect(node.tokens == TokenAllocator.tokensForJoiningNode(node.id, existing: east, tokensPerNode: 8))
            east.append(node.ringNode)
        }
        let users = map.parts(named: "users")
        #expect(users.map(\.id) == [1, 2] && users.map(\.lowKey) == [[], Array("n".utf8)])
        #expect(users.map(\.ring) == ["", "east"] && users.map(\.pendingRing) == [nil, ""])
        #expect(map.keyspace(named: "logs")?.ring == "east")
        let blobs = map.parts(named: "blobs")
        #expect(
            blobs.map(\.lowKey) == [[], [0, 0xff]] && blobs.allSatisfy { $0.pendingPlacement == .simple(replicas: 3) })
        #expect(map.keyspace(named: "users", forKey: Array("zoe".utf8))?.id == 2)
        // A client starting from the rendered file knows every part as the map had it.
        let rendered = ClusterFile.render(map)
        #expect(rendered.contains("ring: east") && rendered.contains("pending-ring: main"))
        #expect(rendered.contains("from: \"n\"") && rendered.contains("from-hex: \"00ff\""))
        #expect(try ClusterFile.parse(rendered) == map)

        // A map grown by changes, as `kvctl` writes it out: a split made by create, a part moved.
        let grown = try map.applying(
            .createKeyspace(
                "events",
                KeyspaceSettings(
                    ring: "east",
                    splits: [
                        KeyspaceSplit(lowKey: Array("2026-".utf8), ring: ""),
                        KeyspaceSplit(lowKey: Array("0x\"q".utf8), ring: "east"),
                    ])))
        let read = try ClusterFile.parse(ClusterFile.render(grown))
        #expect(read.keyspaces == grown.keyspaces && read.parts(named: "events").count == 3)
    }

    @Test(arguments: [
        ("  - {id: 7, address: 127.0.0.7:7411, ring: \"9x\"}", "", "ring '9x' is not"),
        ("", "  - {id: 9, name: a, placement: simple:3, ring: west}", "keyspace 'a' on ring west"),
        ("", "  - {id: 9, name: a, placement: simple:3, from: b}", "no first part"),
        (
            "",
            "  - {id: 9, name: a, placement: simple:3}\n  - {id: 10, name: a, placement: simple:3, from: b}"
                + "\n  - {id: 11, name: a, placement: simple:3, from: b, ring: east}", "two parts from 'b'"
        ),
        (
            "", "  - {id: 9, name: a, placement: simple:3}\n  - {id: 10, name: a, placement: simple:2, from: b}",
            "same placement"
        ),
        ("", "  - {id: 9, name: a, placement: simple:3, from: \"\"}", "1-"),
        ("", "  - {id: 9, name: a, placement: simple:3, from-hex: zz}", "not hex bytes"),
        ("", "  - {id: 9, name: a, placement: simple:3, pending-ring: west}", "keyspace 'a' on ring west"),
    ])
    func aRingOrPartTheClusterCannotHaveIsAClearError(_ node: String, _ keyspace: String, _ reason: String) throws {
        var text = Self.rings
        if !node.isEmpty {
            text = text.replacingOccurrences(of: "keyspaces:", with: node + "\nkeyspaces:")
        }
        text += "\n" + keyspace
        let error = try #require(throws: ConfigError.self) { try ClusterFile.parse(text) }
        #expect(error.description.contains(reason), "\(error)")
    }
}

/// Every `kvctl` command parses its own options: two options of one name (a command's and the global
/// options') only fail when that command runs, so each command's help is asked for.
@Suite struct KvctlCommandTreeTests {
    /// The subcommand names a help text lists.
    static func subcommands(_ help: String) -> [String] {
        guard let start = help.range(of: "SUBCOMMANDS:") else { return [] }
        return help[start.upperBound...].split(separator: "\n").compactMap { line in
            // Names are indented by exactly two spaces; wrapped descriptions by more.
            guard line.hasPrefix("  "), !line.hasPrefix("   "), let name = line.split(separator: " ").first else {
                return nil
            }
            return String(name)
        }
    }

    @Test func everyCommandsHelpParses() throws {
        var checked = 0
        var level: [[String]] = [[]]
        // One level of the tree at a time, its commands side by side.
        while !level.isEmpty && level[0].count < 3 {
            let helps = Mutex<[Int: CommandResult]>([:])
            let paths = level
            DispatchQueue.concurrentPerform(iterations: paths.count) { index in
                let help = try? run("kvctl", paths[index] + ["--help"])
                helps.withLock { $0[index] = help }
            }
            var next: [[String]] = []
            for (index, path) in paths.enumerated() {
                let help = helps.withLock { $0[index] }
                #expect(
                    help?.status == 0, "kvctl \(path.joined(separator: " ")) --help: \(help?.stderr ?? "did not run")")
                checked += 1
                for name in Self.subcommands(help?.stdout ?? "") where name != "help" { next.append(path + [name]) }
            }
            level = next
        }
        #expect(checked > 25, "only \(checked) commands found")
    }

    /// The keyspace commands and the global `--keyspace`, and their usage errors (exit 64, before any
    /// node is asked).
    @Test func keyspaceCommandsAndOption() throws {
        let help = try run("kvctl", ["keyspace", "--help"])
        #expect(Self.subcommands(help.stdout).prefix(6) == ["list", "show", "create", "alter", "move", "drop"])
        #expect(try run("kvctl", ["join", "--help"]).stdout.contains("--ring"))
        let create = try run("kvctl", ["keyspace", "create", "--help"]).stdout
        #expect(create.contains("--split <KEY:RING>") && create.contains("--ring"))
        let move = try run("kvctl", ["keyspace", "move", "--help"]).stdout
        #expect(move.contains("--from") && move.contains("--to") && move.contains("--no-wait"))
        #expect(try run("kvctl", ["keyspace", "alter", "--help"]).stdout.contains("--no-wait"))
        for path in [["put"], ["get"], ["delete"], ["ring"], ["keyspace", "list"]] {
            #expect(try run("kvctl", path + ["--help"]).stdout.contains("--keyspace"), "\(path)")
        }
        #expect(try run("kvctl", ["keyspace", "drop", "--help"]).stdout.contains("--force"))
        for (arguments, reason) in [
            (
                ["keyspace", "create", "a", "--rf", "3", "--placement", "simple:3"],
                "one of --rf, --placement and --zones"
            ),
            (["keyspace", "create", "a", "--zones", "dc1"], "--zones 'dc1' is not ZONE:COUNT"),
            (["keyspace", "create", "a", "--read", "most"], "--read must be"),
            (["keyspace", "alter", "a", "--ttl", "5q"], "--ttl must be"),
            (["keyspace", "create", "a", "--ttl", "none"], "--ttl none is for alter"),
            (["keyspace", "create", "a", "--rf", "0"], "--rf must be"),
            (["keyspace", "create", "a", "--split", "n"], "is not KEY:RING"),
            (["keyspace", "create", "a", "--split", "n:9x"], "--split '9x' is not a ring"),
            (["keyspace", "create", "a", "--ring", "-"], "--ring '-' is not a ring"),
            (["keyspace", "move", "a", "--from", "n", "--to", "a b"], "--to 'a b' is not a ring"),
            (["join", "--node", "n9", "--address", "127.0.0.9:7411", "--ring", "?"], "--ring '?' is not a ring"),
        ] {
            let result = try run("kvctl", arguments)
            #expect(result.status == 64 && result.stderr.contains(reason), "\(arguments): \(result.stderr)")
        }
    }
}
