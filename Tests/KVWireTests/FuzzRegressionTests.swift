import Foundation
import KVWire
import NIOCore
import Testing

/// Every input the fuzzer ever crashed on (`Tests/KVWireTests/FuzzRegressions`) and every golden vector
/// keeps the wire property `kvfuzz` checks (`WireRoundTrip`): it decodes or is refused with a
/// `WireError`, and what decodes re-encodes to the same message.
struct FuzzRegressionTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("FuzzRegressions")

    static var inputs: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [])
            .filter { !$0.hasSuffix(".md") }.sorted()
    }

    @Test func everySavedCrashAndGoldenVectorKeepsTheWireProperty() throws {
        var checked = 0
        for name in Self.inputs {
            let data = try Data(contentsOf: Self.folder.appendingPathComponent(name))
            let violation = data.withUnsafeBytes { WireRoundTrip.violation(in: $0) }
            #expect(violation == nil, "\(name): \(violation ?? "")")
            checked += 1
        }
        for sample in Samples.all {
            let frame = encodeFrame(sample.message, requestID: sample.requestID)
            let violation = Array(frame.readableBytesView).withUnsafeBytes { WireRoundTrip.violation(in: $0) }
            #expect(violation == nil, "\(sample.message.type): \(violation ?? "")")
            checked += 1
        }
        #expect(checked >= Samples.all.count)
    }
}
