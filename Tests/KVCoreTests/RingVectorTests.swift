import Foundation
import KVCore
import Testing

/// `proto-spec/vectors/ring.txt`, in the format RING.md ("Vectors") describes.
struct RingVectors: Sendable {
    struct KeyVector: Sendable, CustomTestStringConvertible {
        var key: [UInt8]
        var token: UInt64
        var preferenceList: [String]
        var testDescription: String { "key \(hex(key))" }
    }

    var replicationFactor: Int
    var tokensPerNode: Int
    var nodes: [RingNode]
    var keys: [KeyVector]

    static let file = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("proto-spec/vectors/ring.txt")

    static func load() -> RingVectors? {
        guard let text = try? String(contentsOf: file, encoding: .utf8) else { return nil }
        return parse(text)
    }

    static func parse(_ text: String) -> RingVectors? {
        var vectors = RingVectors(replicationFactor: 0, tokensPerNode: 0, nodes: [], keys: [])
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let fields = line.split(separator: " ").map(String.init)
            switch (fields.first, fields.count) {
            case ("replication-factor", 2):
                vectors.replicationFactor = Int(fields[1]) ?? 0
            case ("tokens-per-node", 2):
                vectors.tokensPerNode = Int(fields[1]) ?? 0
            case ("node", 2...):
                let tokens = fields.dropFirst(2).compactMap { UInt64($0, radix: 16) }
                guard tokens.count == fields.count - 2 else { return nil }
                vectors.nodes.append(RingNode(id: fields[1], tokens: tokens))
            case ("key", 4):
                guard let key = fields[1] == "-" ? [] : bytes(hex: fields[1]), let token = UInt64(fields[2], radix: 16)
                else { return nil }
                vectors.keys.append(
                    KeyVector(key: key, token: token, preferenceList: fields[3].split(separator: ",").map(String.init))
                )
            default:
                return nil
            }
        }
        return vectors
    }

    /// The file's text; `write` puts it in place.
    static func text(keys: [(key: [UInt8], comment: String?)]) throws -> String {
        let tokensPerNode = TokenAllocator.tokensPerNodeDefault
        let nodes = TokenAllocator.allocate(nodeIDs: nodeIDs(4), tokensPerNode: tokensPerNode)
        let ring = try Ring(nodes: nodes, replicationFactor: 3)
        var lines = [
            "# QuorumKV ring vectors; the format is in ../RING.md, \"Vectors\".",
            "# The ring: TokenAllocator.allocate(nodeIDs: [n1, n2, n3, n4], tokensPerNode: \(tokensPerNode)).",
            "replication-factor 3",
            "tokens-per-node \(tokensPerNode)",
        ]
        for node in nodes {
            lines.append((["node", node.id] + node.tokens.map { Token($0).description }).joined(separator: " "))
        }
        for (key, comment) in keys {
            if let comment {
                lines.append("# \(comment)")
            }
            let token = Token(key: key)
            let list = ring.preferenceList(for: token).joined(separator: ",")
            lines.append("key \(key.isEmpty ? "-" : hex(key)) \(token) \(list)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func sampleKeys() throws -> [(key: [UInt8], comment: String?)] {
        var keys: [(key: [UInt8], comment: String?)] = [
            "", "a", "abc", "user:123", "user:42", "hello", "The quick brown fox jumps over the lazy dog",
            "key-0", "key-1", "key-2", "key-3", "key-4", "key-5",
        ].map { (Array($0.utf8), "\"\($0)\"") }
        keys.append(([0x00, 0x01, 0x02, 0xFF], "binary: 00 01 02 ff"))
        keys.append(((0..<40).map { UInt8($0) }, "binary: the 40 bytes 00 01 ... 27"))
        // A key whose token is above every vnode token: it wraps to the smallest.
        let largest = TokenAllocator.allocate(nodeIDs: nodeIDs(4)).flatMap(\.tokens).max()!
        let wrapping = try #require(
            (0..<100_000).lazy.map { "wrap-\($0)" }.first { Token(key: Array($0.utf8)).value > largest })
        keys.append((Array(wrapping.utf8), "\"\(wrapping)\": token above the largest vnode token, wraps"))
        return keys
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

func bytes(hex: String) -> [UInt8]? {
    let digits = Array(hex.utf8)
    guard digits.count % 2 == 0 else { return nil }
    return stride(from: 0, to: digits.count, by: 2).compactMap {
        UInt8(String(decoding: digits[$0..<$0 + 2], as: UTF8.self), radix: 16)
    }
}

@Suite("Ring vectors")
struct RingVectorTests {
    @Test("ring.txt parses and describes the default allocation of n1...n4")
    func vectorRing() throws {
        let vectors = try #require(RingVectors.load(), "cannot read or parse \(RingVectors.file.path)")
        #expect(vectors.keys.count >= 12)
        #expect(vectors.nodes == TokenAllocator.allocate(nodeIDs: nodeIDs(4), tokensPerNode: vectors.tokensPerNode))
        #expect(vectors.tokensPerNode == TokenAllocator.tokensPerNodeDefault)
    }

    @Test("the ring reproduces every key vector", arguments: RingVectors.load()?.keys ?? [])
    func keyVector(_ vector: RingVectors.KeyVector) throws {
        let vectors = try #require(RingVectors.load())
        let ring = try Ring(nodes: vectors.nodes, replicationFactor: vectors.replicationFactor)
        #expect(Token(key: vector.key).value == vector.token)
        #expect(ring.preferenceList(forKey: vector.key) == vector.preferenceList)
    }

    /// Writes ring.txt; run once with `QUORUMKV_WRITE_RING_VECTORS=1 swift test --filter writeRingVectors`.
    /// The file is fixed afterwards: a change to hashing, lookup or allocation that alters it breaks clients.
    @Test(
        "write ring.txt (only with QUORUMKV_WRITE_RING_VECTORS=1)",
        .enabled(if: ProcessInfo.processInfo.environment["QUORUMKV_WRITE_RING_VECTORS"] == "1")
    )
    func writeRingVectors() throws {
        try RingVectors.text(keys: RingVectors.sampleKeys()).write(
            to: RingVectors.file, atomically: true, encoding: .utf8)
    }
}
