import Foundation
import KVBackup
import KVClient
import KVCore
import Testing

extension RealProcessTests.FirstHalf {
    /// Real processes: `kvctl restore` rebuilds a 4-node cluster's backups into new clusters of 3 and
    /// 6 nodes, as of the backup's cut and as of a time between two batches of writes, key by key
    /// (deletes included); a restore into a cluster with a node down fails and names it.
    @Suite(.timeLimit(.minutes(5)))
    struct RestoreClusterTests {
        /// What `kvctl restore --json` prints.
        struct RestoreOutput: Decodable {
            var ok: Bool
            var backup: String
            var basesRead: [String]
            var earlierBackupsRead: [String]
            var asOf: UInt64
            var targetNodes: [String]
            var keysRestored: Int
            var tombstonesRestored: Int
            var recordsNewerSkipped: Int
            var batchesSent: Int
        }

        static let firstBatch = 10_000
        static let deletedFirst = Set(stride(from: 0, to: firstBatch, by: 100))
        /// The second batch: new keys, overwrites of first-batch keys, deletes of others.
        static let newKeys = 0..<400
        static let overwritten = 1..<401
        static let deletedLater = 5001..<5101

        static func firstKey(_ index: Int) -> [UInt8] { Array("restore-\(index)".utf8) }
        static func firstValue(_ index: Int) -> [UInt8] {
            Array("first-\(index)-\(String(repeating: "x", count: 40))".utf8)
        }
        static func newKey(_ index: Int) -> [UInt8] { Array("later-\(index)".utf8) }

        /// Runs `body` for every index of `indices`, 64 at a time.
        static func concurrently(
            _ indices: [Int], _ body: @escaping @Sendable (Int) async throws -> Void
        ) async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<64 {
                    group.addTask {
                        for position in stride(from: worker, to: indices.count, by: 64) {
                            try await body(indices[position])
                        }
                    }
                }
                try await group.waitForAll()
            }
        }

        /// Reads every key the test wrote from `cluster` at QUORUM and checks it holds exactly the
        /// first backup's state: the first batch's values, its deletes absent (a tombstone or nothing
        /// on a replica), no key of the second batch.
        static func expectFirstBatchState(_ cluster: ClusterHarness) async throws {
            let client = try cluster.client()
            let admin = try cluster.client(certificate: "admin")
            do {
                try await expectFirstBatchState(
                    client: client, admin: admin, replicas: cluster.replicas(of: "restore-100"))
            } catch {
                await client.close()
                await admin.close()
                throw error
            }
            await client.close()
            await admin.close()
        }

        private static func expectFirstBatchState(client: KVClient, admin: KVClient, replicas: [String]) async throws {
            let mismatches = Mismatches()
            try await concurrently(Array(0..<firstBatch)) { index in
                let read = try await client.get(firstKey(index), consistency: .quorum)
                let expected = deletedFirst.contains(index) ? nil : firstValue(index)
                if read?.value != expected {
                    mismatches.add(
                        "restore-\(index): \(read.map { String(decoding: $0.value, as: UTF8.self) } ?? "absent")")
                }
            }
            try await concurrently(Array(newKeys)) { index in
                if let read = try await client.get(newKey(index), consistency: .quorum) {
                    mismatches.add("later-\(index): \(String(decoding: read.value, as: UTF8.self))")
                }
            }
            #expect(mismatches.all.isEmpty, "\(mismatches.all.count) keys differ: \(mismatches.all.prefix(10))")
            // A deleted key is a tombstone (or nothing) on every replica, never a value.
            #expect(replicas.count == 3)
            for node in replicas {
                let record = try await admin.replicaRecord(firstKey(100), node: node)
                #expect(record == nil || record?.tombstone == true, "\(node): \(String(describing: record))")
            }
        }

        final class Mismatches: @unchecked Sendable {
            private let lock = NSLock()
            private var items: [String] = []
            func add(_ item: String) { lock.withLock { items.append(item) } }
            var all: [String] { lock.withLock { items } }
        }

        @Test func restoresIntoThreeAndSixNodesAsOfTheCutAndATime() async throws {
            let help = try run("kvctl", ["restore", "--help"])
            for option in ["--from", "--backup", "--as-of", "hlc:", "--json", "--concurrency"] {
                #expect(help.stdout.contains(option), "\(help.stdout)")
            }
            #expect(try run("kvctl", ["--help"]).stdout.contains("restore"))
            let source = try ClusterHarness(nodes: 4, firstHost: 21)
            defer { source.tearDown() }
            // Nothing writes behind the test's back.
            source.extraArguments = ["--anti-entropy-interval", "0"]
            try await offThePool { try source.startAll() }
            let destination = source.directory.path + "/backups"

            // The first batch, some of it deleted, then the first backup.
            let client = try source.client()
            try await Self.concurrently(Array(0..<Self.firstBatch)) { index in
                _ = try await client.put(Self.firstKey(index), value: Self.firstValue(index))
            }
            try await Self.concurrently(Array(Self.deletedFirst)) { index in
                _ = try await client.delete(Self.firstKey(index))
            }
            let first = try await offThePool { try BackupClusterTests.backup(source, into: destination) }
            // The wall clock between the batches (the nodes and the test share it), with room either side.
            try await Task.sleep(for: .milliseconds(50))
            let between = BackupTime.iso8601(millis: UInt64(Date().timeIntervalSince1970 * 1000))
            try await Task.sleep(for: .milliseconds(50))

            // The second batch: new keys, overwrites, deletes; then the second backup.
            try await Self.concurrently(Array(Self.newKeys)) { index in
                _ = try await client.put(Self.newKey(index), value: Array("later-value-\(index)".utf8))
            }
            try await Self.concurrently(Array(Self.overwritten)) { index in
                _ = try await client.put(Self.firstKey(index), value: Array("second-\(index)".utf8))
            }
            try await Self.concurrently(Array(Self.deletedLater)) { index in
                _ = try await client.delete(Self.firstKey(index))
            }
            await client.close()
            // Incremental on the first: only the second batch's records (no overlap asked).
            let second = try await offThePool {
                try BackupClusterTests.backup(source, into: destination, ["--overlap", "0"])
            }
            #expect(second.cut > first.cut && second.base == first.id)
            #expect(second.bytesCopied < first.bytesCopied / 2, "first \(first), second \(second)")

            // The first backup into 3 nodes: exactly its state.
            let three = try ClusterHarness(nodes: 3, firstHost: 25)
            defer { three.tearDown() }
            three.extraArguments = ["--anti-entropy-interval", "0"]
            try await offThePool { try three.startAll() }
            let restored = try await offThePool {
                try three.kvctl(
                    ["restore", "--from", destination, "--backup", first.id, "--json"], timeout: .seconds(120))
            }
            expectSuccess(restored)
            let report = try JSONDecoder().decode(RestoreOutput.self, from: Data(restored.stdout.utf8))
            #expect(report.ok && report.backup == first.id && report.asOf == first.cut)
            #expect(report.targetNodes == ["n1", "n2", "n3"])
            #expect(report.keysRestored == Self.firstBatch - Self.deletedFirst.count, "\(report)")
            #expect(report.tombstonesRestored == Self.deletedFirst.count, "\(report)")
            #expect(restored.stderr.contains("restoring backup \(first.id)"), "progress: \(restored.stderr)")
            try await Self.expectFirstBatchState(three)

            // The second backup as of a time between the batches into 6 nodes: the first batch again,
            // the overwritten keys with their first values, from the first backup it builds on.
            let six = try ClusterHarness(nodes: 6, firstHost: 205)
            defer { six.tearDown() }
            six.extraArguments = ["--anti-entropy-interval", "0"]
            try await offThePool { try six.startAll() }
            let asOf = try await offThePool {
                try six.kvctl(["restore", "--from", destination, "--as-of", between, "--json"], timeout: .seconds(120))
            }
            expectSuccess(asOf)
            let asOfReport = try JSONDecoder().decode(RestoreOutput.self, from: Data(asOf.stdout.utf8))
            #expect(asOfReport.backup == second.id && asOfReport.basesRead == [first.id], "\(asOfReport)")
            #expect(asOfReport.earlierBackupsRead.isEmpty, "\(asOfReport)")
            #expect(asOfReport.targetNodes.count == 6)
            #expect(asOfReport.keysRestored == Self.firstBatch - Self.deletedFirst.count, "\(asOfReport)")
            #expect(asOfReport.tombstonesRestored == Self.deletedFirst.count, "\(asOfReport)")
            #expect(asOfReport.recordsNewerSkipped > 0)
            try await Self.expectFirstBatchState(six)

            // Later than the second backup's cut: refused, nothing written.
            let late = try six.kvctl(["restore", "--from", destination, "--as-of", "hlc:\(second.cut + 1)"])
            #expect(late.status == 1 && late.stderr.contains("cut"), "\(late.stderr)")
            // Garbage: a usage error.
            let garbage = try six.kvctl(["restore", "--from", destination, "--as-of", "yesterday"])
            #expect(garbage.status == 64, "\(garbage.stderr)")

            // A target node down: the restore fails and names it.
            three.stop("n3")
            let refused = try await offThePool {
                try three.kvctl(
                    ["restore", "--from", destination, "--backup", first.id, "--timeout", "2"], timeout: .seconds(120))
            }
            #expect(refused.status == 1 && refused.stderr.contains("n3"), "\(refused.stderr)")
        }
    }
}
