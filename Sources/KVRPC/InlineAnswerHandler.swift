import KVTLS
import KVWire
import Logging
import NIOCore
import Synchronization

/// Answers, on the event loop, the requests a service can answer without waiting
/// (`RPCService.answerAtOnce(_:from:)`: a read RocksDB serves from memory), so they never leave the
/// connection's thread; every other frame goes on to the connection's task as before.
///
/// It passes everything on until the connection's task has accepted `Hello` and calls
/// `open(for:)`. The answers of one read burst are written and flushed once, when the burst ends
/// (`channelReadComplete`). A frame it cannot decode, a type the peer's role may not send or a
/// request the service wants to wait for is passed on untouched: the task refuses or answers it
/// exactly as without this handler.
final class InlineAnswerHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias InboundOut = Frame
    typealias OutboundIn = Frame
    typealias OutboundOut = Frame

    private let service: any RPCService
    private let budget: ConnectionBudget
    private let statistics: RPCServerStatistics
    private let logger: Logger
    /// Set once `Hello` was accepted.
    private var peer: PeerIdentity?
    /// Answers written since the last flush.
    private var unflushed = false

    init(service: any RPCService, budget: ConnectionBudget, statistics: RPCServerStatistics, logger: Logger) {
        self.service = service
        self.budget = budget
        self.statistics = statistics
        self.logger = logger
    }

    /// Starts answering for `peer` (on the channel's event loop).
    func open(for peer: PeerIdentity) {
        self.peer = peer
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard let peer, let response = answer(frame, peer: peer) else {
            context.fireChannelRead(data)
            return
        }
        budget.frameTaken()
        statistics.requestsServed.add(1, ordering: .relaxed)
        context.write(wrapOutboundOut(response), promise: nil)
        unflushed = true
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if unflushed {
            unflushed = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    /// The answer to `frame`, or nil when the connection's task must see it.
    private func answer(_ frame: Frame, peer: PeerIdentity) -> Frame? {
        guard let type = MessageType(rawValue: frame.type), service.mayAnswerAtOnce(type),
            RPCAuthorization.isRequest(type), RPCAuthorization.permits(peer.role, toSend: type),
            let request = try? Message(frame: frame)
        else {
            return nil
        }
        do {
            guard let response = try service.answerAtOnce(request, from: peer) else { return nil }
            return response.frame(requestID: frame.requestID, allocator: ByteBufferAllocator())
        } catch {
            return RPCServer.errorFrame(answering: error, to: type, requestID: frame.requestID, logger: logger)
        }
    }
}
