import Foundation
import KVClient
import KVCore
import Testing

/// One row of the tolerance table: replication factor, read and write quorums, cluster size, and how
/// many replica failures reads and writes both survive.
struct QuorumRow: Sendable, CustomTestStringConvertible {
    var n: Int
    var r: Int
    var w: Int
    var nodes: Int
    var tolerated: Int
    var firstHost: Int

    var testDescription: String { "N=\(n) R=\(r) W=\(w) on \(nodes) nodes tolerates \(tolerated)" }
}

let quorumRows: [QuorumRow] = [
    QuorumRow(n: 3, r: 3, w: 1, nodes: 4, tolerated: 0, firstHost: 151),
    QuorumRow(n: 3, r: 2, w: 2, nodes: 4, tolerated: 1, firstHost: 156),
    QuorumRow(n: 3, r: 1, w: 1, nodes: 4, tolerated: 2, firstHost: 161),
    QuorumRow(n: 3, r: 1, w: 2, nodes: 4, tolerated: 1, firstHost: 166),
    // The seed's tuning examples: N=5 on 6 nodes.
    QuorumRow(n: 5, r: 3, w: 3, nodes: 6, tolerated: 2, firstHost: 171),
    QuorumRow(n: 5, r: 2, w: 2, nodes: 6, tolerated: 3, firstHost: 178),
]

/// Real processes: kill replicas of one key set one by one and check, after each kill, that a read at
/// R and a write at W succeed exactly while enough replicas are alive, and fail fast with a quorum
/// error naming the counts once they are not.
extension RealProcessTests.FirstHalf {
    @Suite(.timeLimit(.minutes(5)))
    struct QuorumTableTests {
        @Test(arguments: quorumRows)
        func replicaFailuresToleratedMatchTheTable(_ row: QuorumRow) async throws {
            let cluster = try ClusterHarness(nodes: row.nodes, firstHost: row.firstHost, replicationFactor: row.n)
            defer { cluster.tearDown() }
            try cluster.startAll()
            let client = try cluster.client(timeout: .seconds(20))

            // A key set that shares one preference list, so that killing its replicas affects every key.
            let candidates = (0..<2000).map { "k\($0)" }
            let replicas = try cluster.replicas(of: candidates[0])
            let keys = try candidates.filter { try cluster.replicas(of: $0) == replicas }.prefix(10)
            #expect(keys.count >= 2, "no key set shares a preference list")
            for key in keys {
                try await client.put(Array(key.utf8), value: Array("initial".utf8), consistency: .all)
            }

            var survivedBoth = -1
            for failures in 0...(row.tolerated + 1) {
                if failures > 0 {
                    cluster.stop(replicas[failures - 1], signal: SIGKILL)
                }
                let alive = row.n - failures
                var writesWorked = true
                var readsWorked = true
                for key in keys {
                    let value = Array("after-\(failures)".utf8)
                    let started = ContinuousClock.now
                    do {
                        try await client.put(Array(key.utf8), value: value, consistency: .count(row.w))
                        #expect(alive >= row.w, "a write at W=\(row.w) succeeded with \(alive) replicas alive")
                    } catch let error as KVClientError {
                        writesWorked = false
                        #expect(alive < row.w, "write at W=\(row.w) failed with \(alive) alive: \(error)")
                        #expect(error.description.contains("needs \(row.w) of \(row.n)"), "\(error)")
                        #expect(
                            ContinuousClock.now - started < .seconds(10), "must fail fast, not wait for the deadline")
                    }
                    let readStarted = ContinuousClock.now
                    do {
                        let found = try await client.get(Array(key.utf8), consistency: .count(row.r))
                        #expect(alive >= row.r, "a read at R=\(row.r) succeeded with \(alive) replicas alive")
                        if row.r + row.w > row.n && alive >= row.w {
                            #expect(found?.value == value, "R+W>N: the read must see the write just acknowledged")
                        }
                    } catch let error as KVClientError {
                        readsWorked = false
                        #expect(alive < row.r, "read at R=\(row.r) failed with \(alive) alive: \(error)")
                        #expect(error.description.contains("needs \(row.r) of \(row.n)"), "\(error)")
                        #expect(
                            ContinuousClock.now - readStarted < .seconds(10),
                            "must fail fast, not wait for the deadline")
                    }
                }
                if writesWorked && readsWorked {
                    survivedBoth = failures
                }
            }
            #expect(survivedBoth == row.tolerated)
            await client.close()
        }
    }
}
