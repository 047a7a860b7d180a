import KVCore
import KVWire
import NIOCore
import NIOTestUtils
import Testing

@Suite("FrameDecoder")
struct FrameDecoderTests {
    @Test("ByteToMessageDecoderVerifier: frames split and merged at every byte")
    func verifier() throws {
        let samples = Samples.all.prefix(8)
        var pairs: [(ByteBuffer, [Frame])] = []
        for sample in samples {
            var bytes = encodeFrame(sample.message, requestID: sample.requestID)
            let frame = try #require(try bytes.readFrame())
            pairs.append((encodeFrame(sample.message, requestID: sample.requestID), [frame]))
        }
        // Several frames in one input.
        var merged = ByteBuffer()
        var mergedFrames: [Frame] = []
        for sample in Samples.all.suffix(4) {
            var bytes = encodeFrame(sample.message, requestID: sample.requestID)
            merged.writeImmutableBuffer(bytes)
            mergedFrames.append(try #require(try bytes.readFrame()))
        }
        pairs.append((merged, mergedFrames))
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) { FrameDecoder() }
    }

    @Test("readFrame consumes exactly one frame from a stream")
    func streamOfFrames() throws {
        var stream = ByteBuffer()
        for sample in Samples.all {
            stream.writeFrame(sample.message, requestID: sample.requestID)
        }
        stream.writeInteger(UInt32(50))  // the start of one more frame
        var decoded: [Message] = []
        while let frame = try stream.readFrame() {
            decoded.append(try Message(frame: frame))
        }
        #expect(decoded == Samples.all.map(\.message))
        #expect(stream.readableBytes == 4)
    }
}
