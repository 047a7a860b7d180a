import Foundation
import Testing

/// One real `kvd` process on its own loopback address, with certificates issued by `kvctl certs`,
/// and an admin `kvctl` to talk to it.
final class NodeHarness: @unchecked Sendable {
    let directory: TemporaryDirectory
    let host: String
    let port = 7411
    let id = "n1"
    private var process: Process?

    var certs: String { directory.path + "/certs" }
    var data: String { directory.path + "/data" }
    var logPath: String { directory.path + "/kvd.log" }
    var endpoint: String { "\(host):\(port)" }

    /// - Parameter octet: the last octet of the node's address on the half's loopback network
    ///   (`Loopback`).
    init(host octet: Int) throws {
        host = Loopback.host(octet)
        directory = try TemporaryDirectory()
        try expectSuccess(run("kvctl", ["certs", "init", "--dir", certs]))
        try expectSuccess(
            run("kvctl", ["certs", "issue", "--dir", certs, "--role", "node", "--name", id, "--ip", host]))
        try expectSuccess(run("kvctl", ["certs", "issue", "--dir", certs, "--role", "admin", "--name", "admin"]))
        try expectSuccess(run("kvctl", ["certs", "issue", "--dir", certs, "--role", "client", "--name", "client"]))
    }

    /// `kvd`'s arguments for this node.
    var kvdArguments: [String] {
        [
            "--id", id, "--listen", endpoint, "--data", data,
            "--ca", "\(certs)/ca.pem", "--cert", "\(certs)/\(id).pem", "--key", "\(certs)/\(id)-key.pem",
        ]
    }

    /// Starts `kvd` and waits until it answers a ping.
    func start(extraArguments: [String] = []) throws {
        let process = Process()
        process.executableURL = binDirectory.appendingPathComponent("kvd")
        process.arguments = kvdArguments + extraArguments
        process.environment = kvdEnvironment()
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let logFile = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        logFile.seekToEndOfFile()
        process.standardOutput = logFile
        process.standardError = logFile
        try process.run()
        self.process = process
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if try kvctl(["status", "--timeout", "1"]).status == 0 { return }
            if !process.isRunning {
                throw HarnessError("kvd exited with \(process.terminationStatus): \(log(tail: 5))")
            }
            usleep(100_000)
        }
        throw HarnessError("kvd did not answer within 30 s: \(log(tail: 5))")
    }

    /// Sends a signal and waits for the process to end.
    func stop(signal: Int32 = SIGTERM) {
        guard let process else { return }
        stopProcess(process, signal: signal)
    }

    /// The running `kvd`'s process id.
    var processIdentifier: Int32? { process?.isRunning == true ? process?.processIdentifier : nil }

    var exitStatus: Int32? {
        guard let process, !process.isRunning else { return nil }
        return process.terminationStatus
    }

    /// Stops the node and removes its folder.
    func tearDown() {
        stop(signal: SIGKILL)
        directory.remove()
    }

    /// Runs `kvctl` against this node with the given certificate (admin by default).
    func kvctl(_ arguments: [String], as name: String = "admin", stdin: Data? = nil) throws -> CommandResult {
        try run(
            "kvctl",
            arguments + [
                "--endpoints", endpoint, "--ca", "\(certs)/ca.pem", "--cert", "\(certs)/\(name).pem", "--key",
                "\(certs)/\(name)-key.pem",
            ],
            stdin: stdin)
    }

    func log(tail lines: Int) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func expectSuccess(_ result: CommandResult, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.status == 0, "exit \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
}
