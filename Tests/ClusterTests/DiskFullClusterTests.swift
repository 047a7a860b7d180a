import Foundation
import KVClient
import Testing

/// Whether this test process may mount a tmpfs (root with the capability to mount, as on the CI
/// machines): tried once, on a folder of its own.
let tmpfsAllowed: Bool = {
    guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/mount") else { return false }
    guard let folder = try? TemporaryDirectory() else { return false }
    defer { folder.remove() }
    guard (try? run("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", folder.path]))?.status == 0 else {
        return false
    }
    _ = try? run("/usr/bin/umount", [folder.path])
    return true
}()

extension RealProcessTests.FirstHalf {
    /// A node whose disk fills up: below its reserve (`--disk-reserve-bytes`, `DiskRoom`) writes fail
    /// with a clear "disk full" error, the node stays up and serves reads, nothing acknowledged is
    /// lost, and writes come back by themselves once there is room, without a restart. The node's data
    /// folder is a tmpfs of 320 MB with a reserve of 200 MiB, grown to 1 GB to make the room. Without
    /// the reserve RocksDB itself runs out: its failed log write aborted `kvd` (Debian's librocksdb is
    /// built with its assertions on), which the first version of this test found.
    @Suite(
        .timeLimit(.minutes(3)),
        .enabled(if: tmpfsAllowed, "needs root and mount(8) to give the node a small tmpfs"))
    struct DiskFullClusterTests {
        @Test func writesFailClearlyBelowTheReserveAndComeBackWithRoom() async throws {
            let cluster = try ClusterHarness(nodes: 1, firstHost: 187, replicationFactor: 1)
            let data = "\(cluster.directory.path)/n1"
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
            expectSuccess(try run("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=320m", "tmpfs", data]))
            defer {
                cluster.stop("n1")
                _ = try? run("/usr/bin/umount", ["-l", data])
                cluster.tearDown()
            }
            cluster.nodeArguments["n1"] = ["--disk-reserve-bytes", "\(200 << 20)"]
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client(timeout: .seconds(10))
            let value = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }

            // 1 MB values until the reserve is reached (RocksDB preallocates its log: about 70 MB of
            // the 320 first, so after about 50 values).
            let (acknowledged, failure) = try await Self.fill(client, with: value)
            let error = try #require(failure, "400 MB fit in a 320 MB tmpfs")
            #expect("\(error)".contains("disk full") && "\(error)".contains("reserve"), "\(error)")
            #expect(acknowledged.count > 10)
            #expect(cluster.isRunning("n1"), "a full disk does not stop the node")
            // Reads go on; writes keep failing while the room is missing.
            #expect(try await client.get(acknowledged[0])?.value == value)
            await #expect(throws: KVClientError.self) { try await client.put("small", value: "x") }
            let log = try String(contentsOfFile: "\(cluster.directory.path)/n1.log", encoding: .utf8)
            #expect(log.contains("disk full"), "the node logs the cause")
            // `kvctl status` says so, from the node's next health reading (every 5 s).
            let status = try await Self.status(of: cluster, once: "n1 refuses writes")
            #expect(status.contains("below its reserve of 200 MiB (--disk-reserve-bytes)"), "\(status)")

            // Room again: writes resume without a restart.
            expectSuccess(try run("/usr/bin/mount", ["-o", "remount,size=1g", data]))
            let deadline = ContinuousClock.now + .seconds(60)
            var resumed = false
            while !resumed && ContinuousClock.now < deadline {
                do {
                    try await client.put("small", value: "x")
                    resumed = true
                } catch {
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
            #expect(resumed, "writes resume within 60 s of the room coming back")
            for key in acknowledged {
                #expect(try await client.get(key)?.value == value, "\(key) was acknowledged")
            }
            #expect(cluster.isRunning("n1"))
            await client.close()

            // And after a restart.
            cluster.stop("n1", signal: SIGTERM)
            try await offThePool { try cluster.start("n1") }
            let restarted = try cluster.client()
            #expect(try await restarted.get(acknowledged.last!)?.value == value)
            #expect(try await restarted.get("small")?.value == Array("x".utf8))
            await restarted.close()
        }

        /// Writes `value` under big-0, big-1, … until a write fails (at most 400): the keys acknowledged,
        /// and the failure.
        static func fill(_ client: KVClient, with value: [UInt8]) async throws -> ([String], (any Error)?) {
            var acknowledged: [String] = []
            for index in 0..<400 {
                do {
                    try await client.put("big-\(index)", value: value)
                    acknowledged.append("big-\(index)")
                } catch {
                    return (acknowledged, error)
                }
            }
            return (acknowledged, nil)
        }

        /// `kvctl status`'s output once it contains `text`, from the nodes' next health reading (every
        /// 5 s), or as it is after 30 s.
        static func status(of cluster: ClusterHarness, once text: String) async throws -> String {
            var status = ""
            let seen = ContinuousClock.now + .seconds(30)
            while !status.contains(text) && ContinuousClock.now < seen {
                status = try cluster.kvctl(["status"]).stdout
                if !status.contains(text) { try await Task.sleep(for: .milliseconds(500)) }
            }
            return status
        }
    }
}
