import KVCore
import KVRPC
import KVTLS
import KVWire
import NIOCore
import Synchronization
import Testing

/// Issue 21: what a service can answer without waiting is answered on the connection's event loop
/// (`RPCService.answerAtOnce`), everything else by its task, with the same checks and errors.
@Suite(.timeLimit(.minutes(2)))
struct InlineAnswerTests {
    /// Answers gets of `inline-*` keys at once, refuses `refused-*` at once, leaves the rest to
    /// `handle`, and would answer a `Stream` at once too (which a client may not send).
    final class InlineService: RPCService {
        let handled = Atomic<Int>(0)
        let answeredAtOnce = Atomic<Int>(0)

        func handshakeState() -> (epoch: UInt64, clock: UInt64) { (1, 1) }

        func handle(_ request: Message, from peer: PeerIdentity) async throws -> Message {
            handled.add(1, ordering: .relaxed)
            guard case .getRequest = request else { throw RPCError.remote(.invalidRequest, message: "not served") }
            return Self.answer("task")
        }

        func mayAnswerAtOnce(_ type: MessageType) -> Bool {
            type == .getRequest || type == .streamRequest
        }

        func answerAtOnce(_ request: Message, from peer: PeerIdentity) throws -> Message? {
            switch request {
            case .getRequest(let get):
                let key = String(buffer: get.key)
                if key.hasPrefix("refused-") { throw RPCError.remote(.notReplica, message: "not here: \(key)") }
                guard key.hasPrefix("inline-") else { return nil }
                answeredAtOnce.add(1, ordering: .relaxed)
                return Self.answer("inline")
            case .streamRequest:
                return .streamResponse(StreamResponse(records: [], next: nil, done: true))
            default:
                return nil
            }
        }

        static func answer(_ value: String) -> Message {
            .getResponse(
                GetResponse(
                    record: Record(
                        key: ByteBuffer(string: "k"), version: Version(hlc: 1, writer: 1), tombstone: false,
                        value: ByteBuffer(string: value), expiresAtMillis: nil),
                    clock: 1))
        }
    }

    static func get(_ key: String) -> Message {
        .getRequest(GetRequest(key: ByteBuffer(string: key), keyspace: 0))
    }

    static func value(_ answer: Message) -> String? {
        guard case .getResponse(let response) = answer, let record = response.record else { return nil }
        return String(buffer: record.value)
    }

    @Test func answersAtOnceWhatNeedsNoWaitingAndTheRestInItsTask() async throws {
        let service = InlineService()
        try await withLimitedServer({ _ in }, service: service) { server in
            let connection = try await limitsConnect(to: server)
            defer { connection.startClosing() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<600 {
                    group.addTask {
                        let inline = index % 2 == 0
                        let answer = try await connection.call(
                            Self.get(inline ? "inline-\(index)" : "other-\(index)"), timeout: .seconds(60))
                        #expect(Self.value(answer) == (inline ? "inline" : "task"))
                    }
                }
                try await group.waitForAll()
            }
            #expect(service.answeredAtOnce.load(ordering: .relaxed) == 300)
            #expect(service.handled.load(ordering: .relaxed) == 300)
            #expect(server.statistics.requestsServedCount >= 600)

            // An error thrown at once is answered as `handle`'s would be; the connection stays open.
            await #expect(throws: RPCError.remote(.notReplica, message: "")) {
                _ = try await connection.call(Self.get("refused-1"), timeout: .seconds(30))
            }
            // The role check comes first: a client may not send `Stream`, even one answerable at once.
            let stream = StreamRequest(range: TokenRange(start: 0, end: 0), after: nil, pageBytesMax: 1024, keyspace: 0)
            await #expect(throws: RPCError.remote(.notAuthorized, message: "")) {
                _ = try await connection.call(.streamRequest(stream), timeout: .seconds(30))
            }
            #expect(Self.value(try await connection.call(Self.get("inline-x"), timeout: .seconds(30))) == "inline")
        }
    }
}
