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

/// A request on its way out: the message, its id, what its answer goes to, and its deadline.
struct OutboundRequest: Sendable {
    var message: Message
    var requestID: UInt64
    var complete: RPCCompletion
    var timeout: Duration
    /// Whether a client `Put` may leave in a `PutBatch` with the others of its moment: the connection
    /// negotiated a protocol version with batches.
    var mayJoinBatch = false
}

/// Matches answers to requests by request id, fails requests whose deadline passes, and fails every
/// pending request when the connection breaks.
///
/// Requests come straight from `RPCConnection` (`submit`, on the event loop), not through the
/// pipeline: no boxing into `NIOAny`, no promise for the write and none for the answer. They are
/// encoded into one `FrameBatch` and leave together at the flush. Deadlines cost no timer each: one
/// scheduled task per connection waits for the earliest deadline of the requests in flight. A thin
/// shell on the event loop; `RPCConnection` is its Sendable face.
///
/// Client `Put`s submitted before a flush (`OutboundRequest.mayJoinBatch`) are held until it, and
/// those of one keyspace part and epoch leave as one `PutBatch` (`BatchSplit.chunks`), which the
/// replica answers item by item as each `Put` would be answered: each request still gets its own
/// `PutResponse` or error (`BatchSplit.puts`), its own deadline and its own failure when the
/// connection breaks. The replica then decodes, dispatches and answers one frame instead of one per
/// write (docs/design-notes.md, "The hot path").
final class RPCClientHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var complete: RPCCompletion
        var deadline: NIODeadline
        var timeout: Duration
    }

    private var pending: [UInt64: Pending] = [:]
    /// Client `Put`s held for the flush, in the order they came.
    private var held: [(put: PutRequest, requestID: UInt64)] = []
    /// The `PutBatch`es in flight, by the request id each went with (its first write's): the ids of
    /// its writes, in order.
    private var batches: [UInt64: [UInt64]] = [:]
    private let failure: ConnectionFailure
    private let requestsInFlightMax: Int
    private let frameBytesMax: Int
    private var batch: FrameBatch?
    /// The task that fails the requests whose deadline passed, and when it runs; none while nothing
    /// is in flight.
    private var expiry: (at: NIODeadline, task: Scheduled<Void>)?
    /// The requests written until the queued flush runs leave together.
    private let tickFlush = TickFlush()
    /// The handler's place in the pipeline, while it is there.
    private var context: ChannelHandlerContext?

    init(requestsInFlightMax: Int, frameBytesMax: Int = Limits.frameBytesMax, failure: ConnectionFailure) {
        self.requestsInFlightMax = requestsInFlightMax
        self.frameBytesMax = frameBytesMax
        self.failure = failure
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        batch = FrameBatch(frameBytesMax: frameBytesMax, allocator: context.channel.allocator)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Takes one request (on the event loop): encodes it into the batch, and flushes once the event
    /// loop has run the tasks already queued for it. Each caller's request arrives as a task of its
    /// own (`RPCConnection.send` from any thread), and those of one moment share the flush instead of
    /// costing a socket write (and a TLS record) each. A connection that broke, or a pipeline the
    /// handler left, fails the request at once, with the reason the connection broke when one is known.
    func submit(_ request: OutboundRequest) {
        guard let context else {
            request.complete(.failure(failure.value ?? RPCError.connectionClosed(reason: "the connection is gone")))
            return
        }
        if let failure = failure.value {
            request.complete(.failure(failure))
            return
        }
        let id = request.requestID
        guard pending[id] == nil else {
            request.complete(.failure(RPCError.protocolViolation("request id \(id) is already in flight")))
            return
        }
        guard pending.count < requestsInFlightMax else {
            request.complete(.failure(RPCError.overloaded))
            return
        }
        if request.mayJoinBatch, case .putRequest(let put) = request.message, put.origin == .client {
            held.append((put, id))
        } else {
            do {
                try batch?.append(.message(request.message, requestID: id))
            } catch {
                // The only error of `append`: the frame is over the limit the peer would close the connection over.
                request.complete(.failure(RPCError.requestTooLarge("\(error)")))
                return
            }
        }
        let deadline = NIODeadline.now() + TimeAmount(request.timeout)
        pending[id] = Pending(complete: request.complete, deadline: deadline, timeout: request.timeout)
        scheduleExpiry(at: deadline, context: context)
        guard !tickFlush.isQueued else { return }
        tickFlush.queue(on: context.eventLoop) { self.flushBatch(context: context) }
    }

    /// Encodes the held `Put`s: those of one keyspace part and epoch as `PutBatch`es, a write with no
    /// company as its own `Put`. A frame over the limit fails its writes, as `submit` fails a request.
    private func encodeHeld() {
        guard let first = held.first else { return }
        var writes: [(put: PutRequest, requestID: UInt64)] = []
        swap(&writes, &held)
        if writes.allSatisfy({ $0.put.keyspace == first.put.keyspace && $0.put.epoch == first.put.epoch }) {
            encode(writes)
        } else {
            var groups: [(keyspace: UInt32, epoch: UInt64)] = []
            for write in writes where !groups.contains(where: { $0 == (write.put.keyspace, write.put.epoch) }) {
                groups.append((write.put.keyspace, write.put.epoch))
            }
            for group in groups {
                encode(writes.filter { $0.put.keyspace == group.keyspace && $0.put.epoch == group.epoch })
            }
        }
        // The storage is kept for the next flush's writes, unless a completion called meanwhile (a
        // write refused as too large) submitted a write, which the flush it queued will take.
        if held.isEmpty {
            writes.removeAll(keepingCapacity: true)
            swap(&writes, &held)
        }
    }

    /// Encodes `writes`, all of one keyspace part and epoch, as `PutBatch`es cut by `BatchSplit`.
    private func encode(_ writes: [(put: PutRequest, requestID: UInt64)]) {
        let first = writes[0].put
        for range in BatchSplit.chunkRanges(
            writes.count,
            bytes: {
                writes[$0].put.key.readableBytes + writes[$0].put.value.readableBytes
            })
        {
            let id = writes[range.lowerBound].requestID
            let message: Message =
                range.count == 1
                ? .putRequest(writes[range.lowerBound].put)
                : .putBatchRequest(
                    PutBatchRequest(
                        keyspace: first.keyspace, epoch: first.epoch, puts: writes[range].map(\.put.batchItem)))
            do {
                try batch?.append(.message(message, requestID: id))
            } catch {
                fail(writes[range].map(\.requestID), RPCError.requestTooLarge("\(error)"))
                continue
            }
            if range.count > 1 { batches[id] = writes[range].map(\.requestID) }
        }
    }

    /// Fails the requests `ids` still waiting with `error`.
    private func fail(_ ids: [UInt64], _ error: any Error) {
        for id in ids {
            pending.removeValue(forKey: id)?.complete(.failure(error))
        }
    }

    /// Hands the batch's frames to the TLS handler, flushed.
    private func flushBatch(context: ChannelHandlerContext) {
        encodeHeld()
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
        if let writes = batches.removeValue(forKey: frame.requestID) {
            answer(writes, batchAnswer: frame)
            return
        }
        guard let entry = pending.removeValue(forKey: frame.requestID) else {
            // The answer to a request whose deadline already passed.
            return
        }
        // Decoded here, on the event loop, and handed straight to the caller's completion.
        let message: Message
        do {
            message = try Message(frame: frame)
        } catch {
            entry.complete(.failure(RPCError.protocolViolation("undecodable answer: \(error)")))
            return
        }
        if case .error(let error) = message {
            entry.complete(.failure(RPCError.remote(error.code, message: error.message)))
        } else {
            entry.complete(.success(message))
        }
    }

    /// Answers each write of a `PutBatch` with its item of the answer in `frame`, or all of them with
    /// the batch's error.
    private func answer(_ writes: [UInt64], batchAnswer frame: Frame) {
        let failure: any Error
        do {
            let message = try Message(frame: frame)
            if let answers = BatchSplit.puts(message, count: writes.count) {
                for (id, answer) in zip(writes, answers) {
                    pending.removeValue(forKey: id)?.complete(answer)
                }
                return
            }
            if case .error(let error) = message {
                failure = RPCError.remote(error.code, message: error.message)
            } else {
                failure = RPCError.protocolViolation("answered a PutBatch of \(writes.count) with \(message.type)")
            }
        } catch {
            failure = RPCError.protocolViolation("undecodable answer: \(error)")
        }
        fail(writes, failure)
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
                entry.complete(.failure(RPCError.deadlineExceeded(entry.timeout)))
            } else if earliest.map({ entry.deadline < $0 }) ?? true {
                earliest = entry.deadline
            }
        }
        // A batch whose every write timed out is answered by no one now.
        batches = batches.filter { $0.value.contains { pending[$0] != nil } }
        if let earliest { scheduleExpiry(at: earliest, context: context) }
    }

    private func failAll(_ error: RPCError) {
        let reason = failure.record(error)
        let entries = pending
        pending.removeAll()
        held.removeAll()
        batches.removeAll()
        expiry?.task.cancel()
        expiry = nil
        batch?.discard()
        for entry in entries.values {
            entry.complete(.failure(reason))
        }
    }
}

@available(*, unavailable)
extension RPCClientHandler: Sendable {}
