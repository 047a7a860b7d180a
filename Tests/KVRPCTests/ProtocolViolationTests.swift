import KVCore
import KVRPC
import KVTLS
import KVWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// Collects the frames a raw connection receives and notices when it closes.
final class FrameCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = Frame

    private let state = NIOLockedValueBox<(frames: [Frame], closed: Bool)>(([], false))
    private let arrivals = AsyncStream<Void>.makeStream()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        state.withLockedValue { $0.frames.append(frame) }
        arrivals.continuation.yield()
    }

    /// Waits until `count` frames have arrived in all (or the connection closed first).
    func waitForFrames(_ count: Int) async {
        var iterator = arrivals.stream.makeAsyncIterator()
        while frames.count < count && !isClosed {
            guard await iterator.next() != nil else { return }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        state.withLockedValue { $0.closed = true }
        arrivals.continuation.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    var frames: [Frame] { state.withLockedValue { $0.frames } }
    var isClosed: Bool { state.withLockedValue { $0.closed } }
}

/// A TLS connection that writes raw bytes, to send what a well-behaved client never would.
func rawConnection(to server: RPCServer, collector: FrameCollector) async throws -> any Channel {
    let tls = try TestPKI.shared.clientContext()
    return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandlers([
                    OpenSSLHandler(context: tls, expectedServerName: "127.0.0.1"),
                    ByteToMessageHandler(FrameDecoder()),
                    collector,
                ])
            }
        }
        .connect(host: "127.0.0.1", port: server.localAddress.port ?? 0).get()
}

@Suite(.timeLimit(.minutes(2)))
struct ProtocolViolationTests {
    @Test func oversizedFrameClosesOnlyThatConnection() async throws {
        try await withTestServer { server in
            let good = try await connect(to: server)
            defer { good.startClosing() }

            let collector = FrameCollector()
            let bad = try await rawConnection(to: server, collector: collector)
            var helloBuffer = ByteBuffer()
            helloBuffer.writeFrame(.hello(hello()), requestID: 1)
            try await bad.writeAndFlush(helloBuffer)
            var oversized = ByteBuffer()
            oversized.writeInteger(UInt32(Limits.frameBytesMax + 1))
            oversized.writeRepeatingByte(0, count: 64)
            try await bad.writeAndFlush(oversized)

            try await bad.closeFuture.get()
            #expect(collector.isClosed)
            let frames = collector.frames
            #expect(frames.count == 2)
            if let last = frames.last, case .error(let error) = try Message(frame: last) {
                #expect(error.code == .frameTooLarge)
                #expect(last.requestID == 0)
            } else {
                Issue.record("expected an Error frame before the close, got \(frames)")
            }

            let answer = try await good.call(.pingRequest(PingRequest(epoch: 0, clock: 9)), timeout: .seconds(10))
            #expect(
                answer == .pingResponse(PingResponse(epoch: 7, clock: 9, keys: 0, hintsQueued: 0, requestsInFlight: 0)))
        }
    }

    @Test func requestBeforeHelloIsRefusedAndClosed() async throws {
        try await withTestServer { server in
            let collector = FrameCollector()
            let channel = try await rawConnection(to: server, collector: collector)
            var buffer = ByteBuffer()
            buffer.writeFrame(.pingRequest(PingRequest(epoch: 0, clock: 0)), requestID: 5)
            try await channel.writeAndFlush(buffer)
            try await channel.closeFuture.get()
            #expect(collector.isClosed)
            let frame = try #require(collector.frames.first)
            #expect(frame.requestID == 0)
            #expect(
                try Message(frame: frame)
                    == .error(ErrorMessage(code: .helloRequired, message: "the first message must be Hello")))
        }
    }

    /// A frame of a type no version knows, first: `helloRequired` with request id 0 as for any other
    /// message first (FRAMES.md), not `unknownMessageType` with the frame's id.
    @Test func anUnknownTypeBeforeHelloIsRefusedAsHelloRequired() async throws {
        try await withTestServer { server in
            let collector = FrameCollector()
            let channel = try await rawConnection(to: server, collector: collector)
            var buffer = ByteBuffer()
            buffer.writeInteger(UInt32(10))
            buffer.writeInteger(UInt8(250))
            buffer.writeInteger(UInt64(1))
            buffer.writeInteger(UInt8(0))
            try await channel.writeAndFlush(buffer)
            try await channel.closeFuture.get()
            let frame = try #require(collector.frames.first)
            #expect(frame.requestID == 0)
            #expect(
                try Message(frame: frame)
                    == .error(ErrorMessage(code: .helloRequired, message: "the first message must be Hello")))
        }
    }

    @Test func unknownMessageTypeIsRefusedAndTheConnectionStaysOpen() async throws {
        try await withTestServer { server in
            let collector = FrameCollector()
            let channel = try await rawConnection(to: server, collector: collector)
            defer { channel.close(promise: nil) }
            var buffer = ByteBuffer()
            buffer.writeFrame(.hello(hello()), requestID: 1)
            buffer.writeInteger(UInt32(10))
            buffer.writeInteger(UInt8(250))
            buffer.writeInteger(UInt64(2))
            buffer.writeInteger(UInt8(0))
            buffer.writeFrame(.pingRequest(PingRequest(epoch: 0, clock: 4)), requestID: 3)
            try await channel.writeAndFlush(buffer)
            await collector.waitForFrames(3)
            let frames = collector.frames
            #expect(frames.count == 3)
            #expect(!collector.isClosed)
            guard frames.count == 3 else { return }
            #expect(frames[1].requestID == 2)
            if case .error(let error) = try Message(frame: frames[1]) {
                #expect(error.code == .unknownMessageType)
            } else {
                Issue.record("expected an Error frame, got \(frames[1])")
            }
            #expect(frames[2].requestID == 3)
            #expect(try Message(frame: frames[2]).type == .pingResponse)
        }
    }

    @Test func malformedBodyIsRefusedAndClosed() async throws {
        try await withTestServer { server in
            let collector = FrameCollector()
            let channel = try await rawConnection(to: server, collector: collector)
            var buffer = ByteBuffer()
            buffer.writeFrame(.hello(hello()), requestID: 1)
            // A GetRequest whose key length runs past the end of the frame.
            buffer.writeInteger(UInt32(10 + 4))
            buffer.writeInteger(MessageType.getRequest.rawValue)
            buffer.writeInteger(UInt64(2))
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(UInt32(1000))
            try await channel.writeAndFlush(buffer)
            try await channel.closeFuture.get()
            #expect(collector.isClosed)
            let frames = collector.frames
            #expect(frames.count == 2)
            if let last = frames.last, case .error(let error) = try Message(frame: last) {
                #expect(error.code == .malformedFrame)
                #expect(last.requestID == 2)
            } else {
                Issue.record("expected an Error frame, got \(frames)")
            }
        }
    }

    @Test func responseSentAsARequestIsInvalid() async throws {
        try await withTestServer { server in
            let connection = try await connect(to: server)
            defer { connection.startClosing() }
            await #expect(throws: RPCError.remote(.invalidRequest, message: "")) {
                _ = try await connection.call(
                    .pingResponse(PingResponse(epoch: 0, clock: 0, keys: 0, hintsQueued: 0, requestsInFlight: 0)),
                    timeout: .seconds(10))
            }
            await #expect(throws: RPCError.remote(.invalidRequest, message: "")) {
                _ = try await connection.call(.hello(hello()), timeout: .seconds(10))
            }
            let answer = try await connection.call(.pingRequest(PingRequest(epoch: 0, clock: 1)), timeout: .seconds(10))
            #expect(answer.type == .pingResponse)
        }
    }
}
