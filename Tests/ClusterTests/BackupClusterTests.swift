import Foundation
import KVBackup
import KVClient
import KVCore
import Testing

extension RealProcessTests.FirstHalf {
    /// Real processes: `kvctl backup` copies every node's checkpoint into a destination, `verify` checks
    /// it, a second backup copies no table file again, and the nodes keep no checkpoint afterwards.
    @Suite(.timeLimit(.minutes(5)))
    struct BackupClusterTests {
        /// What `kvctl backup --json` prints.
        struct BackupOutput: Decodable {
            var ok: Bool
            var id: String
            var cut: UInt64
            var nodes: Int
            var filesCopied: Int
            var filesSkipped: Int
            var filesResumed: Int
            var tableFilesCopied: Int
            var tableFilesSkipped: Int
            var bytesCopied: UInt64
            var base: String?
        }

        static func backup(_ cluster: ClusterHarness, into destination: String, _ extra: [String] = []) throws
            -> BackupOutput
        {
            let result = try cluster.kvctl(["backup", "--dest", destination, "--json"] + extra, timeout: .seconds(180))
            expectSuccess(result)
            return try JSONDecoder().decode(BackupOutput.self, from: Data(result.stdout.utf8))
        }

        /// The checkpoints a node holds now (folders under `<data>/checkpoints`).
        static func checkpoints(_ cluster: ClusterHarness, _ id: String) -> [String] {
            (try? FileManager.default.contentsOfDirectory(atPath: "\(cluster.directory.path)/\(id)/checkpoints")) ?? []
        }

        @Test func backupVerifyIncrementalAndCorruption() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 125)
            defer { cluster.tearDown() }
            // Nothing writes behind the test's back between the two backups.
            cluster.extraArguments = ["--anti-entropy-interval", "0"]
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client()
            for index in 0..<400 {
                _ = try await client.put(Array("backup-\(index)".utf8), value: Array("value-\(index)".utf8))
            }
            await client.close()
            let destination = cluster.directory.path + "/backup-destination"

            let first = try await offThePool { try Self.backup(cluster, into: destination) }
            #expect(first.ok && first.nodes == 4)
            #expect(first.filesCopied > 0 && first.tableFilesCopied >= 4, "\(first)")
            for id in cluster.ids {
                #expect(Self.checkpoints(cluster, id).isEmpty, "\(id) still holds checkpoints after the backup")
            }
            let manifest = try BackupDestination(root: destination).manifest(first.id)
            #expect(manifest.nodes.map(\.node).sorted() == cluster.ids)
            #expect(manifest.cut == manifest.nodes.map(\.hlc).min() && manifest.cut == first.cut)
            #expect(manifest.clusterMap.nodes.count == 4)
            // Every node's data is in table files (the checkpoint flushed its memtables).
            for node in manifest.nodes {
                #expect(node.files.contains { $0.isTableFile }, "\(node.node): \(node.files.map(\.name))")
            }

            let verify = try run("kvctl", ["backup", "verify", destination])
            expectSuccess(verify)

            // Unchanged cluster: the second backup builds on the first, and no node has a record newer
            // than its cut (no overlap asked), so it copies no table file and hardly any bytes.
            let second = try await offThePool { try Self.backup(cluster, into: destination, ["--overlap", "0"]) }
            #expect(second.base == first.id, "\(second)")
            #expect(second.tableFilesCopied == 0, "\(second)")
            #expect(second.bytesCopied < first.bytesCopied / 4, "\(second)")
            #expect(second.id != first.id)
            for id in cluster.ids { #expect(Self.checkpoints(cluster, id).isEmpty) }
            // A full one: every table file is in the destination already, none copied again.
            let third = try await offThePool { try Self.backup(cluster, into: destination, ["--full"]) }
            #expect(third.base == nil && third.tableFilesCopied == 0, "\(third)")
            #expect(third.tableFilesSkipped >= first.tableFilesCopied, "\(third)")
            let list = try run("kvctl", ["backup", "list", destination, "--json"])
            expectSuccess(list)
            #expect(list.stdout.contains(first.id) && list.stdout.contains(second.id) && list.stdout.contains(third.id))
            // `--json` after the command's own arguments is still the global flag: one JSON document.
            let listed = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [String: Any]
            #expect((listed?["backups"] as? [Any])?.count == 3, "\(list.stdout)")
            // A folder never backed up to (a wrong path): an error naming it, as verify and restore say.
            let wrong = try run("kvctl", ["backup", "list", destination + "-typo"])
            #expect(wrong.status == 1 && wrong.stderr.contains("-typo holds no backups"), "\(wrong)")

            // One table file damaged: verify fails and names it.
            let damaged = try #require(manifest.nodes.flatMap(\.files).first { $0.isTableFile && $0.bytes > 100 })
            let path = BackupDestination(root: destination).filePath(sha256: damaged.sha256)
            let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
            try handle.seek(toOffset: 50)
            let byte = try #require(try handle.read(upToCount: 1)).first!
            try handle.seek(toOffset: 50)
            try handle.write(contentsOf: Data([byte ^ 0xff]))
            try handle.close()
            let failed = try run("kvctl", ["backup", "verify", destination, "--backup", first.id])
            #expect(failed.status == 1)
            #expect(failed.stderr.contains(damaged.name) && failed.stderr.contains(damaged.sha256), "\(failed.stderr)")

            // Prune to the newest two: the incremental one keeps its base, the first, and the damaged file.
            expectSuccess(try run("kvctl", ["backup", "prune", destination, "--keep", "2"]))
            #expect(try BackupDestination(root: destination).backupIDs() == [first.id, second.id, third.id])
            // To the newest, full: the damaged file is still listed by it, so it stays; nothing else breaks.
            let prune = try run("kvctl", ["backup", "prune", destination, "--keep", "1"])
            expectSuccess(prune)
            let remaining = try BackupDestination(root: destination).backupIDs()
            #expect(remaining == [third.id])

            // A node down: the backup fails, writes no manifest, and the others release their checkpoints.
            cluster.stop("n4")
            let refused = try cluster.kvctl(
                ["backup", "--dest", destination, "--timeout", "2"], timeout: .seconds(120))
            #expect(refused.status == 1 && refused.stderr.contains("n4"), "\(refused.stderr)")
            #expect(try BackupDestination(root: destination).backupIDs() == [third.id])
            for id in ["n1", "n2", "n3"] {
                #expect(Self.checkpoints(cluster, id).isEmpty, "\(id) still holds a checkpoint after a failed backup")
            }
        }

        /// SIGKILL `kvctl` in the middle of a copy: the next backup continues the partly copied file and
        /// copies only what is missing; a node restarted meanwhile drops the checkpoint left behind.
        @Test func aBackupKilledMidwayResumes() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 135)
            defer { cluster.tearDown() }
            cluster.extraArguments = ["--anti-entropy-interval", "0"]
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client()
            let value = [UInt8](repeating: 0x5a, count: 60_000)
            for index in 0..<200 {
                // Values differ so that the table files do not compress to nothing.
                var bytes = value
                for position in stride(from: 0, to: bytes.count, by: 97) {
                    bytes[position] = UInt8(truncatingIfNeeded: index &* position)
                }
                _ = try await client.put(Array("large-\(index)".utf8), value: bytes)
            }
            await client.close()
            let destination = cluster.directory.path + "/backup-destination"
            let filesDirectory = BackupDestination(root: destination).filesDirectory

            // Small reads, so the copy takes long enough to be cut.
            let process = Process()
            process.executableURL = binDirectory.appendingPathComponent("kvctl")
            process.arguments = [
                "backup", "--dest", destination, "--chunk-bytes", "4096", "--cluster", cluster.clusterFile,
                "--ca", "\(cluster.certs)/ca.pem", "--cert", "\(cluster.certs)/admin.pem",
                "--key", "\(cluster.certs)/admin-key.pem",
            ]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let deadline = ContinuousClock.now + .seconds(60)
            var partial = false
            while !partial && process.isRunning && ContinuousClock.now < deadline {
                usleep(5_000)
                let names = (try? FileManager.default.contentsOfDirectory(atPath: filesDirectory)) ?? []
                partial = names.contains { name in
                    guard name.hasSuffix(".partial") else { return false }
                    let size = try? FileManager.default.attributesOfItem(atPath: "\(filesDirectory)/\(name)")[.size]
                    return ((size as? NSNumber)?.intValue ?? 0) > 100_000
                }
            }
            try #require(partial && process.isRunning, "kvctl finished before a large file was partly copied")
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            #expect(try BackupDestination(root: destination).backupIDs().isEmpty, "a killed backup is not listed")
            // The killed kvctl could not release its checkpoints; a restarted node drops them.
            #expect(cluster.ids.contains { !Self.checkpoints(cluster, $0).isEmpty })
            cluster.stop("n1")
            try await offThePool { try cluster.start("n1") }
            #expect(Self.checkpoints(cluster, "n1").isEmpty)

            let resumed = try await offThePool { try Self.backup(cluster, into: destination) }
            #expect(resumed.filesResumed >= 1, "\(resumed)")
            for id in ["n1"] { #expect(Self.checkpoints(cluster, id).isEmpty) }
            expectSuccess(try run("kvctl", ["backup", "verify", destination]))
            // Everything is there now: another full backup copies no table file.
            let again = try await offThePool { try Self.backup(cluster, into: destination, ["--full"]) }
            #expect(again.tableFilesCopied == 0, "\(again)")
        }
    }
}
