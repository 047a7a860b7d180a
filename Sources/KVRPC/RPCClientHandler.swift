import KVCore
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

/// A request on its way out: the message, its id, the promise its answer completes, and its deadline.
struct OutboundRequest: Sendable {
    var message: Message
    var requestID: UInt64
    /// Completed with the decoded answer; an `Error` answer fails it (`RPCError.remote`).
    var promise: EventLoopPromise<Message>
    var timeout: Duration
}

/// Matches answers to requests by request id, fails requests whose deadline passes, and fails every
/// pending request when the connection breaks.
///
/// Requests are encoded into one `FrameBatch` and leave together at the flush. Deadlines cost no timer
/// each: one scheduled task per connection waits for the earliest deadline of the requests in flight.
/// A thin shell on the event loop; `RPCConnection` is its Sendable face.
final class RPCClientHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = OutboundRequest
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var promise: EventLoopPromise<Message>
        var deadline: NIODeadline
        var timeout: Duration
    }

    private var pending: [UInt64: Pending] = [:]
    private let failure: ConnectionFailure
    private let requestsInFlightMax: Int
    private let frameBytesMax: Int
    private var batch: FrameBatch?
    /// The task that fails the requests whose deadline passed, and when it runs; none while nothing
    /// is in flight.
    private var expiry: (at: NIODeadline, task: Scheduled<Void>)?
    /// The requests written until the queued flush runs leave together.
    private let tickFlush = TickFlush()

    init(requestsInFlightMax: Int, frameBytesMax: Int = Limits.frameBytesMax, failure: ConnectionFailure) {
        self.requestsInFlightMax = requestsInFlightMax
        self.frameBytesMax = frameBytesMax
        self.failure = failure
    }

    func handlerAdded(context: ChannelHandlerContext) {
        batch = FrameBatch(frameBytesMax: frameBytesMax, allocator: context.channel.allocator)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        promise?.succeed()
        if let failure = failure.value {
            request.promise.fail(failure)
            return
        }
        let id = request.requestID
        guard pending[id] == nil else {
            request.promise.fail(RPCError.protocolViolation("request id \(id) is already in flight"))
            return
        }
        guard pending.count < requestsInFlightMax else {
            request.promise.fail(RPCError.overloaded)
            return
        }
        do {
            try batch?.append(.message(request.message, requestID: id))
        } catch {
            // The only error of `append`: the frame is over the limit the peer would close the connection over.
            request.promise.fail(RPCError.requestTooLarge("\(error)"))
            return
        }
        let deadline = NIODeadline.now() + TimeAmount(request.timeout)
        pending[id] = Pending(promise: request.promise, deadline: deadline, timeout: request.timeout)
        scheduleExpiry(at: deadline, context: context)
    }

    /// Flushes once the event loop has run the tasks already queued for it: each caller's request
    /// arrives as a task of its own (`RPCConnection.send` from any thread), and those of one moment
    /// share the flush instead of costing a socket write (and a TLS record) each.
    func flush(context: ChannelHandlerContext) {
        tickFlush.queue(on: context.eventLoop) { self.flushBatch(context: context) }
    }

    /// Hands the batch's frames to the TLS handler, flushed.
    private func flushBatch(context: ChannelHandlerContext) {
        guard var batch, !batch.isEmpty else { return }
        self.batch = nil  // the storage must be referenced once for the TLS handler to give it back
        batch.flush(allocator: context.channel.allocator) { bytes in
            context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        }
        self.batch = batch
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
        // Decoded here, on the event loop, so the caller's future is the promise itself: no chain of
        // futures per request between the answer and its caller.
        let message: Message
        do {
            message = try Message(frame: frame)
        } catch {
            entry.promise.fail(RPCError.protocolViolation("undecodable answer: \(error)"))
            return
        }
        if case .error(let error) = message {
            entry.promise.fail(RPCError.remote(error.code, message: error.message))
        } else {
            entry.promise.succeed(message)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(RPCError.connectionClosed(reason: "\(error)"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RPCError.connectionClosed(reason: "closed by peer"))
        context.fireChannelInactive()
    }

    /// Makes sure the expiry task runs by `deadline`.
    private func scheduleExpiry(at deadline: NIODeadline, context: ChannelHandlerContext) {
        if let expiry {
            guard deadline < expiry.at else { return }
            expiry.task.cancel()
        }
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        let task = context.eventLoop.scheduleTask(deadline: deadline) {
            bound.value.handler.expire(context: bound.value.context)
        }
        expiry = (deadline, task)
    }

    /// Fails the requests whose deadline has passed, then waits for the earliest of the others.
    private func expire(context: ChannelHandlerContext) {
        expiry = nil
        let now = NIODeadline.now()
        var earliest: NIODeadline?
        for (id, entry) in pending {
            if entry.deadline <= now {
                pending.removeValue(forKey: id)
                entry.promise.fail(RPCError.deadlineExceeded(entry.timeout))
            } else if earliest.map({ entry.deadline < $0 }) ?? true {
                earliest = entry.deadline
            }
        }
        if let earliest { scheduleExpiry(at: earliest, context: context) }
    }

    private func failAll(_ error: RPCError) {
        let reason = failure.record(error)
        let entries = pending
        pending.removeAll()
        expiry?.task.cancel()
        expiry = nil
        batch?.discard()
        for entry in entries.values {
            entry.promise.fail(reason)
        }
    }
}

@available(*, unavailable)
extension RPCClientHandler: Sendable {}
