import KVTLS
import KVWire
import NIOCore
import Synchronization

/// Why a connection broke, kept where a request written after the pipeline is gone can still read it:
/// a TLS 1.3 server judges the client certificate after the client's handshake completed, so its
/// refusal ("certificate revoked") can close the channel before the first request is written.
final class ConnectionFailure: Sendable {
    private let reason = Mutex<RPCError?>(nil)

    /// The first reason recorded.
    var value: RPCError? { reason.withLock { $0 } }

    /// Records `error` unless a reason is already known; returns the reason that stands.
    @discardableResult
    func record(_ error: RPCError) -> RPCError {
        reason.withLock { reason in
            if let reason { return reason }
            reason = error
            return error
        }
    }
}

/// A request on its way out: the frame, the promise its answer completes, and its deadline.
struct OutboundRequest: Sendable {
    var frame: Frame
    var promise: EventLoopPromise<Frame>
    var timeout: Duration
}

/// Matches answers to requests by request id, fails requests whose deadline passes, and fails every
/// pending request when the connection breaks.
///
/// A thin shell on the event loop; `RPCConnection` is its Sendable face.
final class RPCClientHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = OutboundRequest
    typealias OutboundOut = Frame

    private struct Pending {
        var promise: EventLoopPromise<Frame>
        var timer: Scheduled<Void>
    }

    private var pending: [UInt64: Pending] = [:]
    private let failure: ConnectionFailure
    private let requestsInFlightMax: Int
    /// A flush is queued behind the tasks already waiting for the event loop: the requests written
    /// until it runs leave together, in one socket write.
    private var flushQueued = false

    init(requestsInFlightMax: Int, failure: ConnectionFailure) {
        self.requestsInFlightMax = requestsInFlightMax
        self.failure = failure
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        promise?.succeed()
        if let failure = failure.value {
            request.promise.fail(failure)
            return
        }
        let id = request.frame.requestID
        guard pending[id] == nil else {
            request.promise.fail(RPCError.protocolViolation("request id \(id) is already in flight"))
            return
        }
        guard pending.count < requestsInFlightMax else {
            request.promise.fail(RPCError.overloaded)
            return
        }
        let timeout = request.timeout
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let timer = context.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            loopBound.value.expire(id, timeout: timeout)
        }
        pending[id] = Pending(promise: request.promise, timer: timer)
        let writePromise = context.eventLoop.makePromise(of: Void.self)
        writePromise.futureResult.whenFailure { error in
            loopBound.value.fail(id, RPCError.connectionClosed(reason: "\(error)"))
        }
        context.write(wrapOutboundOut(request.frame), promise: writePromise)
    }

    /// Flushes once the event loop has run the tasks already queued for it: each caller's request
    /// arrives as a task of its own (`RPCConnection.send` from any thread), and those of one moment
    /// share the flush instead of costing a socket write (and a TLS record) each.
    func flush(context: ChannelHandlerContext) {
        guard !flushQueued else { return }
        flushQueued = true
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            bound.value.handler.flushQueued = false
            bound.value.context.flush()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if frame.requestID == 0 {
            // A connection-level error: the peer is about to close.
            let reason: RPCError
            if let message = try? Message(frame: frame), case .error(let error) = message {
                reason = RPCError.remote(error.code, message: error.message)
            } else {
                reason = RPCError.protocolViolation("unexpected frame with request id 0")
            }
            failAll(reason)
            context.close(promise: nil)
            return
        }
        guard let entry = pending.removeValue(forKey: frame.requestID) else {
            // The answer to a request whose deadline already passed.
            return
        }
        entry.timer.cancel()
        entry.promise.succeed(frame)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(RPCError.connectionClosed(reason: "\(error)"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RPCError.connectionClosed(reason: "closed by peer"))
        context.fireChannelInactive()
    }

    private func expire(_ id: UInt64, timeout: Duration) {
        guard let entry = pending.removeValue(forKey: id) else { return }
        entry.promise.fail(RPCError.deadlineExceeded(timeout))
    }

    private func fail(_ id: UInt64, _ error: RPCError) {
        guard let entry = pending.removeValue(forKey: id) else { return }
        entry.timer.cancel()
        entry.promise.fail(error)
    }

    private func failAll(_ error: RPCError) {
        let reason = failure.record(error)
        let entries = pending
        pending.removeAll()
        for entry in entries.values {
            entry.timer.cancel()
            entry.promise.fail(reason)
        }
    }
}

@available(*, unavailable)
extension RPCClientHandler: Sendable {}
