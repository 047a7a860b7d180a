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
}
