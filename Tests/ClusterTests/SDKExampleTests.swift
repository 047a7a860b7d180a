import Foundation
import KVClient
import KVConfig
import KVCore
import KVTLS
import Testing

/// Writes, reads and deletes one key; returns what the read saw.
func sdkExample(clusterFile: String, certificates: String) async throws -> String? {
    let cluster = try ClusterFile.load(path: clusterFile)
    let tls = TLSConfiguration(
        caFile: "\(certificates)/ca.pem",
        certificateFile: "\(certificates)/client.pem",
        keyFile: "\(certificates)/client-key.pem"
    )
    var configuration = KVClientConfiguration(cluster: cluster, tls: tls)
    configuration.requestTimeout = .seconds(5)
    let client = try KVClient(configuration: configuration)

    let key = Array("user:42".utf8)
    let version = try await client.put(key, value: Array("Ada Lovelace".utf8))
    let found = try await client.get(key, consistency: .quorum)
    precondition(found?.version == version)
    try await client.delete(key, consistency: .all)
    await client.close()
    return found.map { String(decoding: $0.value, as: UTF8.self) }
}

extension RealProcessTests {
    @Suite(.timeLimit(.minutes(3)))
    struct SDKExampleTests {
        @Test func exampleRunsAgainstARealCluster() async throws {
            let cluster = try ClusterHarness(nodes: 4, firstHost: 141)
            defer { cluster.tearDown() }
            try cluster.startAll()
            let seen = try await sdkExample(clusterFile: cluster.clusterFile, certificates: cluster.certs)
            #expect(seen == "Ada Lovelace")
            #expect(try cluster.kvctl(["get", "user:42"]).status == 2)
        }

        @Test func documentationShowsThisFilesExample() throws {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent()
            let page = try String(contentsOf: root.appendingPathComponent("docs/sdk.md"), encoding: .utf8)
            let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
            let start = try #require(page.range(of: "```swift\nimport KVClient"))
            let end = try #require(page.range(of: "\n```", range: start.upperBound..<page.endIndex))
            let example = String(page[page.index(start.lowerBound, offsetBy: "```swift\n".count)..<end.lowerBound])
            let body = try #require(example.range(of: "/// Writes, reads"))
            #expect(
                source.contains(String(example[body.lowerBound...])), "docs/sdk.md and SDKExampleTests.swift differ")
        }
    }
}
