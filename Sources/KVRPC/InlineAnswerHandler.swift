import KVTLS
import KVWire
import Logging
import NIOCore
import Synchronization

/// Hands the requests a service can answer without a task (`RPCService.answerWithoutTask`: a read
/// RocksDB serves from memory, a write for the group commit) straight from the event loop to the
/// service, and writes their answers from the event loop; every other frame goes on to the
/// connection's task as before.
///
/// It passes everything on until the connection's task has accepted `Hello` and calls
/// `open(for:)`. Answers given during a read burst are flushed once, when the burst ends
/// (`channelReadComplete`); answers given later (from the pool) are flushed once per event-loop
/// tick. A frame it cannot decode, a type the peer's role may not send, a request past the
/// connection's in-flight budget or one the service does not take is passed on untouched: the task
/// refuses or answers it exactly as without this handler.
final class InlineAnswerHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias InboundOut = Frame
    typealias OutboundIn = OutboundFrame
    typealias OutboundOut = OutboundFrame

    private let service: any RPCService
    /// The connection's frame writer, the next outbound handler: answers go straight into its batch.
    private let writer: FrameWriter
    private let budget: ConnectionBudget
    private let statistics: RPCServerStatistics
    private let logger: Logger
    /// Set once `Hello` was accepted.
    private var peer: PeerIdentity?
    /// The protocol version the connection negotiated; set with `peer`.
    private var version = WireProtocol.version
    /// Inside `channelRead`: answers given now are flushed by `channelReadComplete`.
    private var reading = false
    /// Answers written and not flushed yet.
    private var unflushed = false
    /// Answers given from the pool are flushed once per tick.
    private let tickFlush = TickFlush()
    /// Its place in the pipeline while it is in one, for `send`.
    private var context: ChannelHandlerContext?

    init(
        service: any RPCService, writer: FrameWriter, budget: ConnectionBudget, statistics: RPCServerStatistics,
        logger: Logger
    ) {
        self.service = service
        self.writer = writer
        self.budget = budget
        self.statistics = statistics
        self.logger = logger
    }

    /// Starts handing requests to the service for `peer`, on a connection of protocol `version` (on
    /// the channel's event loop).
    func open(for peer: PeerIdentity, version: UInt16) {
        self.peer = peer
        self.version = version
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard let peer, let type = MessageType(rawValue: frame.type), service.mayAnswerWithoutTask(type),
            RPCAuthorization.isRequest(type), RPCAuthorization.permits(peer.role, toSend: type),
            type.protocolVersionMin <= version, let request = try? Message(frame: frame)
        else {
            context.fireChannelRead(data)
            return
        }
        let bytes = frame.encodedBytes
        guard case .admitted = budget.admit(bytes: bytes) else {
            // The task answers `overloaded` and counts it.
            context.fireChannelRead(data)
            return
        }
        let requestID = frame.requestID
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        let (budget, statistics, logger, version) = (self.budget, self.statistics, self.logger, self.version)
        reading = true
        defer { reading = false }
        let taken = service.answerWithoutTask(request, from: peer) { result in
            let response: OutboundFrame
            switch result {
            case .success(let message):
                statistics.requestsServed.add(1, ordering: .relaxed)
                response = .message(message.restricted(toProtocol: version), requestID: requestID)
            case .failure(let error):
                response = RPCServer.errorFrame(answering: error, to: type, requestID: requestID, logger: logger)
            }
            budget.release(bytes: bytes)
            if bound.eventLoop.inEventLoop {
                bound.value.handler.write(response, context: bound.value.context)
            } else {
                bound.eventLoop.execute { bound.value.handler.write(response, context: bound.value.context) }
            }
        }
        guard taken else {
            budget.release(bytes: bytes)
            context.fireChannelRead(data)
            return
        }
        budget.frameTaken()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context: context)
        context.fireChannelReadComplete()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Sends the answer to a request the connection's task answered (on the event loop), into the
    /// same batch as the answers given here. The task counted `admitted` bytes of it in the budget:
    /// they are given back as the frame writer counts it itself (or as nothing is sent, once the
    /// connection has closed).
    func send(_ response: OutboundFrame, admitted: Int) {
        if admitted > 0 { budget.releaseOutbound(bytes: admitted) }
        guard let context else { return }
        write(response, context: context)
    }

    /// Writes an answer into the frame writer's batch (`FrameWriter.append`: as a write through the
    /// pipeline would, without boxing it): flushed at the end of the read burst when one is going on,
    /// else by a flush queued behind the answers already waiting for the event loop (one per tick).
    private func write(_ response: OutboundFrame, context: ChannelHandlerContext) {
        do {
            try writer.append(response)
        } catch {
            // An answer over the frame limit: the requester's deadline ends its wait, as for any
            // answer that does not arrive.
            logger.warning("an answer was not sent", metadata: ["error": "\(error)"])
            return
        }
        unflushed = true
        guard !reading, !tickFlush.isQueued else { return }
        tickFlush.queue(on: context.eventLoop) { self.flushIfNeeded(context: context) }
    }

    /// Flushes the answers written and not flushed yet, now (on the event loop).
    func flushAnswers() {
        guard let context else { return }
        flushIfNeeded(context: context)
    }

    private func flushIfNeeded(context: ChannelHandlerContext) {
        guard unflushed else { return }
        unflushed = false
        context.flush()
    }
}
