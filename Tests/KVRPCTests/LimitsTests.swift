import KVCore
import KVTLS
import KVWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import KVRPC

/// Issue 16, "no limits on connections or memory": each server limit refuses (counted) what is past
/// it, and the other clients go on being served.
@Suite(.timeLimit(.minutes(2)))
struct LimitsTests {
    @Test func theConnectionPastTheTotalCapIsClosedAndTheOthersKeepWorking() async throws {
        try await withLimitedServer({ $0.connectionsMax = 3 }) { server in
            var held: [RPCConnection] = []
            defer { for connection in held { connection.startClosing() } }
            for _ in 0..<3 {
                held.append(try await limitsConnect(to: server))
            }
            await #expect(throws: RPCError.self) { _ = try await limitsConnect(to: server) }
            #expect(server.statistics.refusedCount(.connections) == 1)
            for connection in held {
                try await expectPing(connection)
            }
            // A slot given back is free again.
            held.removeFirst().startClosing()
            let again = try await connectEventually(to: server)
            try await expectPing(again)
            again.startClosing()
        }
    }

    @Test func theConnectionPastItsCertificatesCapIsOverloadedAndOtherCertificatesConnect() async throws {
        try await withLimitedServer({ $0.connectionsPerIdentityMax = 2 }) { server in
            let first = try await limitsConnect(to: server)
            let second = try await limitsConnect(to: server)
            defer {
                first.startClosing()
                second.startClosing()
            }
            await #expect(throws: RPCError.remote(.overloaded, message: "")) {
                _ = try await limitsConnect(to: server)
            }
            #expect(server.statistics.refusedCount(.perIdentity) == 1)
            let other = try await limitsConnect(to: server, identity: LimitsPKI.shared.otherClient)
            defer { other.startClosing() }
            try await expectPing(other)
            try await expectPing(first)
            try await expectPing(second)

            second.startClosing()
            let again = try await connectEventually(to: server)
            try await expectPing(again)
            again.startClosing()
        }
    }

    @Test func anIdleConnectionIsClosedAndTheClientRedialsOnItsNextCall() async throws {
        try await withLimitedServer({ $0.idleTimeout = .seconds(2) }) { server in
            let client = RPCClient(
                host: LimitsPKI.host, port: server.localAddress.port ?? 0, tls: try TestPKI.shared.clientContext(),
                hello: hello())
            // On a starved machine the server can find a new connection idle before its first request
            // arrives (the race docs/security.md describes): such a call is tried again, a few times.
            func ping(_ clock: UInt64) async throws -> Message {
                for _ in 1..<4 {
                    do {
                        return try await client.call(
                            .pingRequest(PingRequest(epoch: 0, clock: clock)), timeout: .seconds(30))
                    } catch let error as RPCError where "\(error)".contains("closed") {
                        continue
                    }
                }
                return try await client.call(.pingRequest(PingRequest(epoch: 0, clock: clock)), timeout: .seconds(30))
            }
            _ = try await ping(1)
            let first = try await client.connection()
            #expect(try await eventually { !first.isActive }, "the idle connection was not closed")
            #expect(server.statistics.refusedCount(.idle) >= 1)
            // The next call dials a new connection.
            let answer = try await ping(2)
            #expect(answer.type == .pingResponse)
            await client.close()
        }
    }

    @Test func aConnectionWithARequestInFlightIsNotIdle() async throws {
        let service = GatedService()
        // 3 s: on a starved machine the busy connection's request must still arrive before the server
        // finds that connection idle (the race docs/security.md describes; 1 s lost it under load).
        try await withLimitedServer({ $0.idleTimeout = .seconds(3) }, service: service) { server in
            let busy = try await limitsConnect(to: server)
            defer { busy.startClosing() }
            let answer = busy.send(.putRequest(put(valueBytes: 10)), timeout: .seconds(60))
            #expect(try await eventually { service.arrived == 1 })
            // An idle connection opened after the busy one's request is closed meanwhile...
            let idle = try await limitsConnect(to: server)
            #expect(try await eventually { !idle.isActive }, "the idle connection was not closed")
            // ...while the busy one, waiting for its answer for longer than the idle timeout, is kept.
            #expect(busy.isActive)
            service.open()
            #expect(try await answer.get().type == .putResponse)
        }
    }

    @Test func aFrameWhoseBytesStopMidwayIsClosedAfterTheDeadlineAndOthersAreServed() async throws {
        try await withLimitedServer({ $0.frameReadDeadline = .milliseconds(300) }) { server in
            let good = try await limitsConnect(to: server)
            defer { good.startClosing() }

            let collector = FrameCollector()
            let slow = try await limitsRawConnection(to: server, collector: collector)
            defer { slow.close(promise: nil) }
            var bytes = ByteBuffer()
            bytes.writeFrame(.hello(hello()), requestID: 1)
            var ping = ByteBuffer()
            ping.writeFrame(.pingRequest(PingRequest(epoch: 0, clock: 3)), requestID: 2)
            // The length prefix and part of the header, and then nothing.
            bytes.writeImmutableBuffer(ping.getSlice(at: 0, length: 7) ?? ByteBuffer())
            try await slow.writeAndFlush(bytes)
            try await expectPing(good)

            #expect(try await closes(slow, within: .seconds(30)), "the connection was not closed")
            let frames = collector.frames
            // The Error frame is a courtesy written just before the close; on a busy machine a CI run
            // saw the close arrive without it (the counter below is the guarantee). When it comes, it
            // says why.
            #expect((1...2).contains(frames.count), "\(frames)")
            if frames.count == 2, let last = frames.last {
                if case .error(let error) = try Message(frame: last) {
                    #expect(error.code == .deadlineExceeded)
                    #expect(last.requestID == 0)
                } else {
                    Issue.record("expected an Error frame before the close, got \(frames)")
                }
            }
            #expect(server.statistics.refusedCount(.frameDeadline) == 1)
            try await expectPing(good)
        }
    }

    /// Past its connection's bytes in flight, or past the server's over all connections (met from
    /// another connection, well within its own), a request is answered `overloaded`; a small one
    /// still fits, and the budget is free again once the first is answered.
    @Test(arguments: [false, true])
    func requestsPastAByteBudgetAreOverloaded(overAllConnections: Bool) async throws {
        let service = GatedService()
        try await withLimitedServer(
            {
                if overAllConnections {
                    $0.inFlightBytesServerMax = 64 << 10
                } else {
                    $0.inFlightBytesMax = 64 << 10
                }
            }, service: service
        ) { server in
            let connection = try await limitsConnect(to: server)
            defer { connection.startClosing() }
            let second = overAllConnections ? try await limitsConnect(to: server) : connection
            defer { second.startClosing() }
            let first = connection.send(.putRequest(put(valueBytes: 40 << 10)), timeout: .seconds(60))
            #expect(try await eventually { service.arrived == 1 })
            await #expect(throws: RPCError.remote(.overloaded, message: "")) {
                _ = try await second.call(.putRequest(put(valueBytes: 40 << 10)), timeout: .seconds(10))
            }
            #expect(server.statistics.refusedCount(overAllConnections ? .serverInFlightBytes : .inFlightBytes) == 1)
            try await expectPing(second)
            service.open()
            #expect(try await first.get().type == .putResponse)
            #expect(try await eventually { server.inFlight.inFlight == 0 })
            let later = try await second.call(.putRequest(put(valueBytes: 40 << 10)), timeout: .seconds(10))
            #expect(later.type == .putResponse)
        }
    }

    @Test func connectionsPastTheHandshakeBoundAreClosedAtOnce() async throws {
        try await withLimitedServer({
            $0.handshakesInFlightMax = 3
            // Long: the refused connection must be closed by the bound, not by this timeout.
            $0.handshakeTimeout = .seconds(600)
        }) { server in
            let established = try await limitsConnect(to: server)
            defer { established.startClosing() }
            var silent: [any Channel] = []
            defer { for channel in silent { channel.close(promise: nil) } }
            // TCP connections that never send a TLS byte: each holds a handshake slot.
            for _ in 0..<3 {
                silent.append(try await plainTCPConnection(to: server))
            }
            #expect(try await eventually { server.statistics.connectionsAcceptedCount == 4 })
            let refused = try await plainTCPConnection(to: server)
            defer { refused.close(promise: nil) }
            #expect(try await closes(refused, within: .seconds(20)), "the connection past the bound was not closed")
            #expect(server.statistics.refusedCount(.handshakes) == 1)
            try await expectPing(established)
            // Once the silent ones go, a new client completes its handshake.
            for channel in silent { try? await channel.close() }
            let again = try await connectEventually(to: server)
            try await expectPing(again)
            again.startClosing()
        }
    }

    @Test func aConnectionThatKeepsViolatingTheProtocolIsClosed() async throws {
        try await withLimitedServer({ $0.protocolViolationsMax = 2 }) { server in
            let other = try await limitsConnect(to: server)
            defer { other.startClosing() }
            let violator = try await limitsConnect(to: server)
            defer { violator.startClosing() }
            let response = Message.pingResponse(
                PingResponse(epoch: 0, clock: 0, keys: 0, hintsQueued: 0, requestsInFlight: 0))
            for _ in 0..<2 {
                await #expect(throws: RPCError.remote(.invalidRequest, message: "")) {
                    _ = try await violator.call(response, timeout: .seconds(10))
                }
            }
            try await expectPing(violator)
            // One too many.
            _ = try? await violator.call(response, timeout: .seconds(10))
            #expect(try await eventually { !violator.isActive }, "the violating connection was not closed")
            #expect(server.statistics.refusedCount(.violations) == 1)
            try await expectPing(other)
        }
    }

    @Test func frameProgressFollowsFramesSplitAnywhere() throws {
        var stream = ByteBuffer()
        stream.writeFrame(.pingRequest(PingRequest(epoch: 1, clock: 2)), requestID: 7)
        stream.writeFrame(.hello(hello()), requestID: 1)
        let total = stream.readableBytes
        for split in 0...total {
            var progress = FrameProgress()
            let head = stream.getSlice(at: 0, length: split) ?? ByteBuffer()
            let tail = stream.getSlice(at: split, length: total - split) ?? ByteBuffer()
            let completedFirst = progress.consume(head.readableBytesView)
            let completedSecond = progress.consume(tail.readableBytesView)
            #expect(completedFirst + completedSecond == 2, "split at \(split)")
            #expect(!progress.isMidFrame, "split at \(split)")
        }
        var progress = FrameProgress()
        #expect(progress.consume(stream.getSlice(at: 0, length: 3)!.readableBytesView) == 0)
        #expect(progress.isMidFrame)
    }
}

// MARK: - Helpers

/// Certificates for the limits tests, from `TestPKI`'s authority: a node certificate for the loopback
/// address these tests use, and a second client certificate (another identity).
struct LimitsPKI: Sendable {
    static let host = "127.0.0.75"
    let node: IssuedCertificate
    let otherClient: IssuedCertificate

    static let shared: LimitsPKI = {
        do {
            let authority = TestPKI.shared.authority
            return LimitsPKI(
                node: try CertificateIssuer.issue(
                    role: .node, name: "n1", ipAddresses: [host], authority: authority),
                otherClient: try CertificateIssuer.issue(role: .client, name: "other-client", authority: authority))
        } catch {
            fatalError("cannot issue the limits tests' certificates: \(error)")
        }
    }()
}

/// Runs an `RPCServer` on `LimitsPKI.host` with the limits `configure` sets, for the duration of
/// `body`, and stops it afterwards.
func withLimitedServer<T: Sendable>(
    _ configure: (inout RPCServerConfiguration) -> Void,
    service: any RPCService = EchoService(),
    _ body: @Sendable (RPCServer) async throws -> T
) async throws -> T {
    var configuration = RPCServerConfiguration(host: LimitsPKI.host, port: 0, clusterID: "test", nodeID: "n1")
    // As `withTestServer`: on a busy CI machine TLS can outlast a node's 10 s (a CI run lost a
    // connection that way); a test about that deadline sets its own.
    configuration.handshakeTimeout = .seconds(300)
    configure(&configuration)
    let server = try await RPCServer.bind(
        configuration: configuration,
        tls: try TLSContext(configuration: TestPKI.shared.configuration(LimitsPKI.shared.node), side: .server),
        service: service,
        logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
    )
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await server.run() }
        defer {
            server.stopAccepting()
            group.cancelAll()
        }
        return try await body(server)
    }
}

func limitsConnect(to server: RPCServer, identity: IssuedCertificate? = nil) async throws -> RPCConnection {
    try await RPCConnection.connect(
        host: LimitsPKI.host, port: server.localAddress.port ?? 0, tls: try TestPKI.shared.clientContext(identity),
        hello: hello(), timeout: .seconds(10))
}

/// Connects, retrying while the server still counts a connection the test just closed.
func connectEventually(to server: RPCServer) async throws -> RPCConnection {
    let deadline = ContinuousClock.now + .seconds(30)
    while true {
        do {
            return try await limitsConnect(to: server)
        } catch  where ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

func expectPing(_ connection: RPCConnection, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let answer = try await connection.call(.pingRequest(PingRequest(epoch: 0, clock: 9)), timeout: .seconds(10))
    #expect(answer.type == .pingResponse, sourceLocation: sourceLocation)
}

/// Polls `condition` until it holds (true) or 30 s pass (false).
func eventually(_ condition: () -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + .seconds(30)
    while !condition() {
        guard ContinuousClock.now < deadline else { return false }
        try await Task.sleep(for: .milliseconds(10))
    }
    return true
}

/// Whether `channel` closes within `timeout`.
func closes(_ channel: any Channel, within timeout: Duration) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while channel.isActive {
        guard ContinuousClock.now < deadline else { return false }
        try await Task.sleep(for: .milliseconds(10))
    }
    return true
}

/// A TCP connection that sends nothing: no TLS, no frame.
func plainTCPConnection(to server: RPCServer) async throws -> any Channel {
    try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: LimitsPKI.host, port: server.localAddress.port ?? 0).get()
}

/// A TLS connection that writes raw bytes (see `rawConnection`), to `LimitsPKI.host`; with `autoRead`
/// off it reads only when told to (`Channel.read()`: one socket read each).
func limitsRawConnection(
    to server: RPCServer, collector: FrameCollector, autoRead: Bool = true
) async throws -> any Channel {
    let tls = try TestPKI.shared.clientContext()
    return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelOption(.autoRead, value: autoRead)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandlers([
                    OpenSSLHandler(context: tls, expectedServerName: LimitsPKI.host),
                    ByteToMessageHandler(FrameDecoder()),
                    collector,
                ])
            }
        }
        .connect(host: LimitsPKI.host, port: server.localAddress.port ?? 0).get()
}

func put(valueBytes: Int) -> PutRequest {
    PutRequest(
        key: ByteBuffer(string: "k"), value: ByteBuffer(repeating: 7, count: valueBytes),
        version: Version(hlc: 1, writer: 1), tombstone: false, origin: .client, epoch: 0, expiresAtMillis: nil,
        keyspace: 0)
}

/// Holds every `Put` until `open()`; answers other requests as `EchoService` does.
final class GatedService: RPCService {
    private let state = NIOLockedValueBox<(open: Bool, arrived: Int, waiting: [CheckedContinuation<Void, Never>])>(
        (false, 0, []))

    /// `Put`s received so far.
    var arrived: Int { state.withLockedValue { $0.arrived } }

    /// Lets every held `Put` (and every later one) through.
    func open() {
        let waiting = state.withLockedValue { state in
            state.open = true
            defer { state.waiting = [] }
            return state.waiting
        }
        for continuation in waiting { continuation.resume() }
    }

    func handshakeState() -> (epoch: UInt64, clock: UInt64) { (7, 42) }

    /// Everything goes to `handle`.
    func mayAnswerWithoutTask(_ type: MessageType) -> Bool { false }

    func answerWithoutTask(
        _ request: Message, from peer: PeerIdentity, reply: @escaping @Sendable (Result<Message, any Error>) -> Void
    ) -> Bool { false }

    func handle(_ request: Message, from peer: PeerIdentity) async throws -> Message {
        guard case .putRequest(let put) = request else {
            return try await EchoService().handle(request, from: peer)
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let proceed = state.withLockedValue { state in
                state.arrived += 1
                if state.open { return true }
                state.waiting.append(continuation)
                return false
            }
            if proceed { continuation.resume() }
        }
        return .putResponse(PutResponse(outcome: .applied, current: put.version, clock: put.version.hlc))
    }
}
