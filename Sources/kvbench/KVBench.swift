import ArgumentParser
import Foundation
import KVClient
import KVConfig
import KVCore
import KVTLS
import KVWorkload
import NIOCore

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

            --mode put|get|mixed runs puts, gets or half of each; --workload a|b|c|d|f a YCSB core \
            workload (operation mix and key distribution as YCSB's), reported per operation type with \
            p99.9 and max too. --target-rate R starts R requests per second on a fixed schedule (open \
            loop) and measures latency from each request's intended start, so a stall counts for every \
            request that should have started during it (coordinated omission corrected); the service \
            time (send to answer) is reported beside it. --warmup S runs the load S seconds first, \
            unmeasured. --seed N replays the operation and key choice.
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

    @Option(
        help: """
            The YCSB core workload: a (50 % reads, 50 % updates), b (95/5), c (reads only), d (95 % reads, \
            5 % inserts, latest keys) or f (50 % reads, 50 % read-modify-writes); e needs range scans, which \
            QuorumKV does not have. put, get and mixed are accepted as the older spelling of --mode.
            """)
    var workload: String?

    @Option(help: "put, get or mixed (50 % each), uniform keys unless --distribution (default: put).")
    var mode: String?

    @Option(help: "uniform, zipfian (YCSB's scrambled, 0.99) or latest (default: the workload's; uniform for a mode).")
    var distribution: String?

    @Option(
        name: .customLong("target-rate"), parsing: .unconditional,
        help: """
            Operations per second over all workers, started on a fixed schedule (open loop); latency is \
            then from each request's intended start (1...\(Self.targetRateMax)).
            """)
    var targetRate: Int?

    @Option(
        parsing: .unconditional,
        help:
            "Seconds of the same load before the measured run; its figures are dropped (0...\(Int(Self.warmupSecondsMax)))."
    )
    var warmup = 0.0

    @Option(help: "Seed of the operation and key choice (default: random, printed on stderr).")
    var seed: UInt64?

    @Option(help: "one, quorum, all or a number of replicas, for reads and writes (default: the keyspace's).")
    var consistency: String?

    @Flag(
        name: .customLong("read-from-all"),
        help: "Ask all N replicas on every get and take the first R answers (the SDK's readFromAll), not the first R.")
    var readFromAll = false

    @Option(help: "The keyspace of the keys (env QUORUMKV_KEYSPACE); its ring, N and default levels.")
    var keyspace = ProcessInfo.processInfo.environment["QUORUMKV_KEYSPACE"] ?? Keyspace.defaultName

    @Option(help: "Requests in flight at once (with --target-rate, at most: one per worker sharing the rate).")
    var concurrency = 50

    @Option(
        help:
            "Keys per batch (1...\(Limits.batchKeysMax)): each worker draws this many requests at once and sends its reads as one get(keys:) and its updates as one put(_:) (inserts and read-modify-writes one by one); latency is the batch's (default 1: every request on its own)."
    )
    var batch = 1

    @Option(
        name: .customLong("event-loops"),
        help:
            "0: one SDK client on NIO's shared event loops, its workers on Swift's global executor (how most applications call the SDK). N (1...\(Self.eventLoopsMax); no more than --concurrency are made): N clients with one event loop each, the workers shared among them and run on their client's loop, so no request or answer changes threads."
    )
    var eventLoops = 0

    @Option(help: "Seconds to run.")
    var duration = 10.0

    @Option(help: "Also report requests started before and after this many seconds, separately.")
    var split: Double?

    @Option(name: .customLong("value-bytes"), help: "Bytes per value.")
    var valueBytes = 100

    @Option(help: "Distinct keys written before the run (1...\(Self.keysMax)); inserts add more.")
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

    /// The most keys: their names are made once and kept in memory (about 1 GB at this many).
    static let keysMax = 20_000_000
    /// The highest `--target-rate`, far above what one client process sends.
    static let targetRateMax = 1_000_000
    /// The most `--event-loops`.
    static let eventLoopsMax = 64
    /// The longest `--warmup`.
    static let warmupSecondsMax = 600.0

    func validate() throws {
        guard keyPrefix.utf8.count <= 64 else { throw ValidationError("--key-prefix takes at most 64 bytes") }
        _ = try plan()
        guard consistency.map({ ConsistencyLevel(parsing: $0) != nil }) ?? true else {
            throw ValidationError("--consistency must be one, quorum, all or a number")
        }
        guard (1...4096).contains(concurrency) else { throw ValidationError("--concurrency must be 1...4096") }
        guard (0...Self.eventLoopsMax).contains(eventLoops) else {
            throw ValidationError("--event-loops must be 0...\(Self.eventLoopsMax)")
        }
        guard (1...Limits.batchKeysMax).contains(batch) else {
            throw ValidationError("--batch must be 1...\(Limits.batchKeysMax)")
        }
        guard duration > 0, duration <= 3600 else { throw ValidationError("--duration must be 0...3600 seconds") }
        guard (1...Self.keysMax).contains(keys) else { throw ValidationError("--keys must be 1...\(Self.keysMax)") }
        guard requestsMax > 0 else { throw ValidationError("--requests-max must be positive") }
        if let targetRate, !(1...Self.targetRateMax).contains(targetRate) {
            throw ValidationError("--target-rate must be 1...\(Self.targetRateMax) operations per second")
        }
        guard warmup >= 0, warmup <= Self.warmupSecondsMax else {
            throw ValidationError("--warmup must be 0...\(Int(Self.warmupSecondsMax)) seconds")
        }
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
        let plan = try plan()
        let seed = self.seed ?? UInt64.random(in: .min ... .max)
        FileHandle.standardError.write(Data("kvbench: seed \(seed) (--seed \(seed) draws the same requests)\n".utf8))
        // No more clients than workers: a client without a worker would only ping.
        let connections = try BenchClients(
            eventLoops: min(eventLoops, concurrency), configuration: try makeConfiguration(), keyspace: keyspace)
        let level = consistency.flatMap(KVConsistency.init(parsing:))
        let value = ByteBuffer(repeating: UInt8(ascii: "x"), count: valueBytes)
        let keys = LoadDriver.Keys(count: self.keys, prefix: keyPrefix)

        if plan.loadsKeys && !skipLoad {
            FileHandle.standardError.write(Data("kvbench: loading \(self.keys) keys\n".utf8))
            let concurrency = self.concurrency
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<concurrency {
                    let client = connections.client(forWorker: worker)
                    group.addTask(executorPreference: connections.executor(forWorker: worker)) {
                        for index in stride(from: worker, to: keys.loadedNames.count, by: concurrency) {
                            try await client.put(keys.loadedNames[index], value: value, consistency: level)
                        }
                    }
                }
                try await group.waitForAll()
            }
        }

        // A Zipfian computes ζ here, once (bounded: see ZipfianGenerator); the workers copy it.
        let generator = RequestGenerator(
            mix: plan.mix, keys: KeyChooser(plan.distribution, keyCount: self.keys))
        let driver = LoadDriver(
            clients: connections, level: level, value: value, keys: keys, generator: generator,
            concurrency: concurrency,
            targetRate: targetRate, perWorkerMax: max(1, requestsMax / concurrency / batch), batch: batch, seed: seed)
        if warmup > 0 {
            FileHandle.standardError.write(Data("kvbench: warming up for \(warmup) s (not measured)\n".utf8))
            let warmupRecorder = Recorder(split: nil)
            let progress = quiet ? nil : Task { await Self.reportProgress(warmupRecorder, label: "warm-up ") }
            _ = await driver.run(phase: 0, duration: .milliseconds(Int(warmup * 1000)), recorder: warmupRecorder)
            progress?.cancel()
        }
        let recorder = Recorder(split: split.map { .milliseconds(Int($0 * 1000)) })
        let progress = quiet ? nil : Task { await Self.reportProgress(recorder, label: "") }
        let elapsed = await driver.run(phase: 1, duration: .milliseconds(Int(duration * 1000)), recorder: recorder)
        progress?.cancel()
        await connections.close()

        let phases = recorder.phases(elapsed: elapsed)
        let timeline = recorder.timeline()
        let errors = recorder.errors
        let report = Report(
            workload: plan.label, keyspace: keyspace, consistency: consistency ?? "the keyspace's",
            concurrency: concurrency, eventLoops: connections.executors.count, valueBytes: valueBytes,
            whole: phases.whole, beforeSplit: phases.before, afterSplit: phases.after, errors: errors,
            lastError: recorder.lastError, timeline: timeline,
            marks: try marks().map { ["second": "\($0.second)", "label": $0.label] },
            distribution: plan.distribution.rawValue, seed: seed, keys: self.keys, keysInserted: keys.inserted,
            targetRate: targetRate,
            latencyFrom: targetRate == nil ? "send" : "intended start",
            serviceTime: targetRate == nil ? nil : recorder.serviceTime(elapsed: elapsed),
            warmupSeconds: warmup,
            operations: recorder.operations(elapsed: elapsed, withServiceTimes: targetRate != nil))
        print(report.whole.line(plan.label))
        if let split, let before = phases.before, let after = phases.after {
            print(before.line("  before \(split) s"))
            print(after.line("  after \(split) s"))
        }
        if plan.reportsOperations || targetRate != nil {
            print("  all: \(report.whole.percentiles), \(errors) errors")
            for operation in report.operations {
                print(operation.line())
            }
        }
        if let targetRate, let serviceTime = report.serviceTime {
            print(
                "  latency above is from each request's intended start (target \(targetRate) ops/s, open loop); "
                    + "service time (send to answer, uncorrected): \(serviceTime.percentiles)")
        }
        if report.keysInserted > 0 {
            print("  inserts added \(report.keysInserted) keys to the \(self.keys) loaded (warm-up included)")
        }
        if warmup > 0 {
            print("  after a \(warmup) s warm-up of the same load, not counted above")
        }
        if let output {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(report).write(to: URL(fileURLWithPath: output))
        }
        if let plot {
            let title =
                "kvbench \(plan.label), keyspace \(keyspace), \(consistency ?? "its levels"), \(concurrency) in flight, \(valueBytes)-byte values"
            try Plot.svg(title: title, timeline: timeline, marks: try marks())
                .write(toFile: plot, atomically: true, encoding: .utf8)
        }
        if errors > 0 {
            FileHandle.standardError.write(
                Data("kvbench: \(errors) errors; last: \(recorder.lastError ?? "")\n".utf8))
            throw ExitCode(1)
        }
    }

    /// Every second, the last whole second's throughput, p99 and errors on stderr, until cancelled;
    /// `label` says which phase (empty for the measured one).
    private static func reportProgress(_ recorder: Recorder, label: String) async {
        let started = ContinuousClock.now
        var second = 1
        while !Task.isCancelled {
            try? await Task.sleep(until: started + .seconds(second))
            guard !Task.isCancelled else { return }
            if let (last, total) = recorder.second(second - 1) {
                FileHandle.standardError.write(
                    Data(
                        String(
                            format: "kvbench: %@%d s, %d ops, %d ops/s, p99 %.2f ms, %d errors\n", label, second,
                            total, last.operations, last.p99Millis, last.errors
                        ).utf8))
            }
            second += 1
        }
    }

    private func makeConfiguration() throws -> KVClientConfiguration {
        var configuration: KVClientConfiguration
        do {
            configuration = try KVClientConfiguration(
                clusterFile: cluster, endpoints: endpoints, clusterID: clusterID, caFile: ca, certificateFile: cert,
                keyFile: key, environment: ProcessInfo.processInfo.environment)
        } catch let error as KVClientError where error.isInvalidArgument {
            throw ValidationError(error.message)
        }
        configuration.readFromAll = readFromAll
        return configuration
    }
}

struct Report: Encodable {
    var workload: String
    var keyspace: String
    var consistency: String
    var concurrency: Int
    /// Clients on their own event loop, their workers on it (`--event-loops`); 0: the SDK's defaults.
    var eventLoops: Int
    var valueBytes: Int
    var whole: Phase
    var beforeSplit: Phase?
    var afterSplit: Phase?
    var errors: Int
    var lastError: String?
    var timeline: [Recorder.Second]
    var marks: [[String: String]]
    /// How keys were picked: uniform, zipfian or latest.
    var distribution: String
    /// The seed of the operation and key choice (`--seed`).
    var seed: UInt64
    /// Keys written before the run (`--keys`), and keys its inserts added (warm-up included).
    var keys: Int
    var keysInserted: Int
    /// Operations per second asked for (open loop); nil for a closed loop.
    var targetRate: Int?
    /// Where latencies start: "intended start" with a target rate (coordinated omission corrected),
    /// "send" without.
    var latencyFrom: String
    /// The whole run's service times (send to answer), with a target rate.
    var serviceTime: Phase?
    /// Seconds of load before the measured run, not in these figures.
    var warmupSeconds: Double
    /// Each operation type that ran: read, update, insert, read-modify-write.
    var operations: [OperationFigures]
}
