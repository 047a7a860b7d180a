import KVCore
import KVRPC
import KVTLS
import KVWire
import NIOCore
import NIOPosix
import Testing

@Suite(.timeLimit(.minutes(2)))
struct RPCTests {
    @Test func helloAckCarriesServerState() async throws {
        try await withTestServer { server in
            let connection = try await connect(to: server)
            defer { connection.startClosing() }
            #expect(connection.helloAck.nodeId == "n1")
            #expect(connection.helloAck.epoch == 7)
            #expect(connection.helloAck.clusterId == "test")
            #expect(connection.server.role == .node)
            #expect(connection.server.name == "n1")
        }
    }

    @Test func thousandConcurrentRequestsOnOneConnectionAreMatchedToTheirCallers() async throws {
        try await withTestServer { server in
            let connection = try await connect(to: server)
            defer { connection.startClosing() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 1...1000 {
                    group.addTask {
                        let version = Version(hlc: UInt64(index), writer: UInt64(index * 3))
                        let request = PutRequest(
                            key: ByteBuffer(string: "k\(index)"), value: ByteBuffer(string: "v"), version: version,
                            tombstone: false, origin: .client, epoch: 0, expiresAtMillis: nil, keyspace: 0)
                        let answer = try await connection.call(.putRequest(request), timeout: .seconds(30))
                        guard case .putResponse(let response) = answer else {
                            Issue.record("unexpected answer \(answer.type)")
                            return
                        }
                        #expect(response.current == version)
                    }
                }
                try await group.waitForAll()
            }
            // Puts sent at one moment share `PutBatch`es (PutCoalescingTests): at most one frame each.
            #expect((1...1000).contains(server.statistics.requestsServedCount))
        }
    }

    @Test func roleThatMayNotSendAMessageIsRefusedAndTheConnectionStaysOpen() async throws {
        try await withTestServer { server in
            let connection = try await connect(to: server)
            defer { connection.startClosing() }
            let stream = StreamRequest(range: TokenRange(start: 0, end: 0), after: nil, pageBytesMax: 1024, keyspace: 0)
            await #expect(throws: RPCError.remote(.notAuthorized, message: "")) {
                _ = try await connection.call(.streamRequest(stream), timeout: .seconds(10))
            }
            let ping = try await connection.call(.pingRequest(PingRequest(epoch: 0, clock: 5)), timeout: .seconds(10))
            #expect(
                ping == .pingResponse(PingResponse(epoch: 7, clock: 5, keys: 0, hintsQueued: 0, requestsInFlight: 0)))
            #expect(server.statistics.refusedByRoleCount == 1)

            // A node certificate may send the same message.
            let node = try await connect(to: server, identity: TestPKI.shared.node, hello: hello(role: .node))
            defer { node.startClosing() }
            let streamed = try await node.call(.streamRequest(stream), timeout: .seconds(10))
            #expect(streamed == .streamResponse(StreamResponse(records: [], next: nil, done: true)))

            // Clients hand off hints: the SDK coordinates hinted handoff.
            let hint = HintRequest(
                target: "n2",
                record: Record(
                    key: ByteBuffer(string: "k"), version: Version(hlc: 1, writer: 1), tombstone: false,
                    value: ByteBuffer(string: "v"), expiresAtMillis: nil), keyspace: 0)
            let stored = try await connection.call(.hintRequest(hint), timeout: .seconds(10))
            #expect(stored == .hintResponse(HintResponse(outcome: .stored, clock: 1)))
        }
    }

    @Test func helloForAnotherClusterIsRefused() async throws {
        try await withTestServer { server in
            await #expect(throws: RPCError.remote(.clusterMismatch, message: "")) {
                _ = try await connect(to: server, hello: hello(clusterID: "other"))
            }
        }
    }

    @Test func helloWithAnotherProtocolVersionIsRefused() async throws {
        try await withTestServer { server in
            await #expect(throws: RPCError.remote(.unsupportedVersion, message: "")) {
                _ = try await connect(to: server, hello: hello(version: 99))
            }
        }
    }

    @Test func helloClaimingARoleTheCertificateLacksIsRefused() async throws {
        try await withTestServer { server in
            await #expect(throws: RPCError.remote(.notAuthorized, message: "")) {
                _ = try await connect(to: server, hello: hello(role: .admin))
            }
        }
    }

    @Test func requestPastItsDeadlineFailsWithoutBlockingOthers() async throws {
        try await withTestServer { server in
            let connection = try await connect(to: server)
            defer { connection.startClosing() }
            let started = ContinuousClock.now
            await #expect(throws: RPCError.deadlineExceeded(.milliseconds(200))) {
                _ = try await connection.call(
                    .getRequest(GetRequest(key: ByteBuffer(string: "slow"), keyspace: 0)), timeout: .milliseconds(200))
            }
            #expect(ContinuousClock.now - started < .seconds(3))
            let answer = try await connection.call(
                .getRequest(GetRequest(key: ByteBuffer(string: "fast"), keyspace: 0)), timeout: .seconds(10))
            #expect(answer == .getResponse(GetResponse(record: nil, clock: 1)))
        }
    }

    @Test func aShorterDeadlineWrittenAfterALongerOneFailsAtItsOwn() async throws {
        try await withTestServer { server in
            let connection = try await connect(to: server)
            defer { connection.startClosing() }
            let slow = GetRequest(key: ByteBuffer(string: "slow"), keyspace: 0)
            // The connection's one expiry task first waits for the 20 s deadline; the 200 ms request
            // written next must move it earlier, and the 20 s one must still be answered afterwards.
            let long = connection.send(.getRequest(slow), timeout: .seconds(20))
            let started = ContinuousClock.now
            await #expect(throws: RPCError.deadlineExceeded(.milliseconds(200))) {
                _ = try await connection.call(.getRequest(slow), timeout: .milliseconds(200))
            }
            #expect(ContinuousClock.now - started < .seconds(10))
            let mixed = [300, 100, 200].map { milliseconds in
                (milliseconds, connection.send(.getRequest(slow), timeout: .milliseconds(milliseconds)))
            }
            for (milliseconds, future) in mixed {
                await #expect(throws: RPCError.deadlineExceeded(.milliseconds(milliseconds))) {
                    _ = try await future.get()
                }
            }
            // The test server answers "slow" after 3 s: well inside the long request's 20 s.
            #expect(try await long.get() == .getResponse(GetResponse(record: nil, clock: 1)))
        }
    }

    /// Requests go straight to the connection's handler, not through the pipeline: one in flight when
    /// the connection closes fails, and one sent after it fails at once (from the event loop and
    /// from elsewhere), never waiting for an answer that cannot come.
    @Test func requestsOnAClosedConnectionFailAtOnce() async throws {
        try await withTestServer { server in
            let connection = try await connect(to: server)
            let slow = Message.getRequest(GetRequest(key: ByteBuffer(string: "slow"), keyspace: 0))
            let inFlight = connection.send(slow, timeout: .seconds(60))
            await connection.close()
            let started = ContinuousClock.now
            await #expect(throws: RPCError.self) { _ = try await inFlight.get() }
            await #expect(throws: RPCError.self) { _ = try await connection.call(slow, timeout: .seconds(60)) }
            let fromTheLoop = try await connection.eventLoop.flatSubmit {
                let answer = connection.eventLoop.makePromise(of: Message.self)
                connection.send(slow, timeout: .seconds(60)) { answer.completeWith($0) }
                return answer.futureResult
            }.map { _ in nil as (any Error)? }.recover { $0 }.get()
            #expect(fromTheLoop is RPCError, "\(String(describing: fromTheLoop))")
            #expect(ContinuousClock.now - started < .seconds(10), "waited for an answer of a closed connection")
        }
    }

    @Test func aRequestOverTheFrameLimitIsNotSentAndTheConnectionGoesOn() async throws {
        try await withTestServer { server in
            let connection = try await connect(to: server)
            defer { connection.startClosing() }
            let huge = PutRequest(
                key: ByteBuffer(string: "k"), value: ByteBuffer(repeating: 7, count: Limits.frameBytesMax),
                version: Version(hlc: 1, writer: 1), tombstone: false, origin: .client, epoch: 0,
                expiresAtMillis: nil, keyspace: 0)
            await #expect(throws: RPCError.requestTooLarge("")) {
                _ = try await connection.call(.putRequest(huge), timeout: .seconds(10))
            }
            let answer = try await connection.call(
                .getRequest(GetRequest(key: ByteBuffer(string: "fast"), keyspace: 0)), timeout: .seconds(10))
            #expect(answer == .getResponse(GetResponse(record: nil, clock: 1)))
        }
    }

    /// A client of a port nothing listens on (bound, then closed), backing off 60 s after a failure.
    static func clientOfAClosedPort() async throws -> (RPCClient, port: Int) {
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = probe.localAddress?.port ?? 1
        try await probe.close()
        var policy = ReconnectPolicy()
        policy.backoffInitial = .seconds(60)
        let client = RPCClient(
            host: "127.0.0.1", port: port, tls: try TestPKI.shared.clientContext(), hello: hello(), policy: policy)
        return (client, port)
    }

    @Test func unreachableServerFailsFastWhileBackingOff() async throws {
        let (client, _) = try await Self.clientOfAClosedPort()
        await #expect(throws: RPCError.self) {
            _ = try await client.call(.pingRequest(PingRequest(epoch: 0, clock: 0)), timeout: .seconds(5))
        }
        #expect(client.isBackingOff)
        let started = ContinuousClock.now
        await #expect(throws: RPCError.self) {
            _ = try await client.call(.pingRequest(PingRequest(epoch: 0, clock: 0)), timeout: .seconds(5))
        }
        #expect(ContinuousClock.now - started < .seconds(1))
        await client.close()
    }

    /// A server that comes back within the backoff window: ordinary calls still fail at once, but a
    /// probe dials it, and evidence from elsewhere (`resumeDialling`) ends the window for every call.
    @Test func aProbeOrEvidenceOfLifeDialsAServerInItsBackoffWindow() async throws {
        let (client, port) = try await Self.clientOfAClosedPort()
        let ping = Message.pingRequest(PingRequest(epoch: 0, clock: 3))
        await #expect(throws: RPCError.self) { _ = try await client.call(ping, timeout: .seconds(5)) }
        #expect(client.isBackingOff)
        try await withTestServer(port: port) { _ in
            // Back, but the window (60 s) has not passed: the remembered error, at once.
            await #expect(throws: RPCError.self) { _ = try await client.call(ping, timeout: .seconds(5)) }
            // A probe dials anyway, and its connection serves everyone after it.
            _ = try await client.send(ping, timeout: .seconds(10), probe: true).get()
            #expect(!client.isBackingOff)
            _ = try await client.call(ping, timeout: .seconds(10))
        }
        // Down again: back off; then evidence that it is up ends the window.
        await #expect(throws: RPCError.self) { _ = try await client.call(ping, timeout: .seconds(5)) }
        await #expect(throws: RPCError.self) { _ = try await client.call(ping, timeout: .seconds(5)) }
        #expect(client.isBackingOff)
        client.resumeDialling()
        #expect(!client.isBackingOff)
        await client.close()
    }

    /// A connection is bound to the node id in its certificate, both ways.
    @Test func connectionsAreBoundToTheNodeIDsInTheCertificates() async throws {
        try await withTestServer { server in
            // The node certificate is n1's: it cannot say it is n2.
            await #expect(throws: RPCError.remote(.notAuthorized, message: "")) {
                _ = try await connect(
                    to: server, identity: TestPKI.shared.node, hello: hello(role: .node, senderID: "n2"))
            }
            let n1 = try await connect(to: server, identity: TestPKI.shared.node, hello: hello(role: .node))
            await n1.close()
            // A client that means to reach n2 refuses the server that is n1.
            do {
                _ = try await connect(to: server, nodeID: "n2")
                Issue.record("a client meaning n2 accepted n1")
            } catch let error as RPCError {
                #expect("\(error)".contains("expected node 'n2'"), "\(error)")
            }
            let meant = try await connect(to: server, nodeID: "n1")
            #expect(meant.helloAck.nodeId == "n1")
            await meant.close()
        }
    }

    @Test func clientReconnectsAfterTheConnectionBreaks() async throws {
        try await withTestServer { server in
            var policy = ReconnectPolicy()
            policy.backoffInitial = .milliseconds(1)
            let client = RPCClient(
                host: "127.0.0.1", port: server.localAddress.port ?? 0, tls: try TestPKI.shared.clientContext(),
                hello: hello(), policy: policy)
            let first = try await client.connection()
            await first.close()
            let answer = try await client.call(.pingRequest(PingRequest(epoch: 0, clock: 3)), timeout: .seconds(10))
            #expect(
                answer == .pingResponse(PingResponse(epoch: 7, clock: 3, keys: 0, hintsQueued: 0, requestsInFlight: 0)))
            await client.close()
        }
    }
}
