import Foundation
import KVWire
import NIOCore
import Testing

/// One file of `proto-spec/vectors/` (format in its README.md).
struct Vector: Sendable, CustomTestStringConvertible {
    var name: String
    var comments: [String]
    var hex: String

    var testDescription: String { self.name }

    static func loadAll() -> [Vector] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: vectorsDirectory.path)) ?? []
        return names.filter { $0.hasSuffix(".hex") }.sorted().compactMap { name in
            guard let text = try? String(contentsOf: vectorsDirectory.appendingPathComponent(name), encoding: .utf8)
            else { return nil }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
            return Vector(
                name: String(name.dropLast(".hex".count)),
                comments: lines.filter { $0.hasPrefix("#") },
                hex: lines.filter { !$0.hasPrefix("#") }.joined().filter { !$0.isWhitespace }
            )
        }
    }

    /// The text of the file written for `sample`.
    static func fileText(for sample: Sample) -> String {
        let frame = encodeFrame(sample.message, requestID: sample.requestID).hex
        var lines = ["# \(sample.summary)"]
        var index = frame.startIndex
        while index < frame.endIndex {
            let end = frame.index(index, offsetBy: 64, limitedBy: frame.endIndex) ?? frame.endIndex
            lines.append(String(frame[index..<end]))
            index = end
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

@Suite("Golden vectors")
struct VectorTests {
    @Test("vectors exist for every sample and every message type")
    func vectorsCoverSamples() {
        let vectors = Set(Vector.loadAll().map(\.name))
        for sample in Samples.all {
            #expect(vectors.contains(sample.name), "missing proto-spec/vectors/\(sample.name).hex")
        }
    }

    @Test("a vector decodes and re-encodes byte for byte", arguments: Vector.loadAll())
    func decodesGoldenVector(_ vector: Vector) throws {
        #expect(!vector.comments.isEmpty, "a vector starts with a comment describing its values")
        #expect(vector.hex == vector.hex.lowercased())
        var bytes = ByteBuffer(hex: vector.hex)
        let frame = try #require(try bytes.readFrame())
        #expect(bytes.readableBytes == 0, "one frame per vector")
        let message = try Message(frame: frame)
        #expect(encodeFrame(message, requestID: frame.requestID).hex == vector.hex)
        if let sample = Samples.all.first(where: { $0.name == vector.name }) {
            #expect(message == sample.message)
            #expect(frame.requestID == sample.requestID)
            #expect(vector.comments == ["# \(sample.summary)"])
        }
    }

    /// Writes the vector files; run once with `KVWIRE_WRITE_VECTORS=1 swift test --filter writeVectors`.
    /// Vectors are fixed files afterwards: a codec change that alters them is a wire-format change.
    @Test(
        "write vectors (only with KVWIRE_WRITE_VECTORS=1)",
        .enabled(if: ProcessInfo.processInfo.environment["KVWIRE_WRITE_VECTORS"] == "1")
    )
    func writeVectors() throws {
        try FileManager.default.createDirectory(at: vectorsDirectory, withIntermediateDirectories: true)
        for sample in Samples.all {
            try Vector.fileText(for: sample).write(
                to: vectorsDirectory.appendingPathComponent("\(sample.name).hex"), atomically: true, encoding: .utf8
            )
        }
    }
}
