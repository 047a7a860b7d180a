import KVCore
import KVRPC
import KVTLS
import KVWire
import NIOCore
import Synchronization
import Testing

/// Issue 21: the client `Put`s a connection sends at one moment leave as one `PutBatch` per keyspace
/// part and epoch, and each is answered as its own `Put` would be: its own answer, its own error.
@Suite(.timeLimit(.minutes(2)))
struct PutCoalescingTests {
    /// Answers as `EchoService` does, refuses a whole `PutBatch` holding a key named `fail-batch`, and
    /// records the type and size of every request it gets.
    final class RecordingService: RPCService {
        private let seen = Mutex<[String]>([])

        /// What arrived, in order: `putRequest`, or `putBatchRequest×N` for a batch of N writes.
        var arrived: [String] { seen.withLock { $0 } }

        func handshakeState() -> (epoch: UInt64, clock: UInt64) { (7, 42) }
        func mayAnswerWithoutTask(_ type: MessageType) -> Bool { false }
        func answerWithoutTask(
            _ request: Message, from peer: PeerIdentity,
            reply: @escaping @Sendable (Result<Message, any Error>) -> Void
        ) -> Bool { false }

        func handle(_ request: Message, from peer: PeerIdentity) async throws -> Message {
            switch request {
            case .putBatchRequest(let batch):
                seen.withLock { $0.append("putBatchRequest×\(batch.puts.count)") }
                if batch.puts.contains(where: { String(buffer: $0.key) == "fail-batch" }) {
                    throw RPCError.remote(.overloaded, message: "batch refused")
                }
            default:
                seen.withLock { $0.append("\(request.type)") }
            }
            return try await EchoService().handle(request, from: peer)
        }
    }

    static func put(
        _ key: String, hlc: UInt64, keyspace: UInt32 = 0, epoch: UInt64 = 0, origin: PutOrigin = .client
    ) -> PutRequest {
        PutRequest(
            key: ByteBuffer(string: key), value: ByteBuffer(string: "v\(hlc)"), version: Version(hlc: hlc, writer: 1),
            tombstone: false, origin: origin, epoch: epoch, expiresAtMillis: nil, keyspace: keyspace)
    }

    /// Sends `puts` from the connection's event loop, one after the other before its flush runs, and
    /// returns each one's answer, in order.
    static func sendTogether(_ puts: [PutRequest], on connection: RPCConnection) async throws -> [Result<
        Message, any Error
    >] {
        let answers = Mutex<[Int: Result<Message, any Error>]>([:])
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
            connection.eventLoop.execute {
                for (index, put) in puts.enumerated() {
                    connection.send(.putRequest(put), timeout: .seconds(30)) { result in
                        let all = answers.withLock { answers in
                            answers[index] = result
                            return answers.count == puts.count
                        }
                        if all { done.resume() }
                    }
                }
            }
        }
        return answers.withLock { answers in puts.indices.map { answers[$0]! } }
    }

    static func version(_ answer: Result<Message, any Error>) -> Version? {
        guard case .success(.putResponse(let response)) = answer else { return nil }
        return response.current
    }

    @Test func clientPutsOfOneMomentLeaveAsOneBatchAndEachGetsItsOwnAnswer() async throws {
        let service = RecordingService()
        try await withLimitedServer({ _ in }, service: service) { server in
            let connection = try await limitsConnect(to: server)
            defer { connection.startClosing() }
            let puts = (1...7).map { Self.put("k\($0)", hlc: UInt64($0)) } + [Self.put("refused", hlc: 8)]
            let answers = try await Self.sendTogether(puts, on: connection)
            #expect(service.arrived == ["putBatchRequest×8"])
            for index in 0..<7 {
                #expect(Self.version(answers[index]) == Version(hlc: UInt64(index + 1), writer: 1))
            }
            #expect(throws: RPCError.remote(.notReplica, message: "")) { try answers[7].get() }
            // A write alone still goes as a `Put`, and the connection serves on.
            let alone = try await Self.sendTogether([Self.put("k9", hlc: 9)], on: connection)
            #expect(Self.version(alone[0]) == Version(hlc: 9, writer: 1))
            #expect(service.arrived == ["putBatchRequest×8", "putRequest"])
        }
    }

    @Test func writesOfOtherKeyspacesEpochsOrOriginsLeaveApart() async throws {
        let service = RecordingService()
        try await withLimitedServer({ _ in }, service: service) { server in
            let connection = try await limitsConnect(to: server)
            defer { connection.startClosing() }
            let puts = [
                Self.put("a", hlc: 1), Self.put("b", hlc: 2, keyspace: 3), Self.put("c", hlc: 3),
                Self.put("d", hlc: 4, keyspace: 3), Self.put("e", hlc: 5, epoch: 2),
                Self.put("f", hlc: 6, origin: .readRepair), Self.put("g", hlc: 7, origin: .readRepair),
            ]
            let answers = try await Self.sendTogether(puts, on: connection)
            for (index, answer) in answers.enumerated() {
                #expect(Self.version(answer) == Version(hlc: UInt64(index + 1), writer: 1))
            }
            #expect(
                service.arrived.sorted()
                    == ["putBatchRequest×2", "putBatchRequest×2", "putRequest", "putRequest", "putRequest"])
        }
    }

    @Test func aBatchRefusedWholeFailsEachOfItsWrites() async throws {
        let service = RecordingService()
        try await withLimitedServer({ _ in }, service: service) { server in
            let connection = try await limitsConnect(to: server)
            defer { connection.startClosing() }
            let answers = try await Self.sendTogether(
                [Self.put("x", hlc: 1), Self.put("fail-batch", hlc: 2), Self.put("y", hlc: 3)], on: connection)
            #expect(service.arrived == ["putBatchRequest×3"])
            for answer in answers {
                #expect(throws: RPCError.remote(.overloaded, message: "")) { try answer.get() }
            }
            try await expectPing(connection)
        }
    }

    @Test func aConnectionWithoutBatchesSendsEachPut() async throws {
        let service = RecordingService()
        try await withLimitedServer({ $0.protocolVersions = ProtocolRange(lowest: 3, highest: 3)! }, service: service) {
            server in
            let connection = try await RPCConnection.negotiating(
                host: LimitsPKI.host, port: server.localAddress.port ?? 0, tls: try TestPKI.shared.clientContext(nil),
                hello: hello(), versions: WireProtocol.versions, timeout: .seconds(10))
            defer { connection.startClosing() }
            #expect(connection.version == 3)
            let answers = try await Self.sendTogether([Self.put("a", hlc: 1), Self.put("b", hlc: 2)], on: connection)
            #expect(answers.map(Self.version) == [Version(hlc: 1, writer: 1), Version(hlc: 2, writer: 1)])
            #expect(service.arrived == ["putRequest", "putRequest"])
        }
    }
}
