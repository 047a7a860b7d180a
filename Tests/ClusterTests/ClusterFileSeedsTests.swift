import Foundation
import KVConfig
import KVCore
import Testing

/// A cluster file's `seeds`: more addresses a client asks for the current map, which `kvctl` sets to
/// the members' after it changes the membership, leaving the rest of the file as it was.
@Suite struct ClusterFileSeedsTests {
    static let file = """
        # our cluster
        cluster-id: c
        replication-factor: 1
        nodes:
          - {id: n1, address: 127.0.0.1:7411}   # the first
          - {id: n2, address: 127.0.0.2:7411}
        """

    @Test func seedsAreReadAndReplacedLeavingTheRestAsItWas() throws {
        #expect(try ClusterFile.seeds(in: Self.file).isEmpty)
        let first = ClusterFile.replacingSeeds(in: Self.file, with: ["127.0.0.3:7411", "[::1]:7411"])
        #expect(first.hasPrefix(Self.file + "\n"), "the file's own lines are kept: \(first)")
        #expect(try ClusterFile.seeds(in: first) == ["127.0.0.3:7411", "[::1]:7411"])
        #expect(try ClusterFile.parse(first) == ClusterFile.parse(Self.file), "the map is the file's")
        // Replaced, not added to; a block list too.
        let second = ClusterFile.replacingSeeds(in: first, with: ["127.0.0.4:7411"])
        #expect(try ClusterFile.seeds(in: second) == ["127.0.0.4:7411"])
        #expect(second.components(separatedBy: "seeds:").count == 2 && second.hasPrefix(Self.file + "\n"))
        let block = Self.file + "\nseeds:\n  - 127.0.0.8:7411\n  - 127.0.0.9:7411\nepoch: 1\n"
        #expect(try ClusterFile.seeds(in: block) == ["127.0.0.8:7411", "127.0.0.9:7411"])
        let replaced = ClusterFile.replacingSeeds(in: block, with: ["127.0.0.5:7411"])
        #expect(try ClusterFile.seeds(in: replaced) == ["127.0.0.5:7411"] && replaced.contains("epoch: 1"))
    }

    @Test(arguments: [
        "seeds: 127.0.0.1:7411", "seeds: [nowhere]", "seeds: [127.0.0.1:7411, {a: b}]",
    ])
    func badSeedsAreRefused(_ line: String) {
        #expect(throws: ConfigError.self) { try ClusterFile.parse(Self.file + "\n" + line + "\n") }
    }
}
