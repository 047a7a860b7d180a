import Foundation
import Testing

/// The folder holding the built `kvd` and `kvctl`: the one the test bundle was built into.
let binDirectory: URL = {
    if let override = ProcessInfo.processInfo.environment["QUORUMKV_BIN"] {
        return URL(fileURLWithPath: override)
    }
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    // On Linux the runner is `.build/<triple>/debug/QuorumKVPackageTests.xctest`.
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("kvd").path) {
            return url
        }
    }
    return URL(fileURLWithPath: ".build/debug")
}()

/// The environment of every `kvd` a test starts: with `QUORUMKV_EXIT_WITH_PARENT` (kvd's
/// `ExitWithParent`), a test process that crashes leaves no node running behind it.
func kvdEnvironment() -> [String: String] {
    var environment = ProcessInfo.processInfo.environment
    environment["QUORUMKV_EXIT_WITH_PARENT"] = "\(getpid())"
    return environment
}

/// What a finished command printed and how it exited.
struct CommandResult: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a built executable (or one given by its absolute path) to completion, with a bound on its
/// run time so a hang fails the test.
func run(_ executable: String, _ arguments: [String], stdin: Data? = nil, timeout: Duration = .seconds(60)) throws
    -> CommandResult
{
    let process = Process()
    process.executableURL =
        executable.hasPrefix("/")
        ? URL(fileURLWithPath: executable) : binDirectory.appendingPathComponent(executable)
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment
    for name in ["QUORUMKV_ENDPOINTS", "QUORUMKV_CA", "QUORUMKV_CERT", "QUORUMKV_KEY", "QUORUMKV_CLUSTER_ID"] {
        environment[name] = nil
    }
    process.environment = environment
    let output = Pipe()
    let errors = Pipe()
    let input = Pipe()
    process.standardOutput = output
    process.standardError = errors
    process.standardInput = input
    try process.run()
    if let stdin {
        input.fileHandleForWriting.write(stdin)
    }
    try? input.fileHandleForWriting.close()
    // Read both pipes while the process runs, so a large output cannot block it.
    let stdoutData = LockedData()
    let stderrData = LockedData()
    let group = DispatchGroup()
    for (pipe, sink) in [(output, stdoutData), (errors, stderrData)] {
        group.enter()
        DispatchQueue.global().async {
            sink.set(pipe.fileHandleForReading.readDataToEndOfFile())
            group.leave()
        }
    }
    let deadline = ContinuousClock.now + timeout
    while process.isRunning && ContinuousClock.now < deadline {
        usleep(10_000)
    }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        group.wait()
        Issue.record("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout)")
        return CommandResult(status: -1, stdout: stdoutData.string, stderr: stderrData.string)
    }
    process.waitUntilExit()
    group.wait()
    return CommandResult(status: process.terminationStatus, stdout: stdoutData.string, stderr: stderrData.string)
}

final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()

    func set(_ value: Data) {
        lock.lock()
        data = value
        lock.unlock()
    }

    var bytes: Data {
        lock.lock()
        defer { lock.unlock() }
        return data
    }

    var string: String { String(decoding: bytes, as: UTF8.self) }
}

/// A temporary folder, removed by `remove()`.
struct TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("quorumkv-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    var path: String { url.path }

    func remove() {
        try? FileManager.default.removeItem(at: url)
    }
}

/// Sends `signal` to a running process and waits for it to end; SIGKILL after 15 s.
func stopProcess(_ process: Process, signal: Int32) {
    guard process.isRunning else { return }
    kill(process.processIdentifier, signal)
    let deadline = ContinuousClock.now + .seconds(15)
    while process.isRunning && ContinuousClock.now < deadline {
        usleep(10_000)
    }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
    }
    process.waitUntilExit()
}

/// Runs the harness's blocking calls (process launches, `kvctl` runs) on a thread of their own, so
/// that they do not hold the cooperative pool's threads for seconds.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}
