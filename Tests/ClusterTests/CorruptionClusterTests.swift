import Foundation
import KVStorage
import Testing

extension RealProcessTests.SecondHalf {
    /// A damaged data file under a real `kvd`: reads of the damaged keys fail with a clear error naming
    /// the corruption, never with other bytes, and the node goes on serving the rest.
    @Suite(.timeLimit(.minutes(3)))
    struct CorruptionClusterTests {
        @Test func damagedTableIsRefusedNotServed() throws {
            let node = try NodeHarness(host: 107)
            defer { node.tearDown() }
            try node.start()
            let clientFlags = [
                "--endpoints", node.endpoint, "--ca", "\(node.certs)/ca.pem", "--cert", "\(node.certs)/client.pem",
                "--key", "\(node.certs)/client-key.pem", "--concurrency", "10", "--value-bytes", "300",
            ]
            // kvbench loads bench-0...bench-1999 before its (one-request) run.
            expectSuccess(
                try run("kvbench", clientFlags + ["--workload", "get", "--keys", "2000", "--requests-max", "1"]))
            node.stop(signal: SIGTERM)

            // Put the data in a table file (the node left it in the log), then damage the table.
            let store = try RocksDBStore(directory: node.data, durability: .sync)
            try store.flush()
            store.close()
            let damaged = try StorageFaults.damageLargestTable(in: node.data)
            #expect(damaged.size > 16_384, "the table is too small to damage its middle: \(damaged)")

            try node.start()
            // Random reads over every key: some meet the damaged block.
            let reads = try run(
                "kvbench",
                clientFlags + ["--workload", "get", "--skip-load", "--keys", "2000", "--requests-max", "4000"])
            #expect(reads.status == 1, "reads of damaged keys must fail: \(reads)")
            #expect(
                reads.stderr.lowercased().contains("corrupt"), "the error must name the corruption: \(reads.stderr)")
            // The rest is served, and what is served is what was written (kvbench's value).
            let ok = try node.kvctl(["status"])
            expectSuccess(ok)
            var served = 0
            for index in 0..<40 {
                let got = try node.kvctl(["get", "bench-\(index)", "--json"])
                if got.status == 0 {
                    let document = try JSONSerialization.jsonObject(with: Data(got.stdout.utf8)) as? [String: Any]
                    #expect(document?["value"] as? String == String(repeating: "x", count: 300))
                    served += 1
                } else {
                    #expect(got.stderr.lowercased().contains("corrupt"), "bench-\(index): \(got.stderr)")
                }
            }
            #expect(served > 0, "the node must go on serving the keys that are intact")
            // The operator sees it in the node's log too.
            #expect(node.log(tail: 200).lowercased().contains("corrupt"), "\(node.log(tail: 5))")
        }
    }
}
