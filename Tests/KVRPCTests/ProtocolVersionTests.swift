import KVCore
import KVRPC
import KVTLS
import KVWire
import NIOCore
import Testing

/// Version negotiation over real TLS loopback connections: a version-4 side meets a side capped at 3
/// (`--protocol-max 3`, as the previous release), in both directions.
@Suite("Protocol versions", .timeLimit(.minutes(2)))
struct ProtocolVersionTests {
    private static let previous = ProtocolRange(lowest: 3, highest: 3)!

    /// A node-role client (the server records node peers' versions), reconnecting as `RPCClient` does.
    private func client(to server: RPCServer, versions: ProtocolRange, peerVersions: PeerVersions? = nil) throws
        -> RPCClient
    {
        RPCClient(
            host: "127.0.0.1", port: server.localAddress.port ?? 0,
            tls: try TestPKI.shared.clientContext(TestPKI.shared.node), hello: hello(role: .node),
            versions: versions, peerVersions: peerVersions)
    }

    @Test func twoVersion4SidesSpeak4AndLearnEachOthersHighest() async throws {
        let serverLearned = PeerVersions()
        try await withTestServer(peerVersions: serverLearned) { server in
            let clientLearned = PeerVersions()
            let client = try client(to: server, versions: WireProtocol.versions, peerVersions: clientLearned)
            let connection = try await client.connection()
            #expect(connection.version == 4)
            #expect(connection.helloAck.highestVersion == 4)
            #expect(connection.offered == WireProtocol.versions)
            #expect(clientLearned.snapshot() == ["n1": 4])
            #expect(serverLearned.snapshot() == ["n1": 4])
            // A version-4 message goes through on a version-4 connection.
            let answer = try await client.call(
                .heartbeatRequest(HeartbeatRequest(epoch: 1, clock: 5)), timeout: .seconds(10))
            #expect(answer == .heartbeatResponse(HeartbeatResponse(epoch: 7, clock: 5)))
            #expect(server.statistics.protocolViolationCount == 0)
            await client.close()
        }
    }

    @Test func aVersion4ClientMeetingAVersion3ServerRetriesOnceAt3() async throws {
        try await withTestServer(protocolVersions: Self.previous) { server in
            let learned = PeerVersions()
            let client = try client(to: server, versions: WireProtocol.versions, peerVersions: learned)
            let connection = try await client.connection()
            // The first Hello (3...4, protocolVersion 4) was refused, as a version-3 node refuses it;
            // the retry announced 3 alone.
            #expect(server.statistics.protocolViolationCount == 1)
            #expect(connection.version == 3)
            #expect(connection.offered == Self.previous)
            // A version-3 acceptor sends no highestVersion: its highest is the connection's.
            #expect(connection.helloAck.highestVersion == nil)
            #expect(learned.snapshot() == ["n1": 3])
            // Requests flow, and the same connection serves them: no further handshake.
            for index in 0..<5 {
                let answer = try await client.call(
                    .pingRequest(PingRequest(epoch: 1, clock: UInt64(index))), timeout: .seconds(10))
                guard case .pingResponse = answer else {
                    Issue.record("expected a PingResponse, got \(answer.type)")
                    return
                }
            }
            #expect(server.statistics.protocolViolationCount == 1)
            // A version-4 message is not sent on a version-3 connection.
            await #expect(throws: RPCError.protocolViolation("")) {
                _ = try await client.call(
                    .heartbeatRequest(HeartbeatRequest(epoch: 1, clock: 5)), timeout: .seconds(10))
            }
            await client.close()
        }
    }

    /// The fallback to 3 lasts as long as the connection made with it: once the server restarts (here:
    /// a version-4 server on the same port, an upgrade), the next connection offers 3...4 again.
    @Test func anUpgradedServerIsOfferedEveryVersionAgain() async throws {
        let learned = PeerVersions()
        let (client, port): (RPCClient, Int) = try await withTestServer(protocolVersions: Self.previous) { server in
            let made = try self.client(to: server, versions: WireProtocol.versions, peerVersions: learned)
            #expect(try await made.connection().version == 3)
            return (made, server.localAddress.port ?? 0)
        }
        try await withTestServer(port: port) { server in
            // The old connection ended with the old server; wait until the client sees it gone.
            let deadline = ContinuousClock.now + .seconds(30)
            var connection = try await client.connection()
            while connection.version == 3, ContinuousClock.now < deadline {
                if connection.isActive { try await Task.sleep(for: .milliseconds(20)) }
                connection = try await client.connection()
            }
            #expect(connection.version == 4)
            #expect(connection.offered == WireProtocol.versions)
            #expect(server.statistics.protocolViolationCount == 0)
            #expect(learned.snapshot() == ["n1": 4])
        }
        await client.close()
    }

    @Test func aClientCappedAt3MeetingAVersion4ServerSpeaks3() async throws {
        let serverLearned = PeerVersions()
        try await withTestServer(peerVersions: serverLearned) { server in
            let client = try client(to: server, versions: Self.previous)
            let connection = try await client.connection()
            #expect(connection.version == 3)
            // Fields of version 4 are left out of the answer on a version-3 connection.
            #expect(connection.helloAck.highestVersion == nil)
            #expect(server.statistics.protocolViolationCount == 0)
            // The capped side announced 3 alone (no lowestVersion, as the previous release).
            #expect(serverLearned.snapshot() == ["n1": 3])
            await client.close()
        }
    }

    /// A version-4 server answers a version-4 message on a version-3 connection as a version-3 node
    /// would: `unknownMessageType`, and the connection stays open.
    @Test func aVersion4MessageOnAVersion3ConnectionIsUnknown() async throws {
        try await withTestServer { server in
            let collector = FrameCollector()
            let channel = try await rawConnection(to: server, collector: collector)
            defer { channel.close(promise: nil) }
            var buffer = ByteBuffer()
            buffer.writeFrame(.hello(hello(version: 3)), requestID: 1)
            buffer.writeFrame(.heartbeatRequest(HeartbeatRequest(epoch: 0, clock: 4)), requestID: 2)
            buffer.writeFrame(.pingRequest(PingRequest(epoch: 0, clock: 4)), requestID: 3)
            try await channel.writeAndFlush(buffer)
            await collector.waitForFrames(3)
            let frames = collector.frames
            #expect(frames.count == 3 && !collector.isClosed)
            guard frames.count == 3 else { return }
            guard case .helloAck(let ack) = try Message(frame: frames[0]) else {
                Issue.record("expected a HelloAck, got \(frames[0])")
                return
            }
            // Version 3 negotiated: the version-4 field is left out of the answer.
            #expect(ack.protocolVersion == 3 && ack.highestVersion == nil)
            if case .error(let error) = try Message(frame: frames[1]) {
                #expect(error.code == .unknownMessageType && frames[1].requestID == 2)
            } else {
                Issue.record("expected an Error frame, got \(frames[1])")
            }
            #expect(try Message(frame: frames[2]).type == .pingResponse)
        }
    }

    @Test func rangesThatDoNotMeetAreRefusedNamingBoth() async throws {
        try await withTestServer(protocolVersions: ProtocolRange(lowest: 4, highest: 4)!) { server in
            do {
                _ = try await connect(to: server, hello: hello(version: 3))
                Issue.record("a version-3 Hello was accepted by a server speaking 4 alone")
            } catch let error as RPCError {
                #expect(error.remoteCode == .unsupportedVersion)
                let message = error.remoteMessage ?? ""
                #expect(message.contains("protocol versions 3") && message.contains("speaks 4"), "\(message)")
            }
        }
    }

    @Test(arguments: [
        Hello(protocolVersion: 4, clusterId: "test", senderId: "tester", role: .client, epoch: 0, lowestVersion: 9),
        Hello(protocolVersion: 0, clusterId: "test", senderId: "tester", role: .client, epoch: 0),
        Hello(protocolVersion: .max, clusterId: "test", senderId: "tester", role: .client, epoch: 0, lowestVersion: 0),
    ])
    func hostileRangesAreRefused(_ hostile: Hello) async throws {
        try await withTestServer { server in
            let error = await #expect(throws: RPCError.remote(.unsupportedVersion, message: "")) {
                _ = try await connect(to: server, hello: hostile)
            }
            // Said as it is: no range (a lowest of 0 or above the highest), not "an empty range".
            let lowest = hostile.lowestVersion ?? hostile.protocolVersion
            #expect(
                error?.remoteMessage?.contains("versions \(lowest)...\(hostile.protocolVersion), which is no range")
                    == true, "\(String(describing: error))")
        }
    }

    @Test func aWideRangeFromANewerPeerMeetsAt4() async throws {
        try await withTestServer { server in
            let wide = Hello(
                protocolVersion: .max, clusterId: "test", senderId: "tester", role: .client, epoch: 0,
                lowestVersion: 1)
            let connection = try await connect(to: server, hello: wide)
            #expect(connection.version == 4)
            await connection.close()
        }
    }
}
