import Foundation
import KVClient
import KVConfig
import KVCore
import KVTLS
import Testing

/// Several real `kvd` processes sharing one cluster file, each on its own loopback address.
final class ClusterHarness: @unchecked Sendable {
    let directory: TemporaryDirectory
    let hosts: [String]
    let replicationFactor: Int
    let port = 7411
    private var processes: [String: Process] = [:]
    /// Nodes moved to another host (`relocate(_:to:)`).
    private var relocated: [String: String] = [:]

    var certs: String { directory.path + "/certs" }
    var clusterFile: String { directory.path + "/cluster.yaml" }
    var ids: [String] { hosts.indices.map { "n\($0 + 1)" } }

    /// - Parameters:
    ///   - firstHost: the last octet of n1's address on the half's loopback network (`Loopback`); n2
    ///     gets the next one, and so on.
    ///   - spareHosts: more addresses a node's certificate names, for nodes the test moves.
    ///   - joiners: more nodes (the next ids and addresses) with certificates and data folders but not
    ///     in the cluster file: started with `start(_:)`, added with `kvctl join`.
    convenience init(
        nodes count: Int, firstHost: Int, replicationFactor: Int = 3, spareHosts: [String: String] = [:],
        joiners: Int = 0
    ) throws {
        try self.init(
            hosts: (0..<count + joiners).map { firstHost + $0 }, joiners: joiners,
            replicationFactor: replicationFactor, spareHosts: spareHosts)
    }

    /// - Parameters:
    ///   - hosts: the last octet of each node's address on the half's network, n1's first, joiners'
    ///     last.
    ///   - placement: the cluster file's `placement` (its N must be `replicationFactor`); none by default.
    ///   - zones: the cluster file's `zone` of each node, n1's first; none by default.
    ///   - rings: the cluster file's `ring` of each node, n1's first (empty: the main ring); none by
    ///     default.
    init(
        hosts octets: [Int], joiners: Int = 0, replicationFactor: Int = 3, placement: String? = nil,
        zones: [String] = [], rings: [String] = [], spareHosts: [String: String] = [:]
    ) throws {
        precondition(zones.isEmpty || zones.count == octets.count - joiners, "one zone per node of the file")
        precondition(rings.isEmpty || rings.count == octets.count - joiners, "one ring per node of the file")
        directory = try TemporaryDirectory()
        hosts = octets.map { Loopback.host($0) }
        members = octets.count - joiners
        self.replicationFactor = replicationFactor
        expectSuccess(try run("kvctl", ["certs", "init", "--dir", certs]))
        for (id, host) in zip(ids, hosts) {
            expectSuccess(
                try run(
                    "kvctl",
                    ["certs", "issue", "--dir", certs, "--role", "node", "--name", id, "--ip", host]
                        + (spareHosts[id].map { ["--ip", $0] } ?? [])))
        }
        expectSuccess(try run("kvctl", ["certs", "issue", "--dir", certs, "--role", "admin", "--name", "admin"]))
        expectSuccess(try run("kvctl", ["certs", "issue", "--dir", certs, "--role", "client", "--name", "client"]))
        var lines = ["cluster-id: test", "replication-factor: \(replicationFactor)"]
        if let placement { lines.append("placement: \(placement)") }
        lines.append("nodes:")
        for (index, (id, host)) in zip(ids, hosts).prefix(members).enumerated() {
            lines += ["  - id: \(id)", "    address: \(host):\(port)"]
            if !zones.isEmpty { lines.append("    zone: \(zones[index])") }
            if !rings.isEmpty, !rings[index].isEmpty { lines.append("    ring: \(rings[index])") }
        }
        try lines.joined(separator: "\n").write(toFile: clusterFile, atomically: true, encoding: .utf8)
    }

    func address(_ id: String) -> String {
        "\(relocated[id] ?? hosts[index(id)]):\(port)"
    }

    /// From now on `id` is started listening on `host` (one of its `spareHosts`).
    func relocate(_ id: String, to host: String) {
        relocated[id] = host
    }

    private func index(_ id: String) -> Int {
        Int(id.dropFirst())! - 1
    }

    /// Arguments added to every `kvd` this harness starts.
    var extraArguments: [String] = []
    /// Arguments added to one node's `kvd`, by id.
    var nodeArguments: [String: [String]] = [:]

    /// How many nodes the cluster file lists (the others are joiners).
    let members: Int

    /// Starts every node of the cluster file, then waits until each answers.
    func startAll() throws {
        for id in ids.prefix(members) { try launch(id) }
        for id in ids.prefix(members) { try waitUntilUp(id) }
    }

    /// Starts one node and waits until it answers.
    func start(_ id: String) throws {
        try launch(id)
        try waitUntilUp(id)
    }

    private func launch(_ id: String) throws {
        let process = Process()
        process.executableURL = binDirectory.appendingPathComponent("kvd")
        process.arguments =
            [
                "--id", id, "--listen", address(id), "--data", "\(directory.path)/\(id)", "--cluster", clusterFile,
                "--ca", "\(certs)/ca.pem", "--cert", "\(certs)/\(id).pem", "--key", "\(certs)/\(id)-key.pem",
            ] + extraArguments + (nodeArguments[id] ?? [])
        let logPath = "\(directory.path)/\(id).log"
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let logFile = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        logFile.seekToEndOfFile()
        process.standardOutput = logFile
        process.standardError = logFile
        process.environment = kvdEnvironment()
        try process.run()
        processes[id] = process
    }

    private func waitUntilUp(_ id: String) throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let result = try run(
                "kvctl",
                [
                    "ring", "--endpoints", address(id), "--cluster-id", "test", "--ca", "\(certs)/ca.pem",
                    "--cert", "\(certs)/admin.pem",
                    "--key", "\(certs)/admin-key.pem", "--timeout", "1",
                ])
            if result.status == 0 { return }
            if let process = processes[id], !process.isRunning {
                throw HarnessError("\(id) exited with \(process.terminationStatus)")
            }
            usleep(100_000)
        }
        throw HarnessError("\(id) did not answer within 30 s")
    }

    /// The last `lines` lines of a node's log (for failure messages).
    func log(_ id: String, tail lines: Int = 20) -> String {
        let text = (try? String(contentsOfFile: "\(directory.path)/\(id).log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// Sends a signal to one node and waits for it to end.
    func stop(_ id: String, signal: Int32 = SIGKILL) {
        guard let process = processes[id] else { return }
        stopProcess(process, signal: signal)
    }

    /// Whether node `id`'s process was started and has not exited.
    func isRunning(_ id: String) -> Bool {
        processes[id]?.isRunning ?? false
    }

    /// Sends a signal to one node without waiting (SIGSTOP hangs it, SIGCONT resumes it).
    func signal(_ id: String, _ signal: Int32) {
        guard let process = processes[id] else { return }
        kill(process.processIdentifier, signal)
    }

    /// Stops every node and removes the folder.
    func tearDown() {
        for id in ids { stop(id) }
        directory.remove()
    }

    /// An SDK client for this cluster, from the cluster file.
    func client(
        certificate name: String = "client", timeout: Duration = .seconds(20), hintedHandoff: Bool = true,
        configure: (inout KVClientConfiguration) -> Void = { _ in }
    ) throws -> KVClient {
        var configuration = KVClientConfiguration(
            cluster: try ClusterFile.load(path: clusterFile),
            tls: TLSConfiguration(
                caFile: "\(certs)/ca.pem", certificateFile: "\(certs)/\(name).pem", keyFile: "\(certs)/\(name)-key.pem"
            ))
        configuration.requestTimeout = timeout
        configuration.hintedHandoff = hintedHandoff
        configure(&configuration)
        return try KVClient(configuration: configuration)
    }

    /// Runs `kvctl` with the cluster file and the given certificate (admin by default).
    func kvctl(_ arguments: [String], as name: String = "admin", timeout: Duration = .seconds(60)) throws
        -> CommandResult
    {
        try run(
            "kvctl",
            arguments + [
                "--cluster", clusterFile, "--ca", "\(certs)/ca.pem", "--cert", "\(certs)/\(name).pem", "--key",
                "\(certs)/\(name)-key.pem",
            ], timeout: timeout)
    }

    /// The cluster file's ring, built once.
    private lazy var ring: Result<Ring, any Error> = Result { try ClusterFile.load(path: clusterFile).ring() }

    /// The preference list of a key, from the cluster file's ring.
    func replicas(of key: String) throws -> [String] {
        try ring.get().preferenceList(forKey: Array(key.utf8))
    }
}
