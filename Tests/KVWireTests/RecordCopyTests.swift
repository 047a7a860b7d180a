import KVCore
import KVWire
import NIOCore
import Testing

/// A value read leaves the frame it arrived in: `Record.stored` copies it once, so that nothing keeps a
/// receive buffer alive and the TLS read buffer and the frame decoder's buffer are reused at the next
/// read. Sharing the frame's bytes instead was measured slower (docs/benchmarks.md, "A value read is
/// copied once"): with 16 KiB values, ten times the page faults and about a fifth fewer gets per second.
@Suite("Record copies")
struct RecordCopyTests {
    @Test("a record decoded from a frame holds its own copy of the value")
    func aDecodedRecordDoesNotHoldTheFrame() throws {
        let value = (0..<4_096).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let record = StoredRecord(
            version: Version(hlc: 0x018b_cfe5_6800_0001, writer: 7), tombstone: false, value: value,
            expiresAtMillis: 42)
        var bytes = encodeFrame(
            .getResponse(GetResponse(record: Record(key: Array("k".utf8), record), clock: 1)), requestID: 3)
        let arrived = bytes
        let message = try Message(frame: try #require(try bytes.readFrame()))
        guard case .getResponse(let response) = message, let wire = response.record else {
            Issue.record("decoded \(message), not a GetResponse with a record")
            return
        }
        let stored = wire.stored
        #expect(stored == record)
        let inFrame = arrived.withUnsafeReadableBytes { frame in
            stored.value.withUnsafeBytes { copy in
                guard let start = copy.baseAddress, let frameStart = frame.baseAddress else { return false }
                return start >= frameStart && start < frameStart + frame.count
            }
        }
        #expect(!inFrame, "the stored value points into the frame's buffer")
    }
}
