import KVCore
import KVWire
import NIOCore
import NIOEmbedded
import Testing

@Suite("FrameDecoder in a channel")
struct FrameDecoderChannelTests {
    @Test("a 4 GiB length prefix fails the pipeline as soon as its 4 bytes arrive")
    func fourGiBPrefixInPipeline() throws {
        let channel = EmbeddedChannel(
            handler: ByteToMessageHandler(FrameDecoder(), maximumBufferSize: Limits.frameBytesMax)
        )
        var bytes = ByteBuffer()
        bytes.writeInteger(UInt32.max)
        #expect(throws: WireError.frameTooLarge(length: 4 + Int(UInt32.max), limit: Limits.frameBytesMax)) {
            try channel.writeInbound(bytes)
        }
        _ = try? channel.finish()
    }

    @Test("frames arriving one byte at a time come out whole")
    func byteByByte() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
        let sample = Samples.all[4]
        let bytes = encodeFrame(sample.message, requestID: sample.requestID)
        for byte in bytes.readableBytesView {
            try channel.writeInbound(ByteBuffer(bytes: [byte]))
        }
        let frame = try #require(try channel.readInbound(as: Frame.self))
        #expect(try Message(frame: frame) == sample.message)
        #expect(frame.requestID == sample.requestID)
        #expect(try channel.finish().isClean)
    }
}
