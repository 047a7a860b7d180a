import KVCore
import KVTLS
package import KVWire
package import Logging
import NIOCore
import Synchronization

extension RPCServer {
    /// Serves one connection: waits for TLS and `Hello`, then dispatches requests until the peer
    /// closes, a protocol violation closes it, or the server stops.
    func serve(_ connection: RPCServerConnection) async {
        var logger = self.logger
        logger[metadataKey: "peer.address"] = "\(connection.channel.channel.remoteAddress?.description ?? "?")"
        do {
            try await connection.channel.executeThenClose { inbound, outbound in
                let peer: PeerIdentity
                do {
                    peer = try await connection.handshake.get()
                } catch {
                    statistics.handshakesFailed.add(1, ordering: .relaxed)
                    logger.debug("tls handshake failed", metadata: ["error": "\(error)"])
                    return
                }
                if let (table, counts) = connection.traffic { table.identify(counts, as: peer) }
                logger[metadataKey: "peer.name"] = "\(peer.name)"
                logger[metadataKey: "peer.role"] = "\(peer.role)"
                var frames = inbound.makeAsyncIterator()
                guard
                    let (helloID, version) = try await acceptHello(
                        from: &frames, peer: peer, outbound: outbound, logger: logger)
                else {
                    return
                }
                connection.budget.frameTaken()
                guard
                    try await acknowledge(
                        helloID: helloID, version: version, on: connection, peer: peer, outbound: outbound)
                else {
                    return
                }
                logger[metadataKey: "rpc.protocol_version"] = "\(version)"
                let inline = connection.inline
                inline.eventLoop.execute { inline.value.open(for: peer, version: version) }
                try await dispatch(
                    &frames, peer: peer, version: version, budget: connection.budget, inline: inline,
                    outbound: outbound, logger: logger)
                // The answers the last requests' tasks handed to the event loop leave before the close.
                try await inline.eventLoop.submit { inline.value.flushAnswers() }.get()
            }
        } catch {
            logger.debug("connection ended", metadata: ["error": "\(error)"])
        }
    }

    /// Reads the first frame, which must be an acceptable `Hello`; refuses (with an `Error`) one that
    /// is not.
    ///
    /// - Returns: the `Hello`'s request id, for the caller's answer, and the connection's protocol
    ///   version (the highest both sides speak); nil after an `Error` was sent.
    private func acceptHello(
        from frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator,
        peer: PeerIdentity,
        outbound: NIOAsyncChannelOutboundWriter<OutboundFrame>,
        logger: Logger
    ) async throws -> (UInt64, UInt16)? {
        let first: Frame
        do {
            guard let frame = try await frames.next() else { return nil }
            first = frame
        } catch let error as WireError {
            try await refuse(requestID: 0, error.errorCode, "\(error)", outbound: outbound, logger: logger)
            return nil
        }
        let hello: Hello
        // Any other message first, known or not (FRAMES.md, "Connection setup").
        guard first.type == MessageType.hello.rawValue else {
            try await refuse(
                requestID: 0, .helloRequired, "the first message must be Hello", outbound: outbound, logger: logger)
            return nil
        }
        do {
            // Read as a release of this server's highest version reads it: a server capped at 3
            // (`--protocol-max 3`) ignores `lowestVersion`, and so refuses a `Hello` of 4 as the
            // previous release does, which makes the caller retry at 3.
            let message = try Message(frame: first).restricted(toProtocol: configuration.protocolVersions.highest)
            guard case .hello(let decoded) = message else {
                try await refuse(
                    requestID: 0, .helloRequired, "the first message must be Hello",
                    outbound: outbound, logger: logger)
                return nil
            }
            hello = decoded
        } catch {
            try await refuse(
                requestID: first.requestID, error.errorCode, "\(error)", outbound: outbound, logger: logger)
            return nil
        }
        let spoken = configuration.protocolVersions
        let offered = ProtocolRange.announced(highest: hello.protocolVersion, lowest: hello.lowestVersion)
        guard let offered, let version = spoken.negotiate(with: offered) else {
            let announced =
                offered.map { "protocol versions \($0)" }
                ?? "versions \(hello.lowestVersion ?? hello.protocolVersion)...\(hello.protocolVersion), which is no "
                + "range (its lowest must be from 1 to its highest)"
            try await refuse(
                requestID: first.requestID, .unsupportedVersion,
                "the peer speaks \(announced); this node speaks \(spoken)",
                outbound: outbound, logger: logger)
            return nil
        }
        if hello.clusterId != configuration.clusterID {
            try await refuse(
                requestID: first.requestID, .clusterMismatch,
                "this node belongs to cluster '\(configuration.clusterID)', not '\(hello.clusterId)'",
                outbound: outbound, logger: logger)
            return nil
        }
        if hello.role != peer.role {
            try await refuse(
                requestID: first.requestID, .notAuthorized,
                "Hello claims role \(hello.role) but the certificate says \(peer.role)",
                outbound: outbound, logger: logger)
            return nil
        }
        if peer.role == .node, hello.senderId != peer.name {
            // A connection is bound to the node id in its certificate: a node certificate for n1
            // cannot act as n2 (in gossip, repair sessions, hint replay, map votes).
            try await refuse(
                requestID: first.requestID, .notAuthorized,
                "Hello claims node id '\(hello.senderId)' but the certificate is for node '\(peer.name)'",
                outbound: outbound, logger: logger)
            return nil
        }
        if peer.role == .node {
            configuration.peerVersions?.record(peer.name, highest: offered.highest)
        }
        return (first.requestID, version)
    }

    /// Answers an acceptable `Hello` with `HelloAck`, unless the certificate has its
    /// `connectionsPerIdentityMax` connections already: then with `overloaded` (counted).
    ///
    /// - Returns: true when the connection may go on; false after an `Error` was sent.
    private func acknowledge(
        helloID: UInt64,
        version: UInt16,
        on connection: RPCServerConnection,
        peer: PeerIdentity,
        outbound: NIOAsyncChannelOutboundWriter<OutboundFrame>
    ) async throws -> Bool {
        guard connection.slot.claim(ConnectionAdmission.Identity(name: peer.name, role: peer.role)) else {
            admission.refused(.perIdentity)
            try await outbound.write(
                Self.errorFrame(
                    requestID: helloID, code: .overloaded,
                    message: "more than \(configuration.connectionsPerIdentityMax) connections with this certificate"))
            return false
        }
        connection.slot.endHandshake()
        connection.timeout.cancel()
        let state = service.handshakeState()
        let ack = HelloAck(
            protocolVersion: version,
            clusterId: configuration.clusterID,
            nodeId: configuration.nodeID,
            epoch: state.epoch,
            clock: state.clock,
            highestVersion: configuration.protocolVersions.highest
        )
        try await outbound.write(.message(Message.helloAck(ack).restricted(toProtocol: version), requestID: helloID))
        return true
    }

    /// Reads requests and answers each in its own child task, until the stream ends or a protocol
    /// violation closes the connection.
    ///
    /// A request past the connection's budget (requests or bytes in flight) is answered `overloaded`
    /// at once; violations that leave the frame stream intact are answered, and past
    /// `protocolViolationsMax` of them the connection is closed.
    private func dispatch(
        _ frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator,
        peer: PeerIdentity,
        version: UInt16,
        budget: ConnectionBudget,
        inline: NIOLoopBound<InlineAnswerHandler>,
        outbound: NIOAsyncChannelOutboundWriter<OutboundFrame>,
        logger: Logger
    ) async throws {
        var violations = 0
        let violationsMax = configuration.protocolViolationsMax
        /// Counts one violation; true when it is one too many and the connection must close.
        func violationCloses() async throws -> Bool {
            violations += 1
            guard violations > violationsMax else { return false }
            admission.refused(.violations)
            try await outbound.write(
                Self.errorFrame(
                    requestID: WireProtocol.connectionRequestID, code: .invalidRequest,
                    message: "more than \(violationsMax) protocol violations on this connection"))
            return true
        }
        let slots = TaskSlots(Limits.requestTasksPerConnectionMax)
        try await withThrowingDiscardingTaskGroup { group in
            while true {
                let frame: Frame
                do {
                    guard let next = try await frames.next() else { return }
                    frame = next
                } catch let error as WireError {
                    try await refuse(requestID: 0, error.errorCode, "\(error)", outbound: outbound, logger: logger)
                    return
                }
                budget.frameTaken()
                let request: Message
                do {
                    request = try Message(frame: frame)
                } catch  where error.errorCode == .unknownMessageType {
                    // The frame boundary is intact and a newer peer may fall back: answer, stay open.
                    try await outbound.write(
                        Self.errorFrame(requestID: frame.requestID, code: .unknownMessageType, message: "\(error)"))
                    if try await violationCloses() { return }
                    continue
                } catch {
                    try await refuse(
                        requestID: frame.requestID, error.errorCode, "\(error)", outbound: outbound, logger: logger)
                    return
                }
                guard RPCAuthorization.isRequest(request.type) else {
                    let message =
                        request.type == .hello
                        ? "Hello was already exchanged on this connection"
                        : "\(request.type) is not a request"
                    try await outbound.write(
                        Self.errorFrame(requestID: frame.requestID, code: .invalidRequest, message: message))
                    if try await violationCloses() { return }
                    continue
                }
                guard request.type.protocolVersionMin <= version else {
                    // Not part of the version this connection negotiated: as if this node predated it.
                    try await outbound.write(
                        Self.errorFrame(
                            requestID: frame.requestID, code: .unknownMessageType,
                            message:
                                "\(request.type) needs protocol version \(request.type.protocolVersionMin); this connection speaks \(version)"
                        ))
                    if try await violationCloses() { return }
                    continue
                }
                guard RPCAuthorization.permits(peer.role, toSend: request.type) else {
                    statistics.refusedByRole.add(1, ordering: .relaxed)
                    // Counted, not logged one line each: a hostile peer must not flood the log.
                    logger.debug("request refused for role", metadata: ["rpc.type": "\(request.type)"])
                    try await outbound.write(
                        Self.errorFrame(
                            requestID: frame.requestID, code: .notAuthorized,
                            message: "role \(peer.role) may not send \(request.type)"))
                    if try await violationCloses() { return }
                    continue
                }
                let bytes = frame.encodedBytes
                let refusal: (reason: RPCRefusal, message: String)?
                switch budget.admit(bytes: bytes) {
                case .admitted:
                    refusal = nil
                case .tooManyRequests:
                    refusal = (
                        .inFlight,
                        "more than \(configuration.requestsInFlightMax) requests in flight on this connection"
                    )
                case .tooManyBytes:
                    refusal = (
                        .inFlightBytes,
                        "more than \(configuration.inFlightBytesMax) bytes of requests in flight on this connection"
                    )
                case .tooManyServerBytes:
                    refusal = (
                        .serverInFlightBytes,
                        "more than \(configuration.inFlightBytesServerMax) bytes of requests in flight on this node"
                    )
                }
                if let refusal {
                    admission.refused(refusal.reason)
                    try await outbound.write(
                        Self.errorFrame(requestID: frame.requestID, code: .overloaded, message: refusal.message))
                    continue
                }
                let requestID = frame.requestID
                await slots.take()
                group.addTask {
                    defer {
                        budget.release(bytes: bytes)
                        slots.give()
                    }
                    let response = await self.answer(
                        request, requestID: requestID, peer: peer, version: version, logger: logger)
                    // Counted here, as soon as it exists (or refused, and let go at once), and handed
                    // to the frame writer without waiting for the channel to be writable: a peer that
                    // reads no answers cannot make the node hold them without bound.
                    let (counted, admitted) = Self.counted(response, requestID: requestID, in: budget)
                    inline.eventLoop.execute { inline.value.send(counted, admitted: admitted) }
                }
            }
        }
    }

    /// `response` encoded, and its bytes counted in `budget` when it is large (`Limits.largeFrameBytes`):
    /// returns it and the bytes admitted (0 for a small one), or an `overloaded` answer in its place
    /// when the budget refused it.
    private static func counted(
        _ response: OutboundFrame, requestID: UInt64, in budget: ConnectionBudget
    ) -> (OutboundFrame, admitted: Int) {
        let frame: Frame
        switch response {
        case .frame(let built): frame = built
        case .message(let message, let id): frame = message.frame(requestID: id, allocator: ByteBufferAllocator())
        }
        let bytes = frame.encodedBytes
        guard bytes > Limits.largeFrameBytes else { return (.frame(frame), 0) }
        guard budget.admitOutbound(bytes: bytes) else {
            return (
                errorFrame(requestID: requestID, code: .overloaded, message: budget.outboundRefusal(bytes: bytes)), 0
            )
        }
        return (.frame(frame), bytes)
    }

    /// The service's answer to `request`, without the fields the connection's `version` lacks.
    private func answer(
        _ request: Message, requestID: UInt64, peer: PeerIdentity, version: UInt16, logger: Logger
    ) async -> OutboundFrame {
        do {
            let response = try await service.handle(request, from: peer)
            statistics.requestsServed.add(1, ordering: .relaxed)
            return .message(response.restricted(toProtocol: version), requestID: requestID)
        } catch {
            return Self.errorFrame(answering: error, to: request.type, requestID: requestID, logger: logger)
        }
    }

    /// The `Error` frame that answers a request that failed with `error` (`errorMessage(answering:to:logger:)`).
    static func errorFrame(answering error: any Error, to type: MessageType, requestID: UInt64, logger: Logger)
        -> OutboundFrame
    {
        .message(.error(errorMessage(answering: error, to: type, logger: logger)), requestID: requestID)
    }

    /// What answers a request that failed with `error`: its code when it is an `RPCError.remote`, else
    /// `internal`. A failing disk or damaged data is logged too: the operator must hear of it, not
    /// only the client. Also what a batch answers for one of its keys (`BatchItemError`).
    package static func errorMessage(answering error: any Error, to type: MessageType, logger: Logger) -> ErrorMessage {
        guard let error = error as? RPCError else {
            logger.warning("request failed", metadata: ["rpc.type": "\(type)", "error": "\(error)"])
            return errorMessage(code: .internal, message: "\(error)")
        }
        guard let code = error.remoteCode else {
            return errorMessage(code: .internal, message: "\(error)")
        }
        if code == .storageFailure || code == .diskFull {
            logger.error(
                "storage failure", metadata: ["rpc.type": "\(type)", "error": "\(error.remoteMessage ?? "")"])
        }
        return errorMessage(code: code, message: "\(error.remoteMessage ?? "")")
    }

    /// Answers a protocol violation with an `Error` frame; the caller then closes the connection.
    private func refuse(
        requestID: UInt64,
        _ code: ErrorCode,
        _ message: String,
        outbound: NIOAsyncChannelOutboundWriter<OutboundFrame>,
        logger: Logger
    ) async throws {
        statistics.protocolViolations.add(1, ordering: .relaxed)
        // Counted, not logged one line each: a hostile peer must not flood the log.
        logger.debug("connection refused", metadata: ["rpc.error_code": "\(code)", "reason": "\(message)"])
        try await outbound.write(Self.errorFrame(requestID: requestID, code: code, message: message))
    }

    static func errorFrame(requestID: UInt64, code: ErrorCode, message: String) -> OutboundFrame {
        .message(.error(errorMessage(code: code, message: message)), requestID: requestID)
    }

    /// An `ErrorMessage`, its text cut to what the field holds.
    static func errorMessage(code: ErrorCode, message: String) -> ErrorMessage {
        ErrorMessage(code: code, message: message.truncatedUTF8(bytesMax: Limits.errorMessageBytesMax))
    }
}

extension Error {
    /// The wire error code that answers this error.
    fileprivate var errorCode: ErrorCode {
        if let wire = self as? WireError { return wire.errorCode }
        return .malformedFrame
    }
}

extension String {
    /// The longest prefix of whole characters that fits in `bytesMax` UTF-8 bytes.
    package func truncatedUTF8(bytesMax: Int) -> String {
        if utf8.count <= bytesMax { return self }
        var result = ""
        var bytes = 0
        for character in self {
            let size = character.utf8.count
            if bytes + size > bytesMax { break }
            result.append(character)
            bytes += size
        }
        return result
    }
}
