import Foundation
import KVCore
import KVRPC
import KVTLS
import KVWire
import NIOCore
import Synchronization
import Testing

/// Issue 21: what a service takes without a task (`RPCService.answerWithoutTask`) is handed over on
/// the connection's event loop and answered from there, at once or later from another thread;
/// everything else by the connection's task, with the same checks and errors.
@Suite(.timeLimit(.minutes(2)))
struct InlineAnswerTests {
    /// Answers gets of `inline-*` keys at once and of `later-*` keys from another thread, refuses
    /// `refused-*` at once, leaves the rest to `handle`, and would answer a `Stream` too (which a
    /// client may not send).
    final class InlineService: RPCService {
        let handled = Atomic<Int>(0)
        let answeredWithoutTask = Atomic<Int>(0)

        func handshakeState() -> (epoch: UInt64, clock: UInt64) { (1, 1) }

        func handle(_ request: Message, from peer: PeerIdentity) async throws -> Message {
            handled.add(1, ordering: .relaxed)
            guard case .getRequest = request else { throw RPCError.remote(.invalidRequest, message: "not served") }
            return Self.answer("task")
        }

        func mayAnswerWithoutTask(_ type: MessageType) -> Bool {
            type == .getRequest || type == .streamRequest
        }

        func answerWithoutTask(
            _ request: Message, from peer: PeerIdentity,
            reply: @escaping @Sendable (Result<Message, any Error>) -> Void
        ) -> Bool {
            switch request {
            case .getRequest(let get):
                let key = String(buffer: get.key)
                if key.hasPrefix("refused-") {
                    reply(.failure(RPCError.remote(.notReplica, message: "not here: \(key)")))
                    return true
                }
                if key.hasPrefix("later-") {
                    // Answered from another thread, as a write's group commit answers.
                    Thread.detachNewThread {
                        self.answeredWithoutTask.add(1, ordering: .relaxed)
                        reply(.success(Self.answer("later")))
                    }
                    return true
                }
                guard key.hasPrefix("inline-") else { return false }
                answeredWithoutTask.add(1, ordering: .relaxed)
                reply(.success(Self.answer("inline")))
                return true
            case .streamRequest:
                reply(.success(.streamResponse(StreamResponse(records: [], next: nil, done: true))))
                return true
            default:
                return false
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

    @Test func answersWithoutATaskWhatTheServiceTakesAndTheRestInItsTask() async throws {
        let service = InlineService()
        try await withLimitedServer({ _ in }, service: service) { server in
            let connection = try await limitsConnect(to: server)
            defer { connection.startClosing() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<600 {
                    group.addTask {
                        let kind = ["inline", "later", "other"][index % 3]
                        let answer = try await connection.call(Self.get("\(kind)-\(index)"), timeout: .seconds(60))
                        #expect(Self.value(answer) == (kind == "other" ? "task" : kind))
                    }
                }
                try await group.waitForAll()
            }
            #expect(service.answeredWithoutTask.load(ordering: .relaxed) == 400)
            #expect(service.handled.load(ordering: .relaxed) == 200)
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
