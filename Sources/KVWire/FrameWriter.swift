public import KVCore
public import NIOCore

/// What a connection sends: a frame already built, or a message encoded straight into the
/// connection's outgoing bytes (no body buffer of its own, no copy).
public enum OutboundFrame: Sendable {
    case frame(Frame)
    case message(Message, requestID: UInt64)
}

/// The frames a connection has written since its last flush, encoded one after another with their
/// length prefixes (proto-spec/FRAMES.md) into one buffer that is reused from flush to flush.
///
/// Handing the batch on at a flush costs one write for all its frames, which the TLS handler
/// encrypts with one `SSL_write` (a TLS record per 16 KiB) instead of one per frame; once the TLS
/// handler has taken the bytes the storage is this batch's again, so encoding the common messages
/// allocates nothing.
public struct FrameBatch {
    /// The largest frame sent, length prefix included: the peer would close the connection over a
    /// larger one.
    public let frameBytesMax: Int
    /// Storage kept after a flush up to this capacity; a larger buffer (after a burst of big frames)
    /// is let go rather than held for the connection's lifetime.
    static let retainedCapacityMax = 1 << 20
    static let initialCapacity = 4096

    private var bytes: ByteBuffer

    public init(frameBytesMax: Int = Limits.frameBytesMax, allocator: ByteBufferAllocator) {
        self.frameBytesMax = frameBytesMax
        self.bytes = allocator.buffer(capacity: Self.initialCapacity)
    }

    /// Whether no frame waits for the flush.
    public var isEmpty: Bool { bytes.readableBytes == 0 }

    /// Encodes `frame` after the others and returns its bytes (length prefix included); throws
    /// `frameTooLarge` (the batch unchanged) for a frame the peer would refuse.
    @discardableResult
    public mutating func append(_ frame: OutboundFrame) throws(WireError) -> Int {
        let start = bytes.writerIndex
        let written: Int
        switch frame {
        case .frame(let frame):
            guard frame.encodedBytes <= frameBytesMax else {
                throw WireError.frameTooLarge(length: frame.encodedBytes, limit: frameBytesMax)
            }
            written = bytes.writeFrame(frame)
        case .message(let message, let requestID):
            written = bytes.writeFrame(message, requestID: requestID)
        }
        guard written <= frameBytesMax else {
            bytes.moveWriterIndex(to: start)
            throw WireError.frameTooLarge(length: written, limit: frameBytesMax)
        }
        return written
    }

    /// Takes back the last `count` bytes appended (the last frame, when `count` is what its `append`
    /// returned).
    public mutating func removeLast(_ count: Int) {
        precondition(count <= bytes.readableBytes, "only bytes appended can be taken back")
        bytes.moveWriterIndex(to: bytes.writerIndex - count)
    }

    /// Gives the frames to `send` (which writes and flushes them down the pipeline) and makes the
    /// storage ready for the next ones: the same storage when nothing kept a reference to it once
    /// `send` returned (the TLS handler encrypts a flushed write at once).
    public mutating func flush(allocator: ByteBufferAllocator, _ send: (ByteBuffer) -> Void) {
        guard !isEmpty else { return }
        send(bytes)
        if bytes.capacity > Self.retainedCapacityMax {
            bytes = allocator.buffer(capacity: Self.initialCapacity)
        } else {
            bytes.clear()  // keeps the storage when `send` let go of it, else starts a new one
        }
    }

    /// Drops the frames not flushed: their connection is closing.
    public mutating func discard() {
        bytes.clear()
    }
}

/// Where a server's `FrameWriter` counts the large frames (over `Limits.largeFrameBytes`) it holds,
/// from the moment one is written until the network has taken it, so that a peer that does not read
/// its answers cannot make a node hold them without bound.
public protocol OutboundFrameBudget: Sendable {
    /// Counts `bytes` of one frame, or refuses them (counting nothing) when they would take its holder
    /// past its bounds: an `overloaded` answer is sent instead.
    func admitOutbound(bytes: Int) -> Bool
    /// Gives back `bytes` admitted earlier.
    func releaseOutbound(bytes: Int)
    /// Why an answer of `bytes` was refused, for the `Error` sent in its place.
    func outboundRefusal(bytes: Int) -> String
}

/// The server side's outbound frames handler: `OutboundFrame`s in, one `ByteBuffer` per flush out
/// (`FrameBatch`). A frame over the limit is refused, its write promise failed with
/// `WireError.frameTooLarge`, rather than sent. With a `budget`, a frame over `Limits.largeFrameBytes`
/// is counted in it until the flush that carries it completes, and one it refuses is replaced by an
/// `Error` `overloaded` with the same request id.
public final class FrameWriter: ChannelOutboundHandler {
    public typealias OutboundIn = OutboundFrame
    public typealias OutboundOut = ByteBuffer

    private let frameBytesMax: Int
    private let budget: (any OutboundFrameBudget)?
    private var batch: FrameBatch?
    /// The write promises of the frames in `batch`.
    private var promises: [EventLoopPromise<Void>] = []
    /// Bytes of `batch` counted in `budget`.
    private var counted = 0

    public init(frameBytesMax: Int = Limits.frameBytesMax, budget: (any OutboundFrameBudget)? = nil) {
        self.frameBytesMax = frameBytesMax
        self.budget = budget
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        batch = FrameBatch(frameBytesMax: frameBytesMax, allocator: context.channel.allocator)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        failPending()
        // Frames appended later (answers finishing after the close) go nowhere and count nothing.
        batch = nil
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        do {
            try append(unwrapOutboundIn(data))
        } catch {
            promise?.fail(error)
            return
        }
        if let promise { promises.append(promise) }
    }

    /// What `write` does with a frame and no promise, for the handler just after this one in the
    /// pipeline (`InlineAnswerHandler`), which hands its answers over directly: an `OutboundFrame` is
    /// too large for `NIOAny` to hold in place, so a write through the pipeline boxes each on the heap.
    /// On the channel's event loop; nothing is sent until the next flush. Throws `frameTooLarge` (the
    /// frame dropped) for a frame the peer would refuse.
    public func append(_ frame: OutboundFrame) throws(WireError) {
        guard let written = try batch?.append(frame), written > Limits.largeFrameBytes, let budget else { return }
        if budget.admitOutbound(bytes: written) {
            counted += written
            return
        }
        batch?.removeLast(written)
        let requestID: UInt64
        switch frame {
        case .frame(let frame): requestID = frame.requestID
        case .message(_, let id): requestID = id
        }
        try batch?.append(
            .message(
                .error(
                    ErrorMessage(code: .overloaded, message: budget.outboundRefusal(bytes: written))),
                requestID: requestID))
    }

    public func flush(context: ChannelHandlerContext) {
        let promise: EventLoopPromise<Void>?
        switch promises.count {
        case 0:
            promise = nil
        case 1:
            promise = promises[0]
        default:
            let combined = context.eventLoop.makePromise(of: Void.self)
            for each in promises { combined.futureResult.cascade(to: each) }
            promise = combined
        }
        promises.removeAll(keepingCapacity: true)
        guard var batch, !batch.isEmpty else {
            context.flush()
            return
        }
        var sent = promise
        if counted > 0, let budget {
            // Counted until the network has taken them (or the connection failed them).
            let bytes = counted
            counted = 0
            let release = promise ?? context.eventLoop.makePromise(of: Void.self)
            release.futureResult.whenComplete { _ in budget.releaseOutbound(bytes: bytes) }
            sent = release
        }
        self.batch = nil  // the batch's storage must be referenced only once while the TLS handler takes it
        batch.flush(allocator: context.channel.allocator) { bytes in
            context.write(wrapOutboundOut(bytes), promise: sent)
            context.flush()
        }
        self.batch = batch
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if mode == .all { failPending() }
        context.close(mode: mode, promise: promise)
    }

    /// Drops the frames written and not flushed: their connection is closing.
    private func failPending() {
        batch?.discard()
        if counted > 0 {
            budget?.releaseOutbound(bytes: counted)
            counted = 0
        }
        let failed = promises
        promises.removeAll()
        for promise in failed { promise.fail(ChannelError.ioOnClosedChannel) }
    }
}
