public import NIOCore

/// Fired inbound (`userInboundEventTriggered`) when the TLS handshake completes, before any
/// application data is passed on.
public struct TLSHandshakeCompletedEvent: Sendable, Hashable {
    /// The peer's verified identity.
    public var peer: PeerIdentity
}

/// TLS 1.3 with mutual authentication as a NIO handler: ciphertext below, plaintext `ByteBuffer`s above.
///
/// OpenSSL runs over memory BIOs. The client starts the handshake when the channel is active, the
/// server on the first bytes it reads. Every step feeds the network's ciphertext in, spins the
/// handshake or `SSL_read`, and flushes what OpenSSL wrote. Plaintext writes wait until the handshake
/// completes. A failure fires `errorCaught(TLSError)`, sends OpenSSL's alert, fails the handshake
/// promise and closes the channel; `close` sends close_notify first, with a timeout.
///
/// TLS 1.3: the client's handshake completes before the server has judged the client certificate, so
/// a refusal reaches the client on its next read, as `TLSError.connectionFailed`. The connection is
/// only proven once the peer has answered something.
public final class OpenSSLHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum State {
        /// Nothing sent or received yet.
        case idle
        case handshaking
        case active
        /// Our close_notify is on its way; the channel closes when it is written (or on timeout).
        case closing
        /// Failed or closed: nothing more goes through.
        case closed
    }

    /// How long a close waits for close_notify (or a failure's alert) to be written.
    private static let closeTimeout: TimeAmount = .seconds(2)
    /// Plaintext read buffer capacity: one TLS record.
    private static let readBufferBytes = 16_384

    private let tlsContext: TLSContext
    private let expectedServerName: String?
    private var handshakePromise: EventLoopPromise<PeerIdentity>?
    private var connection: SSLConnection?
    private var state: State = .idle
    private var pendingWrites: [(data: ByteBuffer, promise: EventLoopPromise<Void>?)] = []
    /// How many of `pendingWrites` (from the front) have been flushed by the pipeline.
    private var flushedWriteCount = 0
    private var readBuffer: ByteBuffer?
    private var closePromise: EventLoopPromise<Void>?
    private var closeTimeoutTask: Scheduled<Void>?
    private var didRequestChannelClose = false

    /// The peer's verified identity, once the handshake has completed.
    public private(set) var peerIdentity: PeerIdentity?

    /// - Parameters:
    ///   - context: our certificate, the trusted CA, and which side we are.
    ///   - expectedServerName: for the client side, the IP or DNS name dialed; the server cert must
    ///     carry it as a SAN. nil = don't check name.
    ///   - handshakeCompleted: succeeded with the peer's identity when the handshake completes; failed
    ///     with `TLSError` when it fails or the channel closes first.
    public init(
        context: TLSContext,
        expectedServerName: String? = nil,
        handshakeCompleted: EventLoopPromise<PeerIdentity>? = nil
    ) {
        self.tlsContext = context
        self.expectedServerName = context.side == .client ? expectedServerName : nil
        self.handshakePromise = handshakeCompleted
    }

    private var isServer: Bool { self.tlsContext.side == .server }

    // MARK: - Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        self.readBuffer = context.channel.allocator.buffer(capacity: Self.readBufferBytes)
        guard let connection = SSLConnection(context: self.tlsContext, expectedServerName: self.expectedServerName)
        else {
            let detail = self.expectedServerName.map { "cannot expect server name \"\($0)\"" } ?? "SSL_new failed"
            self.fail(context: context, error: .invalidConfiguration(detail))
            return
        }
        self.connection = connection
        if context.channel.isActive && !self.isServer {
            self.doHandshakeStep(context: context)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.state = .closed
        self.closeTimeoutTask?.cancel()
        self.closeTimeoutTask = nil
        self.failPendingWrites(ChannelError.ioOnClosedChannel)
        self.handshakePromise?.fail(TLSError.closedDuringHandshake)
        self.handshakePromise = nil
        self.closePromise?.succeed(())
        self.closePromise = nil
        self.connection = nil  // frees the SSL and its BIOs
    }

    public func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        if !self.isServer, case .idle = self.state {
            self.doHandshakeStep(context: context)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.connection?.markEndOfInput()
        self.closeTimeoutTask?.cancel()
        self.closeTimeoutTask = nil
        let previous = self.state
        self.state = .closed
        switch previous {
        case .handshaking:
            context.fireErrorCaught(TLSError.closedDuringHandshake)
        case .active:
            // A peer that closes properly sends close_notify first, which moves us to .closing.
            context.fireErrorCaught(TLSError.uncleanShutdown)
        case .idle, .closing, .closed:
            break
        }
        self.failPendingWrites(ChannelError.ioOnClosedChannel)
        self.handshakePromise?.fail(TLSError.closedDuringHandshake)
        self.handshakePromise = nil
        self.closePromise?.succeed(())
        self.closePromise = nil
        context.fireChannelInactive()
    }

    // MARK: - Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let connection = self.connection else { return }
        let ciphertext = Self.unwrapInboundIn(data)
        switch self.state {
        case .closed:
            return
        case .idle, .handshaking:
            connection.receiveFromNetwork(ciphertext)
            self.doHandshakeStep(context: context)
        case .active, .closing:
            connection.receiveFromNetwork(ciphertext)
            self.doDecodeData(context: context)
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
    }

    private func doHandshakeStep(context: ChannelHandlerContext) {
        guard let connection = self.connection else { return }
        switch connection.doHandshake() {
        case .incomplete:
            self.state = .handshaking
            self.flushNetwork(context: context)
        case .failed(let error):
            self.fail(context: context, error: error)
        case .complete(let identity):
            self.state = .active
            self.peerIdentity = identity
            self.flushNetwork(context: context)
            let promise = self.handshakePromise
            self.handshakePromise = nil
            promise?.succeed(identity)
            context.fireUserInboundEventTriggered(TLSHandshakeCompletedEvent(peer: identity))
            // Application data may have arrived with the last handshake flight.
            self.doDecodeData(context: context)
            self.writePendingData(context: context)
        }
    }

    private func doDecodeData(context: ChannelHandlerContext) {
        guard let connection = self.connection, var buffer = self.readBuffer else { return }
        buffer.clear()  // reuses the storage when the pipeline has let go of the last read
        var failure: TLSError? = nil
        var peerClosed = false
        readLoop: while true {
            switch connection.read(into: &buffer) {
            case .data: continue readLoop
            case .wantRead: break readLoop
            case .closeNotify: peerClosed = true; break readLoop
            case .failed(let error): failure = error; break readLoop
            }
        }
        self.readBuffer = buffer
        if buffer.readableBytes > 0 {
            context.fireChannelRead(Self.wrapInboundOut(buffer))
        }
        if let failure {
            self.fail(context: context, error: failure)
            return
        }
        self.flushNetwork(context: context)  // SSL_read may answer a key update
        if peerClosed {
            switch self.state {
            case .active: self.startClose(context: context, promise: nil)
            case .closing: self.requestChannelClose(context: context)  // both close_notify done
            case .idle, .handshaking, .closed: break
            }
        }
    }

    // MARK: - Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.state {
        case .closing, .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        case .idle, .handshaking, .active:
            self.pendingWrites.append((Self.unwrapOutboundIn(data), promise))
        }
    }

    public func flush(context: ChannelHandlerContext) {
        self.flushedWriteCount = self.pendingWrites.count
        if case .active = self.state {
            self.writePendingData(context: context)
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all else {
            promise?.fail(ChannelError.operationUnsupported)
            return
        }
        switch self.state {
        case .idle, .handshaking:
            self.state = .closed
            self.failPendingWrites(ChannelError.ioOnClosedChannel)
            self.handshakePromise?.fail(TLSError.closedDuringHandshake)
            self.handshakePromise = nil
            context.close(promise: promise)
        case .active:
            self.startClose(context: context, promise: promise)
        case .closing:
            if let promise {
                if let existing = self.closePromise {
                    existing.futureResult.cascade(to: promise)
                } else {
                    self.closePromise = promise
                }
            }
        case .closed:
            context.close(promise: promise)
        }
    }

    /// Encrypts the flushed writes and sends them in one network write.
    private func writePendingData(context: ChannelHandlerContext) {
        guard let connection = self.connection, self.flushedWriteCount > 0 else { return }
        let flushed = self.pendingWrites.prefix(self.flushedWriteCount)
        self.pendingWrites.removeFirst(self.flushedWriteCount)
        self.flushedWriteCount = 0
        var promises: [EventLoopPromise<Void>] = []
        for (index, write) in zip(flushed.indices, flushed) {
            if let error = connection.write(write.data) {
                write.promise?.fail(error)
                for later in flushed[(index + 1)...] { later.promise?.fail(error) }
                for earlier in promises { earlier.fail(error) }
                self.fail(context: context, error: error)
                return
            }
            if let promise = write.promise { promises.append(promise) }
        }
        guard let ciphertext = connection.takeDataForNetwork(allocator: context.channel.allocator) else {
            for promise in promises { promise.succeed(()) }
            return
        }
        var networkPromise: EventLoopPromise<Void>? = nil
        if promises.count == 1 {
            networkPromise = promises[0]
        } else if promises.count > 1 {
            let combined = context.eventLoop.makePromise(of: Void.self)
            for promise in promises { combined.futureResult.cascade(to: promise) }
            networkPromise = combined
        }
        context.writeAndFlush(Self.wrapOutboundOut(ciphertext), promise: networkPromise)
    }

    // MARK: - Closing and failing

    /// Sends close_notify, then closes the channel once it is written (or after `closeTimeout`).
    private func startClose(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        self.state = .closing
        self.closePromise = promise
        self.failPendingWrites(ChannelError.ioOnClosedChannel)
        guard let connection = self.connection, connection.sendCloseNotify() else {
            self.requestChannelClose(context: context)
            return
        }
        self.closeAfterSendingPendingData(context: context)
    }

    /// On a failure: send OpenSSL's alert, tell the pipeline, fail what waits, close.
    ///
    /// The alert is written before `errorCaught` fires, so a handler that closes on the error cannot
    /// cut it off; the channel itself closes once the alert is written.
    private func fail(context: ChannelHandlerContext, error: TLSError) {
        if case .closed = self.state, self.didRequestChannelClose { return }
        self.state = .closed
        self.failPendingWrites(error)
        let promise = self.handshakePromise
        self.handshakePromise = nil
        let alertWritten = self.sendPendingData(context: context)
        promise?.fail(error)
        context.fireErrorCaught(error)
        self.close(context: context, after: alertWritten)
    }

    /// Sends close_notify or an alert that OpenSSL queued, and closes once it is written.
    private func closeAfterSendingPendingData(context: ChannelHandlerContext) {
        self.close(context: context, after: self.sendPendingData(context: context))
    }

    /// Writes whatever OpenSSL has queued; nil if nothing was.
    private func sendPendingData(context: ChannelHandlerContext) -> EventLoopFuture<Void>? {
        guard let data = self.connection?.takeDataForNetwork(allocator: context.channel.allocator) else { return nil }
        return context.writeAndFlush(Self.wrapOutboundOut(data))
    }

    /// Closes the channel when `written` completes, or after `closeTimeout` if the peer does not read.
    private func close(context: ChannelHandlerContext, after written: EventLoopFuture<Void>?) {
        guard let written else {
            self.requestChannelClose(context: context)
            return
        }
        if self.closeTimeoutTask == nil && !self.didRequestChannelClose {
            self.closeTimeoutTask = context.eventLoop.assumeIsolated().scheduleTask(in: Self.closeTimeout) {
                // The peer is not reading: close anyway, and tell whoever asked for the close.
                self.closeTimeoutTask = nil
                let promise = self.closePromise
                self.closePromise = nil
                promise?.fail(TLSError.closeTimedOut)
                self.requestChannelClose(context: context)
            }
        }
        written.assumeIsolated().whenComplete { _ in
            self.requestChannelClose(context: context)
        }
    }

    /// Closes the channel exactly once, completing the close promise we hold.
    private func requestChannelClose(context: ChannelHandlerContext) {
        guard !self.didRequestChannelClose else { return }
        self.didRequestChannelClose = true
        self.closeTimeoutTask?.cancel()
        self.closeTimeoutTask = nil
        let promise = self.closePromise
        self.closePromise = nil
        context.close(promise: promise)
    }

    private func flushNetwork(context: ChannelHandlerContext) {
        guard let data = self.connection?.takeDataForNetwork(allocator: context.channel.allocator) else { return }
        context.writeAndFlush(Self.wrapOutboundOut(data), promise: nil)
    }

    private func failPendingWrites(_ error: any Error) {
        let writes = self.pendingWrites
        self.pendingWrites = []
        self.flushedWriteCount = 0
        for write in writes { write.promise?.fail(error) }
    }
}

@available(*, unavailable)
extension OpenSSLHandler: Sendable {}
