import Foundation
import Testing

extension RealProcessTests.FirstHalf {
    /// Every node the cluster file lists leaves: a client started from the file asked only them for
    /// the map and found nothing (`kvctl get` failed, `kvctl status` called a healthy cluster down).
    /// `kvctl join` and `leave` now write the members' addresses into the file's `seeds`, which the
    /// client asks too.
    @Suite(.timeLimit(.minutes(3)))
    struct SeedsClusterTests {
        @Test func aClientFromTheFileFindsTheClusterAfterEveryListedNodeLeft() async throws {
            let cluster = try ClusterHarness(hosts: [20, 29, 110], joiners: 1, replicationFactor: 1)
            defer { cluster.tearDown() }
            try await offThePool {
                try cluster.start("n1")
                try cluster.start("n2")
            }
            for index in 0..<20 { expectSuccess(try cluster.kvctl(["put", "seed-\(index)", "v\(index)"])) }
            // Not running yet: the join is refused before anything is decided (a join of a node that
            // was not there never ended, and refused every other change).
            let early = try cluster.kvctl([
                "join", "--node", "n3", "--address", cluster.address("n3"), "--wait-timeout", "5",
            ])
            #expect(early.status == 1 && early.stderr.contains("n3 does not answer at"), "\(early)")
            try await offThePool { try cluster.start("n3") }
            let join = try cluster.kvctl(["join", "--node", "n3", "--address", cluster.address("n3")])
            #expect(join.status == 0, "\(join.stderr)")
            #expect(join.stderr.contains("seeds set to the members' addresses"), "\(join.stderr)")
            for node in ["n1", "n2"] {
                let leave = try await offThePool { try cluster.kvctl(["leave", node, "--wait-timeout", "90"]) }
                #expect(leave.status == 0, "\(leave.stderr)")
                cluster.stop(node, signal: SIGTERM)
            }
            let file = try String(contentsOfFile: cluster.clusterFile, encoding: .utf8)
            #expect(file.contains("seeds: [\"\(cluster.address("n3"))\"]"), "\(file)")
            for index in 0..<20 {
                let read = try cluster.kvctl(["get", "seed-\(index)"])
                #expect(read.stdout == "v\(index)", "seed-\(index): \(read.stderr)")
            }
            let status = try cluster.kvctl(["status"])
            #expect(status.status == 0 && status.stdout.contains("healthy"), "\(status.stdout) \(status.stderr)")
        }
    }
}
