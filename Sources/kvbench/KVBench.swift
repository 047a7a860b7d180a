import ArgumentParser
import Foundation
import KVClient
import KVConfig
import KVCore
import KVTLS

/// `kvbench`: drives a cluster with a fixed number of concurrent requests and reports throughput and
/// latency percentiles.
@main
struct KVBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvbench",
        abstract: "Measure QuorumKV throughput and latency.",
        discussion: """
            Runs CONCURRENCY request loops for DURATION seconds (bounded also by --requests-max), printing \
            a progress line to stderr every second, then prints ops/s and p50/p95/p99 latency (HdrHistogram, \
            microseconds, 3 significant digits). With --split S it also reports the requests started \
            before and after S seconds apart (to see what killing a node midway costs). --output writes \
            the results as JSON with a per-second timeline; --plot an SVG of throughput and p50/p99 per \
            second, with a vertical line at each --mark. Certificates and the cluster as for kvctl (flags \
            or QUORUMKV_* variables).
            """
    )

    @Option(help: "The cluster file (env QUORUMKV_CLUSTER).")
    var cluster: String?

    @Option(
        help: "Comma-separated node addresses HOST:PORT, used when no cluster file is given (env QUORUMKV_ENDPOINTS).")
    var endpoints: String?

    @Option(name: .customLong("cluster-id"), help: "The cluster id, with --endpoints.")
    var clusterID: String?

    @Option(help: "Cluster CA certificate (env QUORUMKV_CA).")
    var ca: String?

    @Option(help: "Client certificate (env QUORUMKV_CERT).")
    var cert: String?

    @Option(help: "Client private key (env QUORUMKV_KEY).")
    var key: String?

    @Option(help: "put, get or mixed (50 % each).")
    var workload = "put"

    @Option(help: "one, quorum, all or a number of replicas, for reads and writes (default: the keyspace's).")
    var consistency: String?

    @Flag(
        name: .customLong("read-from-all"),
        help: "Ask all N replicas on every get and take the first R answers (the SDK's readFromAll), not the first R.")
    var readFromAll = false

    @Option(help: "The keyspace of the keys (env QUORUMKV_KEYSPACE); its ring, N and default levels.")
    var keyspace = ProcessInfo.processInfo.environment["QUORUMKV_KEYSPACE"] ?? Keyspace.defaultName

    @Option(help: "Requests in flight at once.")
    var concurrency = 50

    @Option(help: "Seconds to run.")
    var duration = 10.0

    @Option(help: "Also report requests started before and after this many seconds, separately.")
    var split: Double?

    @Option(name: .customLong("value-bytes"), help: "Bytes per value.")
    var valueBytes = 100

    @Option(help: "Distinct keys.")
    var keys = 10_000

    @Option(name: .customLong("key-prefix"), help: "Keys are PREFIX0, PREFIX1, … (at most 64 bytes).")
    var keyPrefix = "bench-"

    @Option(name: .customLong("requests-max"), help: "Stop after this many requests even if time remains.")
    var requestsMax = 10_000_000

    @Flag(name: .customLong("skip-load"), help: "Do not write every key before a get or mixed run.")
    var skipLoad = false

    @Option(help: "Also write the results as JSON to this file.")
    var output: String?

    @Option(help: "Also draw throughput and p50/p99 latency per second as an SVG in this file.")
    var plot: String?

    @Option(
        help: "SECONDS:LABEL, a vertical line on the plot (a node killed, restarted); repeatable.")
    var mark: [String] = []

    @Flag(help: "No progress line on stderr.")
    var quiet = false

    func validate() throws {
        guard keyPrefix.utf8.count <= 64 else { throw ValidationError("--key-prefix takes at most 64 bytes") }
        guard ["put", "get", "mixed"].contains(workload) else {
            throw ValidationError("--workload must be put, get or mixed")
        }
        guard consistency.map({ ConsistencyLevel(parsing: $0) != nil }) ?? true else {
            throw ValidationError("--consistency must be one, quorum, all or a number")
        }
        guard (1...4096).contains(concurrency) else { throw ValidationError("--concurrency must be 1...4096") }
        guard duration > 0, duration <= 3600 else { throw ValidationError("--duration must be 0...3600 seconds") }
        guard keys > 0 else { throw ValidationError("--keys must be positive") }
        guard valueBytes >= 0, valueBytes <= Limits.valueBytesMax else {
            throw ValidationError("--value-bytes is too large")
        }
        if let split, split <= 0 || split >= duration {
            throw ValidationError("--split must be inside the run")
        }
        _ = try marks()
    }

    /// `--mark SECONDS:LABEL` values.
    func marks() throws -> [Plot.Mark] {
        try mark.map { text in
            let parts = text.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, let second = Double(parts[0]), second >= 0, second <= 3600 else {
                throw ValidationError("--mark takes SECONDS:LABEL, not '\(text)'")
            }
            return Plot.Mark(second: second, label: String(parts[1]))
        }
    }

    func run() async throws {
        let connection = try makeClient()
        let client = connection.keyspace(keyspace)
        let level = consistency.flatMap(ConsistencyLevel.init(parsing:))
        let value = [UInt8](repeating: UInt8(ascii: "x"), count: valueBytes)
        let keyNames = (0..<keys).map { Array("\(keyPrefix)\($0)".utf8) }

        if workload != "put" && !skipLoad {
            FileHandle.standardError.write(Data("kvbench: loading \(keys) keys\n".utf8))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<concurrency {
                    group.addTask {
                        for index in stride(from: worker, to: keys, by: concurrency) {
                            try await client.put(keyNames[index], value: value, consistency: level)
                        }
                    }
                }
                try await group.waitForAll()
            }
        }

        let started = ContinuousClock.now
        let deadline = started + .milliseconds(Int(duration * 1000))
        let perWorkerMax = max(1, requestsMax / concurrency)
        let workload = self.workload
        let recorder = Recorder(split: split.map { .milliseconds(Int($0 * 1000)) })
        let progress = quiet ? nil : Task { await Self.reportProgress(recorder, started: started) }
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<concurrency {
                group.addTask {
                    var generator = SplitMix64(seed: UInt64(worker) &+ 1)
                    var requests = 0
                    while ContinuousClock.now < deadline && requests < perWorkerMax {
                        requests += 1
                        let keyIndex = Int(generator.next() % UInt64(keyNames.count))
                        let isPut = workload == "put" || (workload == "mixed" && generator.next() & 1 == 0)
                        let begin = ContinuousClock.now
                        do {
                            if isPut {
                                try await client.put(keyNames[keyIndex], value: value, consistency: level)
                            } else {
                                _ = try await client.get(keyNames[keyIndex], consistency: level)
                            }
                            recorder.record(offset: begin - started, latency: ContinuousClock.now - begin)
                        } catch {
                            recorder.recordError(offset: begin - started, error)
                        }
                    }
                }
            }
        }
        progress?.cancel()
        let elapsed = (ContinuousClock.now - started) / .seconds(1)
        await connection.close()

        let phases = recorder.phases(elapsed: elapsed)
        let timeline = recorder.timeline()
        let errors = recorder.errors
        let report = Report(
            workload: workload, keyspace: keyspace, consistency: consistency ?? "the keyspace's",
            concurrency: concurrency, valueBytes: valueBytes,
            whole: phases.whole, beforeSplit: phases.before, afterSplit: phases.after, errors: errors,
            lastError: recorder.lastError, timeline: timeline,
            marks: try marks().map { ["second": "\($0.second)", "label": $0.label] })
        print(report.whole.line(workload))
        if let split, let before = phases.before, let after = phases.after {
            print(before.line("  before \(split) s"))
            print(after.line("  after \(split) s"))
        }
        if let output {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(report).write(to: URL(fileURLWithPath: output))
        }
        if let plot {
            let title =
                "kvbench \(workload), keyspace \(keyspace), \(consistency ?? "its levels"), \(concurrency) in flight, \(valueBytes)-byte values"
            try Plot.svg(title: title, timeline: timeline, marks: try marks())
                .write(toFile: plot, atomically: true, encoding: .utf8)
        }
        if errors > 0 {
            FileHandle.standardError.write(
                Data("kvbench: \(errors) errors; last: \(recorder.lastError ?? "")\n".utf8))
            throw ExitCode(1)
        }
    }

    /// Every second, the last whole second's throughput, p99 and errors on stderr, until cancelled.
    private static func reportProgress(_ recorder: Recorder, started: ContinuousClock.Instant) async {
        var second = 1
        while !Task.isCancelled {
            try? await Task.sleep(until: started + .seconds(second))
            guard !Task.isCancelled else { return }
            if let (last, total) = recorder.second(second - 1) {
                FileHandle.standardError.write(
                    Data(
                        String(
                            format: "kvbench: %d s, %d ops, %d ops/s, p99 %.2f ms, %d errors\n", second, total,
                            last.operations, last.p99Millis, last.errors
                        ).utf8))
            }
            second += 1
        }
    }

    private func makeClient() throws -> KVClient {
        var configuration: KVClientConfiguration
        do {
            configuration = try KVClientConfiguration(
                clusterFile: cluster, endpoints: endpoints, clusterID: clusterID, caFile: ca, certificateFile: cert,
                keyFile: key, environment: ProcessInfo.processInfo.environment)
        } catch let error as KVClientError where error.isInvalidArgument {
            throw ValidationError(error.message)
        }
        configuration.readFromAll = readFromAll
        return try KVClient(configuration: configuration)
    }
}

struct Report: Encodable {
    var workload: String
    var keyspace: String
    var consistency: String
    var concurrency: Int
    var valueBytes: Int
    var whole: Phase
    var beforeSplit: Phase?
    var afterSplit: Phase?
    var errors: Int
    var lastError: String?
    var timeline: [Recorder.Second]
    var marks: [[String: String]]
}
