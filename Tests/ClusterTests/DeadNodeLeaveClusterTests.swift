import Foundation
import Testing

extension RealProcessTests.FirstHalf {
    /// `kvctl leave` of a node that is dead, with a keyspace of N = 2: the receivers of its ranges had
    /// to compare each with a majority of its old replicas, 2 of 2 with one of them dead, so the change
    /// never ended and blocked every other (a probe found it). They now need N − (N/2 + 1) + 1 (1 of
    /// 2), enough to meet every quorum write (`RangeTransfer.comparisonsNeeded`).
    @Suite(.timeLimit(.minutes(3)))
    struct DeadNodeLeaveClusterTests {
        @Test func aDeadNodeLeavesAClusterWithAKeyspaceOfTwoReplicas() async throws {
            let cluster = try ClusterHarness(hosts: [30, 146, 147, 148], replicationFactor: 3)
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            expectSuccess(try cluster.kvctl(["keyspace", "create", "pairs", "--rf", "2"]))
            for index in 0..<40 {
                expectSuccess(try cluster.kvctl(["put", "pair-\(index)", "v\(index)", "--keyspace", "pairs"]))
            }
            cluster.stop("n4")
            let leave = try await offThePool {
                try cluster.kvctl(["leave", "n4", "--wait-timeout", "90"], timeout: .seconds(100))
            }
            #expect(leave.status == 0, "\(leave.stdout) \(leave.stderr)")
            for index in 0..<40 {
                let read = try cluster.kvctl(["get", "pair-\(index)", "--keyspace", "pairs"])
                #expect(read.stdout == "v\(index)", "pair-\(index): \(read.stderr)")
            }
            // The cluster takes the next change.
            expectSuccess(try cluster.kvctl(["keyspace", "create", "after", "--rf", "2"]))
        }
    }
}
