import KVCore
import KVWire
package import NIOCore

/// Closes a server connection whose frame stops arriving midway (`frameReadDeadline`: a peer that
/// trickles a frame, slowloris-style, cannot hold a connection and its buffer for ever), whose peer
/// stops taking its answers (`unreadAnswersDeadline`: the channel not writable, and less than 32 KiB of
/// what waits for the network taken in that time), or that sits
/// idle (`idleTimeout`: nothing in flight and no frame for that long, from its `Hello` on); and holds a
/// connection's reads while the server's memory for frames being received (`ReceiveMemory`) has no
/// room for its frame, or while the channel is not writable (its peer is not reading its answers).
///
/// Sits between TLS and the frame decoder, so it sees the plaintext stream; it follows the frames'
/// length prefixes (`FrameProgress`) without buffering anything, and passes every byte on. Its timers
/// are lazy: one per kind at a time, which checks the time of the last event when it fires, so a busy
/// connection costs no timer per frame. A frame's deadline runs from its first byte, or from the moment
/// the memory for it was granted when it had to wait.
final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// What the frame in progress holds of the server's `ReceiveMemory`.
    private enum Hold: Equatable {
        case nothing
        case reserved(bytes: Int)
        /// Queued for room; the connection reads nothing more until it is granted.
        case waiting(id: Int, bytes: Int)
    }

    private let frameReadDeadline: TimeAmount
    /// `frameReadDeadline` as configured, for the `Error` that says why.
    private let frameReadDeadlineText: String
    private let unreadAnswersDeadline: TimeAmount
    private let idleTimeout: TimeAmount
    private let budget: ConnectionBudget
    private let memory: ReceiveMemory
    /// Frames longer than this are refused by the frame decoder, which closes the connection: nothing
    /// to reserve for them.
    private let frameBytesMax: Int
    private let refused: @Sendable (RPCRefusal) -> Void
    private var progress = FrameProgress()
    private var hold = Hold.nothing
    /// A read the channel asked for while reads were held (the frame waiting for memory, or the channel
    /// not writable): issued once nothing holds them.
    private var readHeld = false
    /// When the first byte of the frame in progress arrived (or its memory was granted); nil between
    /// frames and while it waits for memory.
    private var frameStartedAt: NIODeadline?
    /// When the last whole frame arrived; nil before the first (the `Hello`): the handshake has a
    /// deadline of its own.
    private var lastFrameAt: NIODeadline?
    /// While the channel is not writable: since when its peer has taken less than
    /// `answerProgressBytesMin` of what waits for the network, and how many bytes waited then.
    private var stalled: (since: NIODeadline, buffered: Int)?
    private var deadlineTimer: Scheduled<Void>?
    private var unreadAnswersTimer: Scheduled<Void>?
    private var idleTimer: Scheduled<Void>?
    /// Closes a refused connection whose peer does not read its Error frame.
    private var closeTimer: Scheduled<Void>?
    private var closing = false

    /// - Parameter refused: counts the reason when the handler closes the connection, or holds its
    ///   reads for memory.
    init(
        frameReadDeadline: Duration, unreadAnswersDeadline: Duration, idleTimeout: Duration,
        budget: ConnectionBudget, memory: ReceiveMemory, frameBytesMax: Int,
        refused: @escaping @Sendable (RPCRefusal) -> Void
    ) {
        self.frameReadDeadline = TimeAmount(frameReadDeadline)
        self.frameReadDeadlineText = "\(frameReadDeadline)"
        self.unreadAnswersDeadline = TimeAmount(unreadAnswersDeadline)
        self.idleTimeout = TimeAmount(idleTimeout)
        self.budget = budget
        self.memory = memory
        self.frameBytesMax = frameBytesMax
        self.refused = refused
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !closing {
            let buffer = unwrapInboundIn(data)
            let now = NIODeadline.now()
            let wasMidFrame = progress.isMidFrame
            let completed = progress.consume(buffer.readableBytesView)
            if completed > 0 {
                lastFrameAt = now
                budget.framesArrived(completed)
                // The frame that held memory, if any, was the first of them.
                giveBackHold(context: context)
            }
            if !progress.isMidFrame {
                frameStartedAt = nil
            } else if completed > 0 || !wasMidFrame {
                // A new frame began in this read.
                frameStartedAt = now
            }
            holdMemoryIfNeeded(context: context)
            arm(context: context)
        }
        context.fireChannelRead(data)
    }

    /// Reads go on unless the frame in progress waits for memory, or the channel is not writable: a
    /// peer that does not read its answers gets no more requests read until it does.
    func read(context: ChannelHandlerContext) {
        if isWaiting || !context.channel.isWritable {
            readHeld = true
        } else {
            context.read()
        }
    }

    /// A peer that reads this much of what waits for the network within `unreadAnswersDeadline` keeps
    /// its connection (about 1 KB/s at the default 30 s).
    static let answerProgressBytesMin = 32 << 10

    /// A channel that stops being writable starts the clock of `unreadAnswersDeadline`; one that is
    /// writable again stops it (its peer took its answers), and its held reads go on.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            stalled = nil
        } else if stalled == nil, !closing {
            let now = NIODeadline.now()
            stalled = (now, bufferedBytes(context: context))
            if unreadAnswersTimer == nil {
                scheduleUnreadAnswersCheck(at: now + unreadAnswersDeadline, context: context)
            }
        }
        resumeHeldRead(context: context)
        context.fireChannelWritabilityChanged()
    }

    private var isWaiting: Bool {
        if case .waiting = hold { return true }
        return false
    }

    /// Issues the read the channel asked for while reads were held, once nothing holds them.
    private func resumeHeldRead(context: ChannelHandlerContext) {
        guard readHeld, !isWaiting, context.channel.isWritable else { return }
        readHeld = false
        context.read()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimers()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimers()
        closeTimer?.cancel()
        closeTimer = nil
        giveBackHold(context: nil)
    }

    /// Reserves memory for the frame in progress once its length is known, if it is large; when there
    /// is no room, the connection's reads stop and its frame deadline with them, until it is granted.
    private func holdMemoryIfNeeded(context: ChannelHandlerContext) {
        guard hold == .nothing, let bytes = progress.frameInProgressBytes, bytes > ReceiveMemory.smallFrameBytes,
            bytes <= frameBytesMax
        else { return }
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        let reservation = memory.reserve(bytes) { id in
            bound.eventLoop.execute { bound.value.handler.granted(id: id, context: bound.value.context) }
        }
        switch reservation {
        case .granted:
            hold = .reserved(bytes: bytes)
        case .waiting(let id):
            hold = .waiting(id: id, bytes: bytes)
            frameStartedAt = nil
            refused(.receiveMemory)
        }
    }

    /// The memory a waiting frame asked for was reserved: its deadline starts, and reads go on.
    private func granted(id: Int, context: ChannelHandlerContext) {
        // Not waiting any more (the frame ended or the connection closed, and gave the bytes back), or
        // waiting for another frame's.
        guard case .waiting(id, let bytes) = hold else { return }
        hold = .reserved(bytes: bytes)
        guard !closing else { return }
        frameStartedAt = .now()
        arm(context: context)
        resumeHeldRead(context: context)
    }

    /// Gives back what the frame in progress held (it ended, or the connection closed), and resumes
    /// reads held for it.
    private func giveBackHold(context: ChannelHandlerContext?) {
        switch hold {
        case .nothing:
            return
        case .reserved(let bytes):
            memory.release(bytes)
        case .waiting(let id, let bytes):
            // Granted meanwhile: the bytes are reserved, and its `granted` will find nothing to do.
            if !memory.cancel(id: id) { memory.release(bytes) }
        }
        hold = .nothing
        if let context { resumeHeldRead(context: context) }
    }

    /// Starts the timers that are due and not running.
    private func arm(context: ChannelHandlerContext) {
        let loop = context.eventLoop.assumeIsolated()
        if let started = frameStartedAt, deadlineTimer == nil {
            deadlineTimer = loop.scheduleTask(deadline: started + frameReadDeadline) { [self] in
                deadlineTimer = nil
                checkFrameDeadline(context: context)
            }
        }
        if let last = lastFrameAt, idleTimer == nil {
            scheduleIdleCheck(at: last + idleTimeout, context: context)
        }
    }

    private func scheduleIdleCheck(at deadline: NIODeadline, context: ChannelHandlerContext) {
        idleTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            idleTimer = nil
            checkIdle(context: context)
        }
    }

    private func checkFrameDeadline(context: ChannelHandlerContext) {
        guard !closing, let started = frameStartedAt else { return }
        if NIODeadline.now() >= started + frameReadDeadline {
            close(
                context: context, .frameDeadline,
                error: ErrorMessage(
                    code: .deadlineExceeded,
                    message: "a frame did not arrive whole within \(frameReadDeadlineText) of its first byte"))
        } else {
            arm(context: context)
        }
    }

    private func scheduleUnreadAnswersCheck(at deadline: NIODeadline, context: ChannelHandlerContext) {
        unreadAnswersTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            unreadAnswersTimer = nil
            checkUnreadAnswers(context: context)
        }
    }

    /// A peer still taking its answers starts a new period; one that took less than
    /// `answerProgressBytesMin` in a whole `unreadAnswersDeadline` is closed. A channel behind a backlog
    /// of answers stays not writable for as long as the peer takes to read it, however steadily it does.
    private func checkUnreadAnswers(context: ChannelHandlerContext) {
        guard !closing, let stall = stalled else { return }
        let now = NIODeadline.now()
        let buffered = bufferedBytes(context: context)
        if stall.buffered - buffered >= Self.answerProgressBytesMin {
            stalled = (now, buffered)
            scheduleUnreadAnswersCheck(at: now + unreadAnswersDeadline, context: context)
        } else if now >= stall.since + unreadAnswersDeadline {
            // No Error frame: the peer reads nothing, and it would wait behind the answers.
            close(context: context, .answersUnread, error: nil)
        } else {
            scheduleUnreadAnswersCheck(at: stall.since + unreadAnswersDeadline, context: context)
        }
    }

    /// The bytes the channel holds for the network (0 where the channel cannot say: then only
    /// writability counts).
    private func bufferedBytes(context: ChannelHandlerContext) -> Int {
        (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
    }

    private func checkIdle(context: ChannelHandlerContext) {
        guard !closing, let last = lastFrameAt else { return }
        let now = NIODeadline.now()
        let activity = budget.activity
        if progress.isMidFrame || activity.busy {
            // Busy: the frame deadline or the request's own deadline rules; look again later.
            scheduleIdleCheck(at: now + idleTimeout, context: context)
            return
        }
        let latest = max(last, activity.lastReleased ?? last)
        if now >= latest + idleTimeout {
            // No Error frame: an idle close is routine, and a client re-dials on its next call.
            close(context: context, .idle, error: nil)
        } else {
            scheduleIdleCheck(at: latest + idleTimeout, context: context)
        }
    }

    private func close(context: ChannelHandlerContext, _ reason: RPCRefusal, error: ErrorMessage?) {
        closing = true
        cancelTimers()
        refused(reason)
        guard let error else {
            context.close(promise: nil)
            return
        }
        // The Error frame goes out before the close (a close fails the writes still pending); a peer
        // that reads nothing is closed a second later all the same.
        var buffer = context.channel.allocator.buffer(capacity: 64 + error.message.utf8.count)
        buffer.writeFrame(.error(error), requestID: WireProtocol.connectionRequestID)
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) { context.close(promise: nil) }
    }

    private func cancelTimers() {
        deadlineTimer?.cancel()
        deadlineTimer = nil
        unreadAnswersTimer?.cancel()
        unreadAnswersTimer = nil
        idleTimer?.cancel()
        idleTimer = nil
    }
}

@available(*, unavailable)
extension ConnectionGuardHandler: Sendable {}

/// Where a byte stream stands in its frames (proto-spec/FRAMES.md: a `u32` big-endian length, then
/// that many bytes), followed byte count by byte count without buffering: a value with no I/O.
package struct FrameProgress: Equatable {
    /// Bytes of the length prefix read so far (0 between frames), and their value.
    private var prefixBytes = 0
    private var prefix: UInt32 = 0
    /// Bytes of the frame in progress still to come after its prefix.
    private var bodyRemaining = 0
    /// The whole length of the frame in progress, prefix included, once its prefix is whole.
    private var frameBytes = 0

    package init() {}

    /// Whether a frame has begun and not ended.
    package var isMidFrame: Bool { prefixBytes > 0 || bodyRemaining > 0 }

    /// The whole length of the frame in progress (its prefix included), once its prefix has arrived;
    /// nil between frames and while the prefix is still coming.
    package var frameInProgressBytes: Int? { bodyRemaining > 0 ? frameBytes : nil }

    /// Follows `bytes`; returns how many frames they completed.
    package mutating func consume(_ bytes: ByteBufferView) -> Int {
        var completed = 0
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if bodyRemaining > 0 {
                let taken = min(bodyRemaining, bytes.endIndex - index)
                bodyRemaining -= taken
                index += taken
                if bodyRemaining == 0 { completed += 1 }
                continue
            }
            prefix = prefix << 8 | UInt32(bytes[index])
            prefixBytes += 1
            index += 1
            if prefixBytes == WireProtocol.lengthPrefixBytes {
                bodyRemaining = Int(prefix)
                frameBytes = WireProtocol.lengthPrefixBytes + bodyRemaining
                prefix = 0
                prefixBytes = 0
                // A frame without a body is malformed; the decoder says so. It is whole here.
                if bodyRemaining == 0 { completed += 1 }
            }
        }
        return completed
    }
}
