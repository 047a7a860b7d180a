import Foundation
import KVBackup
import KVCore
import Testing

/// `verify(deep: true)`: every node checkpoint read back whole, and a checkpoint whose files are each as
/// the manifest says but which does not open named as a problem.
@Suite struct ReadBackTests {
    typealias Fixture = RestoreRunnerTests

    @Test func everyRecordAndHintOfEveryKeyspaceIsReadBack() throws {
        let scratch = try Fixture.keyspaceBackups()
        let report = try scratch.destination.verify(deep: true)
        #expect(report.ok, "\(report.problems)")
        func held(_ backup: String, _ node: String) -> BackupDestination.ReadBack? {
            report.readBack.first { $0.backup == backup && $0.node == node }
        }
        // The full backup: 100 keys in each keyspace, even ones on n1 and odd ones on n2; no hints yet.
        for node in ["n1", "n2"] {
            #expect(held(Fixture.firstID, node)?.records == [0: 50, 5: 50], "\(node)")
            #expect(held(Fixture.firstID, node)?.hints == 0, "\(node)")
        }
        // The incremental one (since 35): per node `k1` and `only-accounts` written, `k2` deleted, all in
        // `accounts`; nothing in `default` is newer than 35. One hint on each node.
        #expect(held(Fixture.secondID, "n1")?.records[5] == 3)
        #expect(held(Fixture.secondID, "n2")?.records[5] == 3)
        #expect(held(Fixture.secondID, "n1").map { $0.records[0] ?? 0 } == 0)
        #expect(held(Fixture.secondID, "n1")?.hints == 1)
        #expect(held(Fixture.secondID, "n2")?.hints == 1)
        #expect(report.readBack.count == 4)
        // Without `deep`, nothing is read back.
        #expect(try scratch.destination.verify().readBack.isEmpty)
    }

    /// A manifest that leaves a table file out: every file it lists is intact, so the file checks
    /// pass, but the node's checkpoint does not open.
    @Test func aCheckpointMissingATableFileIsAProblemOnlyTheDeepCheckFinds() throws {
        let scratch = try Fixture.keyspaceBackups()
        var manifest = try scratch.destination.manifest(Fixture.firstID)
        let index = try #require(manifest.nodes.firstIndex { $0.node == "n2" })
        let table = try #require(manifest.nodes[index].files.firstIndex { $0.name.hasSuffix(".sst") })
        manifest.nodes[index].files.remove(at: table)
        try scratch.destination.write(manifest)

        #expect(try scratch.destination.verify(backup: Fixture.firstID).ok)
        let report = try scratch.destination.verify(backup: Fixture.firstID, deep: true)
        #expect(report.problems.count == 1, "\(report.problems)")
        let problem = try #require(report.problems.first)
        #expect(problem.node == "n2" && problem.file == "checkpoint")
        #expect(problem.reason.contains("does not read back"), "\(problem.reason)")
        #expect(report.readBack.map(\.node) == ["n1"])
        // The work folder is gone.
        let left = try FileManager.default.contentsOfDirectory(atPath: scratch.destination.root)
        #expect(!left.contains { $0.hasPrefix(".verify-") }, "\(left)")
    }
}
