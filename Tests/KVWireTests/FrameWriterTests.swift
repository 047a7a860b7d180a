import KVCore
import KVWire
import NIOCore
import NIOEmbedded
import Testing

/// `FrameWriter`: the frames of one flush leave as one write, encoded into storage that is reused
/// from flush to flush, and a frame over the limit fails alone.
@Suite struct FrameWriterTests {
    static func request(_ index: Int) -> Message {
        .getRequest(GetRequest(key: ByteBuffer(string: "key-\(index)"), keyspace: 0))
    }

    @Test func theFramesOfOneFlushLeaveAsOneWriteInOrder() throws {
        let channel = EmbeddedChannel(handler: FrameWriter())
        defer { _ = try? channel.finish() }
        for index in 0..<100 {
            channel.write(OutboundFrame.message(Self.request(index), requestID: UInt64(index + 1)), promise: nil)
        }
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "nothing leaves before the flush")
        channel.flush()
        var bytes = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "one write for the whole flush")
        for index in 0..<100 {
            let frame = try #require(try bytes.readFrame())
            #expect(frame.requestID == UInt64(index + 1))
            #expect(try Message(frame: frame) == Self.request(index))
        }
        #expect(bytes.readableBytes == 0)
    }

    /// Takes the bytes at the flush and keeps no reference to them, as the TLS handler does (it
    /// encrypts them with `SSL_write`); remembers where each flush's bytes were stored.
    final class EncryptingSink: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var written: [ByteBuffer] = []
        var storage: [UnsafeRawPointer?] = []
        var requestIDs: [UInt64] = []

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            written.append(unwrapOutboundIn(data))
            promise?.succeed()
        }

        func flush(context: ChannelHandlerContext) {
            for var bytes in written {
                storage.append(bytes.withUnsafeReadableBytes { UnsafeRawPointer($0.baseAddress) })
                // A frame's body is a slice of the storage: keep only the ids, as the TLS handler keeps nothing.
                while let frame = try? bytes.readFrame() { requestIDs.append(frame.requestID) }
            }
            written.removeAll()
        }
    }

    @Test func theStorageIsReusedOnceTheTLSHandlerTookTheBytes() throws {
        let sink = EncryptingSink()
        let channel = EmbeddedChannel(handlers: [sink, FrameWriter()])
        defer { _ = try? channel.finish() }
        for index in 0..<20 {
            try channel.writeAndFlush(OutboundFrame.message(Self.request(index), requestID: UInt64(index))).wait()
        }
        #expect(sink.requestIDs == Array(0..<20))
        #expect(sink.storage.count == 20)
        #expect(Set(sink.storage).count == 1, "a flush encoded into new storage")
    }

    @Test func aFrameOverTheLimitFailsAloneAndTheOthersAreSent() throws {
        let channel = EmbeddedChannel(handler: FrameWriter(frameBytesMax: 64))
        defer { _ = try? channel.finish() }
        let large = Message.error(ErrorMessage(code: .internal, message: String(repeating: "x", count: 100)))
        let before = channel.write(OutboundFrame.message(Self.request(1), requestID: 1))
        let refused = channel.write(OutboundFrame.message(large, requestID: 2))
        let after = channel.write(OutboundFrame.message(Self.request(3), requestID: 3))
        channel.flush()
        #expect(throws: WireError.self) { try refused.wait() }
        try before.wait()
        try after.wait()
        var bytes = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(try bytes.readFrame()?.requestID == 1)
        #expect(try bytes.readFrame()?.requestID == 3)
        #expect(bytes.readableBytes == 0)
    }

    @Test func closingFailsTheWritesNotFlushed() throws {
        let channel = EmbeddedChannel(handler: FrameWriter())
        let pending = channel.write(OutboundFrame.message(Self.request(1), requestID: 1))
        try channel.close().wait()
        #expect(throws: ChannelError.self) { try pending.wait() }
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
    }
}
