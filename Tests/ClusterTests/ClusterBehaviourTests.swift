import Foundation
import KVClient
import KVConfig
import KVCore
import KVTLS
import Synchronization
import Testing

extension RealProcessTests.FirstHalf {
    /// What the SDK promises beyond single requests: ordering across clients with skewed clocks,
    /// starting from one seed address, and no failed request while a node dies under load.
    @Suite(.timeLimit(.minutes(5)))
    struct ClusterBehaviourTests {
        @Test func writerWithAClockAnHourBehindStillWinsWithALaterVersion() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 185)
            defer { cluster.tearDown() }
            try cluster.startAll()
            let punctual = try cluster.client()
            var configuration = KVClientConfiguration(
                cluster: try ClusterFile.load(path: cluster.clusterFile),
                tls: TLSConfiguration(
                    caFile: "\(cluster.certs)/ca.pem", certificateFile: "\(cluster.certs)/client.pem",
                    keyFile: "\(cluster.certs)/client-key.pem"))
            configuration.wallClockMillis = { KVClientConfiguration.systemMillis() - 3_600_000 }
            let late = try KVClient(configuration: configuration)

            let key = Array("skewed".utf8)
            let first = try await punctual.put(key, value: Array("first".utf8))
            let second = try await late.put(key, value: Array("second".utf8))
            #expect(second > first, "a write acknowledged later must carry a greater version")
            #expect(try await punctual.get(key)?.value == Array("second".utf8))
            #expect(try await late.get(key)?.version == second)
            await punctual.close()
            await late.close()
        }

        @Test func clientStartsFromOneSeedAddress() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 190)
            defer { cluster.tearDown() }
            try cluster.startAll()
            var configuration = KVClientConfiguration(
                endpoints: [cluster.address("n3")],
                tls: TLSConfiguration(
                    caFile: "\(cluster.certs)/ca.pem", certificateFile: "\(cluster.certs)/client.pem",
                    keyFile: "\(cluster.certs)/client-key.pem"))
            configuration.clusterID = "test"
            let client = try KVClient(configuration: configuration)
            let map = try await client.clusterMap()
            #expect(map.nodes.map(\.id) == cluster.ids)
            #expect(map.replicationFactor == 3)
            for index in 0..<20 {
                try await client.put(Array("seeded-\(index)".utf8), value: Array("\(index)".utf8))
            }
            for index in 0..<20 {
                #expect(try await client.get(Array("seeded-\(index)".utf8))?.value == Array("\(index)".utf8))
            }
            await client.close()
        }

        @Test func noRequestFailsWhileANodeDiesUnderLoad() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 195)
            defer { cluster.tearDown() }
            try cluster.startAll()
            let clientsCount = 4
            let operationsPerClient = 2_500
            let clients = try (0..<clientsCount).map { _ in try cluster.client() }
            let progress = Progress()
            let log = HistoryLog()
            let deadline = ContinuousClock.now + .seconds(120)

            let results = try await withThrowingTaskGroup(of: ClientResult.self) { group in
                for (index, client) in clients.enumerated() {
                    group.addTask {
                        var result = ClientResult()
                        var generator = SplitMix64(seed: UInt64(index + 1))
                        for sequence in 0..<operationsPerClient where ContinuousClock.now < deadline {
                            // A quarter of the keys are shared by all clients (checked by the history
                            // checker alone); the rest have one writer, so each read can be checked here.
                            let shared = generator.next() % 4 == 0
                            let key =
                                shared ? "shared-k\(generator.next() % 20)" : "c\(index)-k\(generator.next() % 300)"
                            let bytes = Array(key.utf8)
                            do {
                                if generator.next() % 2 == 0 {
                                    let value = "c\(index)-v\(sequence)"
                                    let id = log.invoke(
                                        client: "c\(index)", key: bytes, kind: .write(value: Array(value.utf8)))
                                    do {
                                        let version = try await client.put(bytes, value: Array(value.utf8))
                                        log.complete(id, .wrote(Version(version)))
                                    } catch {
                                        log.complete(id, .failed)
                                        throw error
                                    }
                                    if !shared {
                                        result.acknowledged[key] = value
                                    }
                                } else {
                                    let id = log.invoke(client: "c\(index)", key: bytes, kind: .read)
                                    let found: KVValue?
                                    do {
                                        found = try await client.get(bytes)
                                        log.complete(id, .read(found.map { Version($0.version) }, value: found?.value))
                                    } catch {
                                        log.complete(id, .failed)
                                        throw error
                                    }
                                    let seen = found.map { String(decoding: $0.value, as: UTF8.self) }
                                    if !shared && seen != result.acknowledged[key] {
                                        result.staleReads.append(
                                            "\(key): read \(seen ?? "nothing"), wrote \(result.acknowledged[key] ?? "nothing")"
                                        )
                                    }
                                }
                            } catch {
                                result.failures.append("\(key): \(error)")
                            }
                            progress.advance()
                        }
                        return result
                    }
                }
                group.addTask {
                    // Kill a node midway through the load.
                    while progress.count < clientsCount * operationsPerClient / 2 && ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(10))
                    }
                    cluster.stop("n3", signal: SIGKILL)
                    return ClientResult()
                }
                var merged: [ClientResult] = []
                for try await result in group { merged.append(result) }
                return merged
            }

            let failures = results.flatMap(\.failures)
            let staleReads = results.flatMap(\.staleReads)
            #expect(progress.count >= 10_000, "the load must reach 10,000 operations")
            #expect(failures.isEmpty, "\(failures.count) requests failed at QUORUM, e.g. \(failures.prefix(3))")
            #expect(
                staleReads.isEmpty,
                "\(staleReads.count) reads missed an acknowledged write, e.g. \(staleReads.prefix(3))")

            let violations = RegisterChecker.check(log.operations)
            #expect(violations.isEmpty, "history checker: \(violations.prefix(3).map(\.description))")
            #expect(log.operations.count >= 10_000)

            let reader = try cluster.client()
            var lost: [String] = []
            for result in results {
                for (key, value) in result.acknowledged {
                    let found = try await reader.get(Array(key.utf8))
                    if found.map({ String(decoding: $0.value, as: UTF8.self) }) != value {
                        lost.append(key)
                    }
                }
            }
            #expect(lost.isEmpty, "\(lost.count) acknowledged writes not readable, e.g. \(lost.prefix(5))")
            for client in clients { await client.close() }
            await reader.close()
        }
    }
}

/// What one load client saw.
struct ClientResult: Sendable {
    var acknowledged: [String: String] = [:]
    var failures: [String] = []
    var staleReads: [String] = []
}

/// Operations done so far, across clients.
final class Progress: Sendable {
    private let done = Atomic<Int>(0)

    func advance() {
        done.add(1, ordering: .relaxed)
    }

    var count: Int { done.load(ordering: .relaxed) }
}

/// A history of real operations, recorded from several tasks, for `RegisterChecker`.
final class HistoryLog: Sendable {
    private let recorder = Mutex(HistoryRecorder())
    private let start = ContinuousClock.now

    private var nanoseconds: UInt64 {
        let elapsed = ContinuousClock.now - start
        return UInt64(elapsed.components.seconds) * 1_000_000_000
            + UInt64(elapsed.components.attoseconds / 1_000_000_000)
    }

    func invoke(client: String, key: [UInt8], kind: HistoryOperation.Kind) -> Int {
        let now = nanoseconds
        return recorder.withLock { $0.invoke(client: client, key: key, kind: kind, at: now) }
    }

    func complete(_ id: Int, _ outcome: HistoryOperation.Outcome) {
        let now = nanoseconds
        recorder.withLock { $0.complete(id, outcome: outcome, at: now) }
    }

    var operations: [HistoryOperation] { recorder.withLock { $0.operations } }
}
