import Foundation
import KVCore
import KVRPC
import KVWire
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import KVClient

extension RealProcessTests.FirstHalf {
    /// A client on the application's own event loop (`KVClientConfiguration.eventLoopGroup`) and tasks
    /// on that loop (`KVEventLoopExecutor`), against a real node: the connections run on the given loop,
    /// the tasks resume on it, and kvbench's `--event-loops` drives a node that way.
    @Suite(.timeLimit(.minutes(3)))
    struct EventLoopClusterTests {
        @Test func aClientAndItsCallersRunOnTheLoopTheyAreGiven() async throws {
            let node = try NodeHarness(host: 59)
            defer { node.tearDown() }
            try node.start()
            var configuration = KVClientConfiguration(
                endpoints: [node.endpoint], clusterID: "quorumkv",
                tls: KVTLSConfiguration(
                    caFile: "\(node.certs)/ca.pem", certificateFile: "\(node.certs)/client.pem",
                    keyFile: "\(node.certs)/client-key.pem"))
            #expect(try await sdkEventLoopExample(configuration: configuration) == "one thread")

            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let loop = group.next()
            configuration.eventLoopGroup = group
            let client = try KVClient(configuration: configuration)
            try await withTaskExecutorPreference(KVEventLoopExecutor(eventLoop: loop)) {
                for index in 0..<20 {
                    try await client.put("loop:\(index)", value: "v\(index)")
                    #expect(loop.inEventLoop, "the task resumed off its loop after a put")
                    #expect(try await client.get("loop:\(index)", as: String.self) == "v\(index)")
                    #expect(loop.inEventLoop, "the task resumed off its loop after a get")
                }
            }
            // The connection to the node runs on the group's one loop, not on NIO's shared group.
            let topology = try await client.currentTopology()
            let connectionLoops = Mutex<[ObjectIdentifier]>([])
            let answer = try await client.send(to: "n1", in: topology) { connection in
                connectionLoops.withLock { $0.append(ObjectIdentifier(connection.eventLoop)) }
                return .pingRequest(PingRequest(epoch: 0, clock: 0))
            }.get()
            #expect(throws: Never.self) { try answer.get() }
            #expect(connectionLoops.withLock { $0 } == [ObjectIdentifier(loop)])
            await client.close()
            try await group.shutdownGracefully()
        }

        @Test func kvbenchDrivesANodeFromSeveralEventLoops() throws {
            let node = try NodeHarness(host: 60)
            defer { node.tearDown() }
            try node.start()
            let flags = [
                "--endpoints", node.endpoint, "--ca", "\(node.certs)/ca.pem", "--cert", "\(node.certs)/client.pem",
                "--key", "\(node.certs)/client-key.pem", "--concurrency", "8", "--keys", "200", "--quiet",
            ]
            let output = try TemporaryDirectory()
            defer { output.remove() }
            /// Runs kvbench with `arguments` and returns its JSON report's `eventLoops`.
            func eventLoops(_ arguments: [String], name: String) throws -> (CommandResult, Int?) {
                let path = "\(output.path)/\(name).json"
                let result = try run("kvbench", flags + arguments + ["--output", path])
                expectSuccess(result)
                let report =
                    try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
                    as? [String: Any]
                return (result, report?["eventLoops"] as? Int)
            }
            let (result, loops) = try eventLoops(
                ["--event-loops", "2", "--workload", "a", "--requests-max", "2000", "--duration", "30"], name: "run")
            #expect(loops == 2)
            // No more clients than workers.
            let (_, oneLoop) = try eventLoops(
                [
                    "--event-loops", "4", "--concurrency", "1", "--workload", "get", "--skip-load", "--requests-max",
                    "10",
                ],
                name: "one")
            #expect(oneLoop == 1)
            let line = result.stdout.split(separator: "\n").first { $0.contains("ops/s") } ?? ""
            let operations = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            #expect(operations == 2000, "\(result.stdout)")
            #expect(result.stdout.contains("0 errors"), "\(result.stdout)")
            // `--split`: each operation's requests either side of it, in the report and on screen.
            let splitPath = "\(output.path)/split.json"
            let split = try run(
                "kvbench",
                flags + [
                    "--workload", "mixed", "--skip-load", "--duration", "2", "--split", "1", "--output", splitPath,
                ])
            expectSuccess(split)
            let splitReport =
                try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: splitPath)))
                as? [String: Any]
            let sides = (splitReport?["operations"] as? [[String: Any]] ?? []).map { operation in
                (
                    operation["operation"] as? String ?? "",
                    [
                        (operation["beforeSplit"] as? [String: Any])?["operations"] as? Int ?? 0,
                        (operation["afterSplit"] as? [String: Any])?["operations"] as? Int ?? 0,
                    ]
                )
            }
            #expect(sides.map(\.0) == ["read", "update"], "\(split.stdout)")
            #expect(sides.allSatisfy { $0.1.allSatisfy { $0 > 0 } }, "\(sides)")
            #expect(split.stdout.contains("    before the split: p50"), "\(split.stdout)")
            let refused = try run("kvbench", flags + ["--event-loops", "65", "--workload", "get"])
            #expect(refused.status == 64, "\(refused)")
            #expect(refused.stderr.contains("--event-loops must be 0...64"), "\(refused.stderr)")
        }
    }
}
