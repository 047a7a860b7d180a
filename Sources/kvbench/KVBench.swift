import ArgumentParser
import Foundation
import KVClient
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
            prints ops/s and p50/p95/p99 latency. Certificates and endpoints as for kvctl
            (flags or QUORUMKV_* variables).
            """
    )

    @Option(help: "Comma-separated node addresses HOST:PORT (env QUORUMKV_ENDPOINTS).")
    var endpoints: String?

    @Option(help: "Cluster CA certificate (env QUORUMKV_CA).")
    var ca: String?

    @Option(help: "Client certificate (env QUORUMKV_CERT).")
    var cert: String?

    @Option(help: "Client private key (env QUORUMKV_KEY).")
    var key: String?

    @Option(help: "put, get or mixed (50 % each).")
    var workload = "put"

    @Option(help: "Requests in flight at once.")
    var concurrency = 50

    @Option(help: "Seconds to run.")
    var duration = 10.0

    @Option(name: .customLong("value-bytes"), help: "Bytes per value.")
    var valueBytes = 100

    @Option(help: "Distinct keys.")
    var keys = 10_000

    @Option(name: .customLong("requests-max"), help: "Stop after this many requests even if time remains.")
    var requestsMax = 10_000_000

    @Option(help: "Also write the results as JSON to this file.")
    var output: String?

    func validate() throws {
        guard ["put", "get", "mixed"].contains(workload) else {
            throw ValidationError("--workload must be put, get or mixed")
        }
        guard (1...4096).contains(concurrency) else { throw ValidationError("--concurrency must be 1...4096") }
        guard duration > 0, duration <= 3600 else { throw ValidationError("--duration must be 0...3600 seconds") }
        guard keys > 0 else { throw ValidationError("--keys must be positive") }
        guard valueBytes >= 0, valueBytes <= Limits.valueBytesMax else {
            throw ValidationError("--value-bytes is too large")
        }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let endpoints = endpoints ?? environment["QUORUMKV_ENDPOINTS"],
            let ca = ca ?? environment["QUORUMKV_CA"], let cert = cert ?? environment["QUORUMKV_CERT"],
            let key = key ?? environment["QUORUMKV_KEY"]
        else {
            throw ValidationError("give --endpoints, --ca, --cert and --key (or source .cluster/env)")
        }
        let configuration = KVClientConfiguration(
            endpoints: endpoints.split(separator: ",").map(String.init),
            tls: TLSConfiguration(caFile: ca, certificateFile: cert, keyFile: key))
        let client = try KVClient(configuration: configuration)
        let value = [UInt8](repeating: UInt8(ascii: "x"), count: valueBytes)
        let keyNames = (0..<keys).map { Array("bench-\($0)".utf8) }

        if workload != "put" {
            FileHandle.standardError.write(Data("kvbench: loading \(keys) keys\n".utf8))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<concurrency {
                    group.addTask {
                        for index in stride(from: worker, to: keys, by: concurrency) {
                            try await client.put(keyNames[index], value: value)
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
                    while ContinuousClock.now < deadline && result.latencies.count + result.errors < perWorkerMax {
                        let keyIndex = Int(generator.next() % UInt64(keyNames.count))
                        let isPut = workload == "put" || (workload == "mixed" && generator.next() & 1 == 0)
                        let begin = ContinuousClock.now
                        do {
                            if isPut {
                                try await client.put(keyNames[keyIndex], value: value)
                            } else {
                                _ = try await client.get(keyNames[keyIndex])
                            }
                            result.latencies.append(ContinuousClock.now - begin)
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
                merged.latencies += result.latencies
                merged.errors += result.errors
                merged.lastError = result.lastError ?? merged.lastError
            }
            return merged
        }
        let elapsed = ContinuousClock.now - started
        await client.close()

        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let sorted = results.latencies.sorted()
        func percentile(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let index = min(sorted.count - 1, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1)
            let value = sorted[max(0, index)]
            return Double(value.components.seconds) * 1000 + Double(value.components.attoseconds) / 1e15
        }
        let report = Report(
            workload: workload, concurrency: concurrency, valueBytes: valueBytes, seconds: seconds,
            operations: sorted.count, errors: results.errors, opsPerSecond: Double(sorted.count) / seconds,
            p50Millis: percentile(50), p95Millis: percentile(95), p99Millis: percentile(99),
            maxMillis: percentile(100), lastError: results.lastError)
        print(
            String(
                format: "%@: %d ops in %.1f s = %.0f ops/s, p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, errors %d",
                workload, report.operations, seconds, report.opsPerSecond, report.p50Millis, report.p95Millis,
                report.p99Millis, report.errors))
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
}

struct WorkerResult: Sendable {
    var latencies: [Duration] = []
    var errors = 0
    var lastError: String?
}

struct Report: Encodable {
    var workload: String
    var concurrency: Int
    var valueBytes: Int
    var seconds: Double
    var operations: Int
    var errors: Int
    var opsPerSecond: Double
    var p50Millis: Double
    var p95Millis: Double
    var p99Millis: Double
    var maxMillis: Double
    var lastError: String?
}

/// A small seeded generator, so that runs choose the same keys.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
