import Foundation
import KVClient
import Testing

/// Whether this test process may make a file system on a loop device (root, mount(8), losetup(8),
/// mkfs.ext4(8) and e2fsck(8), a free loop device): tried once.
let loopDevicesAllowed: Bool = {
    let tools = ["/usr/sbin/losetup", "/usr/sbin/mkfs.ext4", "/usr/sbin/e2fsck"]
    guard tmpfsAllowed, tools.allSatisfy({ FileManager.default.isExecutableFile(atPath: $0) }) else { return false }
    return (try? run("/usr/sbin/losetup", ["-f"]))?.status == 0
}()

extension RealProcessTests.FirstHalf {
    /// A node whose disk fails under it: its data folder is an ext4 file system on a loop device whose
    /// backing file lives on a tmpfs too small for it, so once the tmpfs is full every write and fsync
    /// of the node gets an I/O error (and ext4 remounts itself read-only), as on a disk that dies.
    /// Debian's librocksdb aborted `kvd` there: the first line its own log could not write made the next
    /// one fail an assertion. Now the node stays up, refuses every write with its first failure
    /// (`StorageFault`) and says so in `kvctl status` and its log; it serves reads; and once the disk
    /// is mended (fsck, room) a restart brings back every acknowledged write.
    @Suite(
        .timeLimit(.minutes(3)),
        .enabled(if: loopDevicesAllowed, "needs root, mount(8), losetup(8), mkfs.ext4 and e2fsck for a failing disk"))
    struct DiskFailureClusterTests {
        @Test func aFailingDiskStopsTheWritesNotTheNode() async throws {
            let cluster = try ClusterHarness(nodes: 1, firstHost: 200, replicationFactor: 1)
            let back = "\(cluster.directory.path)/disk"
            let data = "\(cluster.directory.path)/n1"
            let image = "\(back)/image"
            for folder in [back, data] {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            }
            expectSuccess(try run("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=200m", "tmpfs", back]))
            var device = ""
            defer {
                cluster.stop("n1")
                _ = try? run("/usr/bin/umount", ["-l", data])
                if !device.isEmpty { _ = try? run("/usr/sbin/losetup", ["-d", device]) }
                _ = try? run("/usr/bin/umount", ["-l", back])
                cluster.tearDown()
            }
            expectSuccess(try run("/usr/bin/truncate", ["-s", "1G", image]))
            expectSuccess(try run("/usr/sbin/mkfs.ext4", ["-q", "-F", image]))
            let attached = try run("/usr/sbin/losetup", ["-f", "--show", image])
            device = attached.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            try #require(attached.status == 0 && device.hasPrefix("/dev/loop"), "\(attached)")
            expectSuccess(try run("/usr/bin/mount", [device, data]))
            cluster.nodeArguments["n1"] = ["--durability", "sync", "--disk-reserve-bytes", "\(100 << 20)"]
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client(timeout: .seconds(10))
            let value = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }

            // 1 MB values until the tmpfs under the file system is full (the file system itself says
            // 900 MB are free, so the disk reserve does not stop them).
            let (acknowledged, failure) = try await DiskFullClusterTests.fill(client, with: value)
            let first = try #require(failure, "400 MB fit in a 200 MB tmpfs")
            #expect(acknowledged.count > 10)
            #expect(cluster.isRunning("n1"), "a failing disk does not stop the node: \(cluster.log("n1"))")
            let refused = try #require(
                await #expect(throws: KVClientError.self) {
                    try await client.put("small", value: "x")
                })
            #expect(
                "\(refused)".contains("the node's storage failed at")
                    && "\(refused)".contains("refuses writes until it is restarted"),
                "first: \(first); then: \(refused)")
            // Reads go on.
            #expect(try await client.get(acknowledged[0])?.value == value)
            #expect(cluster.isRunning("n1"))
            // `kvctl status` says so, from the node's next health reading (every 5 s); so does its log.
            let status = try await DiskFullClusterTests.status(of: cluster, once: "n1 refuses writes")
            #expect(status.contains("n1 refuses writes: storage I/O error at"), "\(status)")
            #expect(cluster.log("n1", tail: 400).contains("critical"), "\(cluster.log("n1"))")
            await client.close()

            // The disk mended: room under it, the file system checked; a restart finds every write
            // that was acknowledged.
            cluster.stop("n1", signal: SIGTERM)
            expectSuccess(try run("/usr/bin/umount", [data]))
            expectSuccess(try run("/usr/bin/mount", ["-o", "remount,size=2g", back]))
            let checked = try run("/usr/sbin/e2fsck", ["-f", "-y", device])
            #expect(checked.status <= 1, "e2fsck: \(checked)")
            expectSuccess(try run("/usr/bin/mount", [device, data]))
            try await offThePool { try cluster.start("n1") }
            let restarted = try cluster.client(timeout: .seconds(10))
            for key in acknowledged {
                #expect(try await restarted.get(key)?.value == value, "\(key) was acknowledged")
            }
            try await restarted.put("small", value: "x")
            #expect(try await restarted.get("small")?.value == Array("x".utf8))
            await restarted.close()
        }
    }
}
