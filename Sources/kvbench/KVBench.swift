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
            Runs CONCURRENCY request loops for DURATION seconds (bounded also by --requests-max), then
            prints ops/s and p50/p95/p99 latency. With --split S it also reports the requests started
            before and after S seconds apart (to see what killing a node midway costs). Certificates and
            the cluster as for kvctl (flags or QUORUMKV_* variables).
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

    @Option(help: "one, quorum, all or a number of replicas, for reads and writes.")
    var consistency = "quorum"

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

    func validate() throws {
        guard keyPrefix.utf8.count <= 64 else { throw ValidationError("--key-prefix takes at most 64 bytes") }
        guard ["put", "get", "mixed"].contains(workload) else {
            throw ValidationError("--workload must be put, get or mixed")
        }
        guard ConsistencyLevel(parsing: consistency) != nil else {
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
    }

    func run() async throws {
        let client = try makeClient()
        let level = ConsistencyLevel(parsing: consistency) ?? .quorum
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
        let results = await withTaskGroup(of: WorkerResult.self) { group in
            for worker in 0..<concurrency {
                group.addTask {
                    var result = WorkerResult()
                    var generator = SplitMix64(seed: UInt64(worker) &+ 1)
                    while ContinuousClock.now < deadline && result.samples.count + result.errors < perWorkerMax {
                        let keyIndex = Int(generator.next() % UInt64(keyNames.count))
                        let isPut = workload == "put" || (workload == "mixed" && generator.next() & 1 == 0)
                        let begin = ContinuousClock.now
                        do {
                            if isPut {
                                try await client.put(keyNames[keyIndex], value: value, consistency: level)
                            } else {
                                _ = try await client.get(keyNames[keyIndex], consistency: level)
                            }
                            result.samples.append(Sample(offset: begin - started, latency: ContinuousClock.now - begin))
                        } catch {
                            result.errors += 1
                            result.lastError = "\(error)"
                        }
                    }
                    return result
                }
            }
            var merged = WorkerResult()
            for await result in group {
                merged.samples += result.samples
                merged.errors += result.errors
                merged.lastError = result.lastError ?? merged.lastError
            }
            return merged
        }
        let elapsed = (ContinuousClock.now - started) / .seconds(1)
        await client.close()

        var report = Report(
            workload: workload, consistency: consistency, concurrency: concurrency, valueBytes: valueBytes,
            whole: Phase(samples: results.samples, seconds: elapsed), errors: results.errors,
            lastError: results.lastError)
        print(report.whole.line(workload))
        if let split {
            let cut = Duration.milliseconds(Int(split * 1000))
            report.beforeSplit = Phase(samples: results.samples.filter { $0.offset < cut }, seconds: split)
            report.afterSplit = Phase(samples: results.samples.filter { $0.offset >= cut }, seconds: elapsed - split)
            print(report.beforeSplit!.line("  before \(split) s"))
            print(report.afterSplit!.line("  after \(split) s"))
        }
        if let output {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(report).write(to: URL(fileURLWithPath: output))
        }
        if results.errors > 0 {
            FileHandle.standardError.write(
                Data("kvbench: \(results.errors) errors; last: \(results.lastError ?? "")\n".utf8))
            throw ExitCode(1)
        }
    }

    private func makeClient() throws -> KVClient {
        let configuration: KVClientConfiguration
        do {
            configuration = try KVClientConfiguration(
                clusterFile: cluster, endpoints: endpoints, clusterID: clusterID, caFile: ca, certificateFile: cert,
                keyFile: key, environment: ProcessInfo.processInfo.environment)
        } catch let error as KVClientError where error.isInvalidArgument {
            throw ValidationError(error.message)
        }
        return try KVClient(configuration: configuration)
    }
}

struct Sample: Sendable {
    var offset: Duration
    var latency: Duration
}

struct WorkerResult: Sendable {
    var samples: [Sample] = []
    var errors = 0
    var lastError: String?
}

/// Throughput and latency of a set of requests.
struct Phase: Encodable {
    var operations: Int
    var seconds: Double
    var opsPerSecond: Double
    var p50Millis: Double
    var p95Millis: Double
    var p99Millis: Double
    var maxMillis: Double

    init(samples: [Sample], seconds: Double) {
        let sorted = samples.map(\.latency).sorted()
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let index = min(sorted.count - 1, max(0, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1))
            return sorted[index] / .milliseconds(1)
        }
        operations = sorted.count
        self.seconds = seconds
        opsPerSecond = seconds > 0 ? Double(sorted.count) / seconds : 0
        p50Millis = percentile(50)
        p95Millis = percentile(95)
        p99Millis = percentile(99)
        maxMillis = percentile(100)
    }

    func line(_ label: String) -> String {
        String(
            format: "%@: %d ops in %.1f s = %.0f ops/s, p50 %.2f ms, p95 %.2f ms, p99 %.2f ms", label, operations,
            seconds, opsPerSecond, p50Millis, p95Millis, p99Millis)
    }
}

struct Report: Encodable {
    var workload: String
    var consistency: String
    var concurrency: Int
    var valueBytes: Int
    var whole: Phase
    var beforeSplit: Phase?
    var afterSplit: Phase?
    var errors: Int
    var lastError: String?
}
