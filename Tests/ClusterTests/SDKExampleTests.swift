import Foundation
import KVClient
import NIOCore
import Testing

extension RealProcessTests.FirstHalf {
    /// The SDK's examples (SDKExamples.swift, SDKServiceExample.swift; SDKEventLoopExample.swift runs in
    /// EventLoopClusterTests) run against a real cluster, and
    /// every Swift example README.md, docs/sdk.md and the DocC articles show is one of them, verbatim.
    @Suite(.timeLimit(.minutes(3)))
    struct SDKExampleTests {
        @Test func examplesRunAgainstARealCluster() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 141)
            defer { cluster.tearDown() }
            try cluster.startAll()
            let seen = try await sdkExample(clusterFile: cluster.clusterFile, certificates: cluster.certs)
            #expect(seen == "Ada Lovelace")
            #expect(try cluster.kvctl(["get", "user:42"]).status == 2)

            let configuration = try KVClientConfiguration(
                clusterFile: cluster.clusterFile,
                tls: KVTLSConfiguration(
                    caFile: "\(cluster.certs)/ca.pem", certificateFile: "\(cluster.certs)/client.pem",
                    keyFile: "\(cluster.certs)/client-key.pem"))
            let user = try await withKVClient(configuration: configuration) { try await sdkJSONExample(client: $0) }
            #expect(user == User(name: "Ada Lovelace", languages: ["en", "fr"]))
            #expect(try cluster.kvctl(["get", "user:ada"]).stdout.contains(#""name":"Ada Lovelace""#))

            let created = try cluster.kvctl(
                ["keyspace", "create", "sessions", "--rf", "3", "--read", "one", "--write", "one", "--ttl", "1h"])
            #expect(created.status == 0, "\(created.stderr)")
            try await withKVClient(configuration: configuration) { client in
                let session = try await sdkKeyspaceExample(client: client, token: "t-1")
                #expect(session == "user:42")
                // The same key in the default keyspace is another key.
                let inDefault = try await client.get("t-1")
                #expect(inDefault == nil)
            }

            let settings = try await withKVClient(configuration: configuration) {
                try await sdkBatchExample(client: $0)
            }
            #expect(settings == ["dark", "fr"])

            // The group ended when the greeter did (no signal, no timer) and closed the client.
            let closed = try await sdkServiceExample(configuration: configuration)
            #expect(try cluster.kvctl(["get", "greeting"]).stdout.contains("hello"))
            await #expect(throws: KVClientError.self) { try await closed.get("greeting") }

            // Values of every kind of bytes read back as written, in any other kind.
            try await withKVClient(configuration: configuration) { client in
                let text = "Grüße"
                try await client.put(Substring("bytes:string"), value: text)
                #expect(try await client.get("bytes:string", as: Data.self) == Data(text.utf8))
                try await client.put(Data("bytes:data".utf8), value: Data(text.utf8))
                #expect(try await client.get(Array("bytes:data".utf8), as: String.self) == text)
                try await client.put("bytes:buffer", value: ByteBuffer(string: text))
                #expect(try await client.get("bytes:buffer", as: ByteBuffer.self) == ByteBuffer(string: text))
                #expect(try await client.get("bytes:buffer")?.value(as: Substring.self) == Substring(text))
                #expect(try await client.get("bytes:none", as: String.self) == nil)
            }
        }

        @Test func withKVClientAndACancelledRunCloseTheClient() async throws {
            struct Failure: Error {}
            let cluster = try ClusterHarness(nodes: 4, firstHost: 141)
            defer { cluster.tearDown() }
            try cluster.startAll()
            let configuration = try KVClientConfiguration(
                clusterFile: cluster.clusterFile,
                tls: KVTLSConfiguration(
                    caFile: "\(cluster.certs)/ca.pem", certificateFile: "\(cluster.certs)/client.pem",
                    keyFile: "\(cluster.certs)/client-key.pem"))
            var used: KVClient?
            await #expect(throws: Failure.self) {
                try await withKVClient(configuration: configuration) { client in
                    used = client
                    try await client.put("scoped", value: "yes")
                    throw Failure()
                }
            }
            let client = try #require(used)
            let error = await #expect(throws: KVClientError.self) { try await client.get("scoped") }
            #expect(error?.isUnavailable == true, "\(String(describing: error))")
            #expect(try cluster.kvctl(["get", "scoped"]).stdout.contains("yes"))

            // A client run as a service outside any group closes when its task is cancelled.
            let service = try KVClient(configuration: configuration)
            try await service.put("service", value: "running")
            let running = Task { try await service.run() }
            running.cancel()
            try await running.value
            let afterCancel = await #expect(throws: KVClientError.self) { try await service.get("service") }
            #expect(afterCancel?.isUnavailable == true, "\(String(describing: afterCancel))")
        }

        @Test func documentationShowsTheExamplesVerbatim() throws {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent()
            func read(_ path: String) throws -> String {
                try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
            }
            let examples = try read("Tests/ClusterTests/SDKExamples.swift")
            let serviceExample = try read("Tests/ClusterTests/SDKServiceExample.swift")
            let eventLoopExample = try read("Tests/ClusterTests/SDKEventLoopExample.swift")
            let catalog = "Sources/KVClient/KVClient.docc"
            let articles = try FileManager.default.contentsOfDirectory(
                atPath: root.appendingPathComponent(catalog).path
            )
            .filter { $0.hasSuffix(".md") }.map { "\(catalog)/\($0)" }
            // The doc comments of the SDK's sources are DocC pages too.
            let sources = try FileManager.default.contentsOfDirectory(
                atPath: root.appendingPathComponent("Sources/KVClient").path
            ).filter { $0.hasSuffix(".swift") }.map { "Sources/KVClient/\($0)" }
            for page in ["README.md", "docs/sdk.md"] + articles + sources {
                var text = try read(page)
                if page.hasSuffix(".swift") {
                    text = text.split(separator: "\n", omittingEmptySubsequences: false)
                        .map { $0.trimmingPrefix(while: \.isWhitespace) }
                        .filter { $0.hasPrefix("///") }
                        .map { $0.dropFirst(3).trimmingPrefix(" ") }
                        .joined(separator: "\n")
                }
                let blocks = Self.swiftBlocks(in: text)
                for block in blocks where !block.hasPrefix(".product(") && !block.hasPrefix(".package(") {
                    #expect(
                        examples.contains(block) || serviceExample.contains(block) || eventLoopExample.contains(block),
                        "\(page) shows Swift code that no test runs:\n\(block)")
                }
                if ["README.md", "docs/sdk.md", "\(catalog)/GettingStarted.md"].contains(page) {
                    #expect(blocks.contains { $0.contains("func sdkExample(") }, "\(page) lacks the SDK example")
                }
            }
        }

        /// The text of every ```swift block of a Markdown page.
        static func swiftBlocks(in page: String) -> [String] {
            var blocks: [String] = []
            var rest = page[...]
            while let start = rest.range(of: "```swift\n") {
                guard let end = rest.range(of: "\n```", range: start.upperBound..<rest.endIndex) else { break }
                blocks.append(String(rest[start.upperBound..<end.lowerBound]))
                rest = rest[end.upperBound...]
            }
            return blocks
        }
    }
}
