import Foundation
import KVBackup
import KVClient
import KVCore
import Testing

extension RealProcessTests.FirstHalf {
    /// Real processes: a 4-node cluster holding the default keyspace and `accounts` (the same key
    /// bytes in both, different values) is backed up in full, written to again and backed up
    /// incrementally, then replaced by a new, empty cluster on the same addresses, which lacks
    /// `accounts`: `kvctl restore` creates it and brings back every acknowledged write of both.
    @Suite(.timeLimit(.minutes(5)))
    struct KeyspaceBackupClusterTests {
        static let hosts = [235, 240, 245, 250]
        static let firstBatch = 0..<1_000
        static let secondBatch = 1_000..<1_300
        /// Overwritten in `accounts` alone by the second batch.
        static let overwritten = 0..<100
        /// Deleted in the default keyspace alone by the second batch.
        static let deleted = 500..<550

        struct RestoreOutput: Decodable {
            struct Counts: Decodable {
                var name: String
                var keysRestored: Int
                var tombstonesRestored: Int
            }
            var ok: Bool
            var basesRead: [String]
            var keyspaces: [Counts]
            var keyspacesCreated: [String]
        }

        static func key(_ index: Int) -> [UInt8] { Array("key-\(index)".utf8) }

        static func expected(_ index: Int, in keyspace: String) -> [UInt8]? {
            if keyspace == Keyspace.defaultName {
                return deleted.contains(index) ? nil : Array("default-\(index)".utf8)
            }
            return Array((overwritten.contains(index) ? "accounts-again-\(index)" : "accounts-\(index)").utf8)
        }

        static func write(_ indices: Range<Int>, client: KVClient) async throws {
            let accounts = client.keyspace("accounts")
            try await RestoreClusterTests.concurrently(Array(indices)) { index in
                _ = try await client.put(key(index), value: Array("default-\(index)".utf8))
                _ = try await accounts.put(key(index), value: Array("accounts-\(index)".utf8))
            }
        }

        @Test func backupAndRestoreCarryEveryKeyspace() async throws {
            let destination = try TemporaryDirectory()
            defer { destination.remove() }
            let source = try ClusterHarness(hosts: Self.hosts, replicationFactor: 3)
            var sourceRunning = true
            defer { if sourceRunning { source.tearDown() } }
            source.extraArguments = ["--anti-entropy-interval", "0"]
            try await offThePool { try source.startAll() }
            expectSuccess(
                try await offThePool {
                    try source.kvctl(["keyspace", "create", "accounts", "--rf", "2", "--write", "all"])
                })
            let client = try source.client()
            try await Self.write(Self.firstBatch, client: client)
            let first = try await offThePool {
                try BackupClusterTests.backup(source, into: destination.path, ["--full"])
            }

            // After the full backup: new keys in both, overwrites in accounts, deletes in default.
            try await Self.write(Self.secondBatch, client: client)
            let accounts = client.keyspace("accounts")
            try await RestoreClusterTests.concurrently(Array(Self.overwritten)) { index in
                _ = try await accounts.put(Self.key(index), value: Array("accounts-again-\(index)".utf8))
            }
            try await RestoreClusterTests.concurrently(Array(Self.deleted)) { index in
                _ = try await client.delete(Self.key(index))
            }
            await client.close()
            let second = try await offThePool { try BackupClusterTests.backup(source, into: destination.path) }
            #expect(second.base == first.id, "\(second)")
            let verify = try await offThePool {
                try source.kvctl(["backup", "verify", destination.path], timeout: .seconds(120))
            }
            expectSuccess(verify)
            #expect(verify.stdout.contains("\(second.id): keyspaces default, accounts"), "\(verify.stdout)")
            // Read back whole: the full backup's checkpoints hold every `accounts` write on both of
            // its replicas (written at ALL), and each default write on two or three of its three.
            let deep = try await offThePool {
                try source.kvctl(
                    ["backup", "verify", destination.path, "--backup", first.id, "--deep", "--json"],
                    timeout: .seconds(120))
            }
            expectSuccess(deep)
            struct ReadBack: Decodable {
                var node: String
                var records: [String: Int]
                var hints: Int
            }
            struct Deep: Decodable {
                var ok: Bool
                var readBack: [ReadBack]
            }
            let read = try JSONDecoder().decode(Deep.self, from: Data(deep.stdout.utf8))
            #expect(read.ok && read.readBack.count == 4, "\(deep.stdout)")
            let accountsHeld = read.readBack.reduce(0) { $0 + ($1.records["accounts"] ?? 0) }
            let defaultHeld = read.readBack.reduce(0) { $0 + ($1.records["default"] ?? 0) }
            #expect(accountsHeld == 2 * Self.firstBatch.count, "\(deep.stdout)")
            #expect(
                (2 * Self.firstBatch.count...3 * Self.firstBatch.count).contains(defaultHeld), "\(deep.stdout)")

            // The cluster is gone; a new, empty one on the same addresses, without accounts.
            source.tearDown()
            sourceRunning = false
            let target = try ClusterHarness(hosts: Self.hosts, replicationFactor: 3)
            defer { target.tearDown() }
            target.extraArguments = ["--anti-entropy-interval", "0"]
            try await offThePool { try target.startAll() }
            let restored = try await offThePool {
                try target.kvctl(["restore", "--from", destination.path, "--json"], timeout: .seconds(180))
            }
            expectSuccess(restored)
            let report = try JSONDecoder().decode(RestoreOutput.self, from: Data(restored.stdout.utf8))
            #expect(report.ok && report.basesRead == [first.id], "\(restored.stdout)")
            #expect(report.keyspacesCreated == ["accounts"], "\(restored.stdout)")
            let all = Self.firstBatch.count + Self.secondBatch.count
            #expect(report.keyspaces.map(\.name) == ["default", "accounts"])
            #expect(report.keyspaces.first?.keysRestored == all - Self.deleted.count, "\(restored.stdout)")
            #expect(report.keyspaces.first?.tombstonesRestored == Self.deleted.count, "\(restored.stdout)")
            #expect(report.keyspaces.last?.keysRestored == all, "\(restored.stdout)")

            // Every acknowledged write of both keyspaces, read at QUORUM from the new cluster.
            let reader = try target.client()
            let map = try await reader.latestClusterMap()
            #expect(map.keyspace(named: "accounts")?.placement == .simple(replicas: 2))
            let mismatches = RestoreClusterTests.Mismatches()
            for name in [Keyspace.defaultName, "accounts"] {
                let keyspace = reader.keyspace(name)
                try await RestoreClusterTests.concurrently(Array(0..<all)) { index in
                    let read = try await keyspace.get(Self.key(index), consistency: .quorum)
                    if read?.value != Self.expected(index, in: name) {
                        mismatches.add(
                            "\(name) key-\(index): \(read.map { String(decoding: $0.value, as: UTF8.self) } ?? "absent")"
                        )
                    }
                }
            }
            await reader.close()
            #expect(mismatches.all.isEmpty, "\(mismatches.all.count) keys differ: \(mismatches.all.prefix(10))")
        }
    }
}
