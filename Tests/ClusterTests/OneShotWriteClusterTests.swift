import Foundation
import Testing

extension RealProcessTests.FirstHalf {
    /// N replicas on N nodes (no fallback to hand a write off to): a one-shot `kvctl put --consistency
    /// one` exited at the first acknowledgement and closed its connections with the write still on its
    /// way to the other replicas, which then never had it (nothing hinted, nothing marked for
    /// anti-entropy): a probe on 3 nodes left 4 of 10 keys on fewer than 3. The SDK now waits, before
    /// it closes, for every replica to answer (`WriteOperation.isSettled`).
    @Suite(.timeLimit(.minutes(2)))
    struct OneShotWriteClusterTests {
        @Test func aWriteAtOneReachesEveryReplicaBeforeKvctlExits() async throws {
            let cluster = try ClusterHarness(hosts: [20, 29, 110], replicationFactor: 3)
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            var missing: [String] = []
            for index in 0..<20 {
                expectSuccess(try cluster.kvctl(["put", "one-\(index)", "v\(index)", "--consistency", "one"]))
                for node in ["n1", "n2", "n3"] {
                    let read = try cluster.kvctl(["get", "one-\(index)", "--node", node])
                    if read.stdout != "v\(index)" { missing.append("one-\(index) on \(node)") }
                }
            }
            #expect(missing.isEmpty, "\(missing)")
        }
    }
}
