import Foundation
import Testing

/// `kvd` as a real process, driven by `kvctl` as a user would.
extension RealProcessTests.FirstHalf {
    @Suite(.timeLimit(.minutes(5)))
    struct SingleNodeTests {
        @Test func putGetDeleteSurviveARestart() throws {
            let node = try NodeHarness(host: 101)
            defer { node.tearDown() }
            try node.start()

            expectSuccess(try node.kvctl(["put", "greeting", "hello"]))
            let got = try node.kvctl(["get", "greeting"])
            expectSuccess(got)
            #expect(got.stdout == "hello")

            expectSuccess(try node.kvctl(["put", "doomed", "x"]))
            expectSuccess(try node.kvctl(["delete", "doomed"]))
            #expect(try node.kvctl(["get", "doomed"]).status == 2)
            #expect(try node.kvctl(["get", "never-written"]).status == 2)

            node.stop(signal: SIGTERM)
            #expect(node.exitStatus == 0, "kvd should exit cleanly on SIGTERM: \(node.log(tail: 5))")
            try node.start()
            #expect(try node.kvctl(["get", "greeting"]).stdout == "hello")
            #expect(try node.kvctl(["get", "doomed"]).status == 2)
        }

        /// A node started with `QUORUMKV_EXIT_WITH_PARENT` set to its parent's id shuts down cleanly
        /// once that parent is gone, as when a test process crashes: a shell starts `kvd` in the
        /// background and exits at once.
        @Test func aNodeExitsWithTheProcessThatStartedIt() throws {
            let node = try NodeHarness(host: 77)
            defer { node.tearDown() }
            let kvd = binDirectory.appendingPathComponent("kvd").path
            let script = "QUORUMKV_EXIT_WITH_PARENT=$$ \"$0\" \"$@\" >>'\(node.logPath)' 2>&1 & echo $!"
            let shell = try run("/bin/sh", ["-c", script, kvd] + node.kvdArguments, timeout: .seconds(30))
            expectSuccess(shell)
            let pid = try #require(pid_t(shell.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
            // Gone, or a zombie nobody reaps (the state letter after the command's closing parenthesis).
            func exited() -> Bool {
                guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
                return stat.split(separator: ")").last?.split(separator: " ").first == "Z"
            }
            // Killed only while it is still this test's kvd: once gone, its pid may be another process's.
            defer {
                let commandLine = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
                if !exited(), commandLine.contains(node.data) { kill(pid, SIGKILL) }
            }
            let deadline = ContinuousClock.now + .seconds(60)
            while !exited() && ContinuousClock.now < deadline {
                usleep(100_000)
            }
            #expect(exited(), "kvd is still running after its parent exited: \(node.log(tail: 5))")
            #expect(node.log(tail: 20).contains("the process that started this node is gone"), "\(node.log(tail: 5))")
        }

        @Test func acknowledgedPutSurvivesSIGKILL() throws {
            let node = try NodeHarness(host: 102)
            defer { node.tearDown() }
            try node.start()
            for index in 0..<20 {
                expectSuccess(try node.kvctl(["put", "key-\(index)", "value-\(index)"]))
            }
            node.stop(signal: SIGKILL)
            try node.start()
            for index in 0..<20 {
                let got = try node.kvctl(["get", "key-\(index)"])
                #expect(got.stdout == "value-\(index)", "key-\(index) lost after SIGKILL: \(got.stderr)")
            }
        }

        @Test func valuesAreBytesUntouchedFromStdinAndFile() throws {
            let node = try NodeHarness(host: 103)
            defer { node.tearDown() }
            try node.start()
            let bytes = Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            expectSuccess(try node.kvctl(["put", "binary"], stdin: bytes))
            let json = try node.kvctl(["get", "binary", "--json"])
            expectSuccess(json)
            let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            #expect(document?["valueBase64"] as? String == bytes.base64EncodedString())

            let file = node.directory.url.appendingPathComponent("value.bin")
            try bytes.write(to: file)
            expectSuccess(try node.kvctl(["put", "from-file", "--file", file.path]))
            let fromFile = try node.kvctl(["get", "from-file", "--json"])
            let fileDocument = try JSONSerialization.jsonObject(with: Data(fromFile.stdout.utf8)) as? [String: Any]
            #expect(fileDocument?["valueBase64"] as? String == bytes.base64EncodedString())
        }

        @Test func failuresGiveAClearMessageAndExitCode() throws {
            let node = try NodeHarness(host: 104)
            defer { node.tearDown() }

            // Node down.
            let down = try node.kvctl(["get", "k"])
            #expect(down.status == 1)
            #expect(down.stderr.contains(node.endpoint))

            try node.start()
            // A client certificate from another CA.
            let other = node.directory.path + "/other"
            expectSuccess(try run("kvctl", ["certs", "init", "--dir", other]))
            expectSuccess(
                try run("kvctl", ["certs", "issue", "--dir", other, "--role", "client", "--name", "stranger"]))
            let stranger = try run(
                "kvctl",
                [
                    "get", "k", "--endpoints", node.endpoint, "--ca", "\(node.certs)/ca.pem", "--cert",
                    "\(other)/stranger.pem", "--key", "\(other)/stranger-key.pem",
                ])
            #expect(stranger.status == 1)
            #expect(!stranger.stderr.isEmpty)

            // Another cluster id.
            let mismatch = try node.kvctl(["get", "k", "--cluster-id", "elsewhere"])
            #expect(mismatch.status == 1)
            #expect(mismatch.stderr.contains("cluster"))

            // Missing certificate files.
            let missing = try run(
                "kvctl",
                ["get", "k", "--endpoints", node.endpoint, "--ca", "/nonexistent", "--cert", "/x", "--key", "/y"])
            #expect(missing.status == 1)
            #expect(missing.stderr.contains("/nonexistent"))

            // Bad usage.
            #expect(try run("kvctl", ["get"]).status == 64)
            for arguments in [["put", "k", "v", "--consistency", "0"], ["get", "k", "--r", "0"]] {
                let refused = try node.kvctl(arguments, as: "client")
                #expect(refused.status == 64, "\(arguments): \(refused)")
                #expect(refused.stderr.contains("must"), "\(refused.stderr)")
            }
            for arguments in [["get", ""], ["ring", ""]] {
                let refused = try node.kvctl(arguments, as: "client")
                #expect(refused.status == 1, "\(arguments): \(refused)")
                #expect(refused.stderr.contains("the key is empty"), "\(arguments): \(refused.stderr)")
            }
            for (flag, value) in [
                ("--block-cache-bytes", "4096"), ("--disk-reserve-bytes", "\(1 << 41)"),
                ("--in-flight-bytes-max", "0"), ("--receiving-bytes-max", "\(1 << 41)"),
            ] {
                let refused = try run(
                    "kvd",
                    [
                        "--id", "n9", "--listen", node.host + ":7499", "--data", node.directory.path + "/n9",
                        "--ca", "\(node.certs)/ca.pem", "--cert", "\(node.certs)/n1.pem",
                        "--key", "\(node.certs)/n1-key.pem", flag, value,
                    ])
                #expect(refused.status == 64)
                #expect(refused.stderr.contains("\(flag) must be"), "\(refused.stderr)")
            }

            // The node still serves good clients after all of that.
            expectSuccess(try node.kvctl(["put", "still", "here"], as: "client"))
            #expect(try node.kvctl(["get", "still"], as: "client").stdout == "here")
        }

        @Test func nodeRefusesACertificateThatIsNotItsOwn() throws {
            let node = try NodeHarness(host: 105)
            defer { node.tearDown() }
            let result = try run(
                "kvd",
                [
                    "--id", "n1", "--listen", node.endpoint, "--data", node.data, "--ca", "\(node.certs)/ca.pem",
                    "--cert", "\(node.certs)/client.pem", "--key", "\(node.certs)/client-key.pem",
                ],
                timeout: .seconds(30))
            #expect(result.status == 1)
            #expect(result.stderr.contains("node certificate"))
        }

        /// A tombstone grace period not longer than the hint window would let a hint bring a purged
        /// value back: kvd refuses to start and says why.
        @Test func nodeRefusesATombstoneGraceWithinTheHintWindow() throws {
            let node = try NodeHarness(host: 105)
            defer { node.tearDown() }
            let result = try run(
                "kvd",
                [
                    "--id", "n1", "--listen", node.endpoint, "--data", node.data, "--ca", "\(node.certs)/ca.pem",
                    "--cert", "\(node.certs)/n1.pem", "--key", "\(node.certs)/n1-key.pem",
                    "--hint-window", "3600", "--tombstone-grace", "600",
                ],
                timeout: .seconds(30))
            #expect(result.status == 1)
            #expect(result.stderr.contains("tombstone-grace (600 s) must be longer than hint-window (3600 s)"))
        }

        /// `--event-loops` (or `event-loops:` in the node file) sets how many event-loop threads the
        /// node runs, the flag over the file; a count outside 1...256 is refused with a clear message.
        @Test func eventLoopsSetTheNodesThreads() throws {
            let node = try NodeHarness(host: 105)
            defer { node.tearDown() }
            func eventLoopThreads() throws -> Int {
                let pid = try #require(node.processIdentifier)
                let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
                return tasks.filter { task in
                    let name = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/comm", encoding: .utf8)) ?? ""
                    return name.hasPrefix("NIO-SGLTN-")
                }.count
            }
            let file = node.directory.path + "/node.yaml"
            try "event-loops: 3\n".write(toFile: file, atomically: true, encoding: .utf8)
            try node.start(extraArguments: ["--config", file])
            #expect(try eventLoopThreads() == 3)
            expectSuccess(try node.kvctl(["put", "loops", "three"]))
            node.stop()

            try node.start(extraArguments: ["--config", file, "--event-loops", "1"])
            #expect(try eventLoopThreads() == 1)
            #expect(try node.kvctl(["get", "loops"]).stdout == "three")
            expectSuccess(try node.kvctl(["put", "loops", "one"]))
            #expect(try node.kvctl(["get", "loops"]).stdout == "one")
            node.stop()

            // One loop that fsyncs its own writes (`--wal-sync event-loop`), from the file and the flag.
            try "event-loops: 1\nwal-sync: event-loop\n".write(toFile: file, atomically: true, encoding: .utf8)
            try node.start(extraArguments: ["--config", file, "--durability", "sync"])
            #expect(try eventLoopThreads() == 1)
            let listening = node.log(tail: 2000).split(separator: "\n").last { $0.contains("node listening") }
            #expect(listening?.contains("storage.wal_sync=event-loop") == true, "\(listening ?? "no start logged")")
            #expect(try node.kvctl(["get", "loops"]).stdout == "one")
            for index in 0..<20 {
                expectSuccess(try node.kvctl(["put", "fsynced-\(index)", "v\(index)"]))
            }
            node.stop()
            try node.start(extraArguments: ["--config", file, "--wal-sync", "thread"])
            #expect(try node.kvctl(["get", "fsynced-19"]).stdout == "v19")
            node.stop()

            for count in ["0", "257", "-1"] {
                let refused = try run("kvd", node.kvdArguments + ["--event-loops=\(count)"], timeout: .seconds(30))
                #expect(refused.status == 64)
                #expect(refused.stderr.contains("--event-loops must be 1...256"), "\(refused.stderr)")
            }
            let refused = try run("kvd", node.kvdArguments + ["--wal-sync", "loop"], timeout: .seconds(30))
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("wal-sync 'loop' is not one of thread, event-loop"), "\(refused.stderr)")
        }
    }
}
