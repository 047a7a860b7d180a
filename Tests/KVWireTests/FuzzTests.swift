import KVCore
import KVWire
import NIOCore
import Testing

@Suite("Fuzz")
struct FuzzTests {
    static let seed: UInt64 = 0x5157_4B56_0000_0001
    static let iterations = 5000

    /// Damages valid frames (flipped bytes, cut ends, inserted bytes, huge lengths) with a fixed seed.
    /// Decoding must succeed or throw `WireError` (typed throws guarantees the type; this finds traps), and
    /// whatever decodes must re-encode to bytes that decode to the same message.
    @Test("damaged frames never crash the decoder", .timeLimit(.minutes(3)))
    func damagedFrames() throws {
        var random = SeededRandom(seed: Self.seed)
        let frames = Samples.all.map { encodeFrame($0.message, requestID: $0.requestID) }
        var decodedCount = 0
        var errorCount = 0
        for iteration in 0..<Self.iterations {
            var bytes = Array(frames[Int.random(in: 0..<frames.count, using: &random)].readableBytesView)
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                Self.mutate(&bytes, using: &random)
            }
            var buffer = ByteBuffer(bytes: bytes)
            do {
                while let frame = try buffer.readFrame() {
                    let message = try Message(frame: frame)
                    decodedCount += 1
                    let again = try Message(frame: message.frame(requestID: frame.requestID, allocator: .init()))
                    #expect(again == message, "seed \(Self.seed), iteration \(iteration)")
                }
            } catch {
                errorCount += 1
                _ = error.errorCode
            }
        }
        #expect(decodedCount > 0 && errorCount > 0, "seed \(Self.seed): \(decodedCount) decoded, \(errorCount) refused")
    }

    static func mutate(_ bytes: inout [UInt8], using random: inout SeededRandom) {
        guard !bytes.isEmpty else {
            bytes.append(UInt8.random(in: 0...255, using: &random))
            return
        }
        switch Int.random(in: 0..<6, using: &random) {
        case 0:  // flip a byte
            bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
        case 1:  // cut the end
            bytes.removeLast(Int.random(in: 0...bytes.count, using: &random))
        case 2:  // insert a byte
            bytes.insert(UInt8.random(in: 0...255, using: &random), at: Int.random(in: 0...bytes.count, using: &random))
        case 3:  // a huge or random u32 somewhere (lengths, counts)
            let at = Int.random(in: 0..<bytes.count, using: &random)
            let value: UInt32 =
                Bool.random(using: &random)
                ? .max - UInt32.random(in: 0...3, using: &random) : .random(in: 0...UInt32.max, using: &random)
            for (offset, byte) in withUnsafeBytes(of: value.bigEndian, Array.init).enumerated()
            where at + offset < bytes.count {
                bytes[at + offset] = byte
            }
        case 4:  // shrink the frame's own length prefix, keeping the bytes
            if bytes.count >= 4 {
                bytes[3] = bytes[3] &- UInt8.random(in: 1...8, using: &random)
            }
        default:  // change the message type
            if bytes.count > 4 {
                bytes[4] = UInt8.random(in: 0...100, using: &random)
            }
        }
    }
}
