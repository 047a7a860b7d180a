import Foundation
import KVClient
import KVTLS
import Synchronization
import Testing

/// SIGKILL while many writes are in flight: in `sync` mode, every write the node acknowledged is
/// there after the restart.
extension RealProcessTests.FirstHalf {
    @Suite(.timeLimit(.minutes(5)))
    struct CrashDurabilityTests {
        @Test func sigkillDuringConcurrentWritesLosesNoAcknowledgedWrite() async throws {
            let node = try NodeHarness(host: 106)
            defer { node.tearDown() }
            try node.start()

            var configuration = KVClientConfiguration(
                endpoints: [node.endpoint],
                tls: TLSConfiguration(
                    caFile: "\(node.certs)/ca.pem", certificateFile: "\(node.certs)/client.pem",
                    keyFile: "\(node.certs)/client-key.pem"))
            configuration.requestTimeout = .seconds(5)
            let writer = try KVClient(configuration: configuration)

            let acknowledged = Acknowledged()
            let writersCount = 8
            let writesPerWriterMax = 5_000
            let deadline = ContinuousClock.now + .seconds(30)
            await withTaskGroup(of: Void.self) { group in
                for writerIndex in 0..<writersCount {
                    group.addTask {
                        for sequence in 0..<writesPerWriterMax where ContinuousClock.now < deadline {
                            let key = "w\(writerIndex)-\(sequence)"
                            let value = "value-\(writerIndex)-\(sequence)"
                            do {
                                try await writer.put(Array(key.utf8), value: Array(value.utf8))
                                acknowledged.record(key, value)
                            } catch {
                                return
                            }
                        }
                    }
                }
                group.addTask {
                    // Let writes get going, then kill the node in the middle of them.
                    while acknowledged.count < 200 && ContinuousClock.now < deadline {
                        try? await Task.sleep(for: .milliseconds(5))
                    }
                    node.stop(signal: SIGKILL)
                }
            }
            await writer.close()
            let written = acknowledged.all
            #expect(written.count >= 200)

            try node.start()
            let reader = try KVClient(configuration: configuration)
            var lost: [String] = []
            for (key, value) in written {
                let found = try await reader.get(Array(key.utf8))
                if found.map({ String(decoding: $0.value, as: UTF8.self) }) != value {
                    lost.append(key)
                }
            }
            await reader.close()
            #expect(lost.isEmpty, "\(lost.count) of \(written.count) acknowledged writes lost, e.g. \(lost.prefix(5))")
        }
    }
}

/// The writes a node acknowledged, shared by the writer tasks.
final class Acknowledged: Sendable {
    private let writes = Mutex<[String: String]>([:])

    func record(_ key: String, _ value: String) {
        writes.withLock { $0[key] = value }
    }

    var count: Int { writes.withLock { $0.count } }
    var all: [String: String] { writes.withLock { $0 } }
}
