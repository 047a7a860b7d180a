import KVCore
package import KVRPC
package import KVTLS
package import KVWire
package import Metrics
import Synchronization

/// An `RPCService` that counts and times every request it passes on, per message type:
///
/// | metric | kind | moves when |
/// |---|---|---|
/// | `quorumkv_requests_total{type}` | counter | a request of that type was answered (or failed) |
/// | `quorumkv_request_errors_total{type}` | counter | one ended in an error answer |
/// | `quorumkv_request_duration_seconds{type}` | timer (histogram) | from the request's arrival to its answer |
/// | `quorumkv_requests_on_event_loop_total{type}` | counter | one was taken on the event loop (`answerWithoutTask`) |
///
/// `type` is the request's message type (`putRequest`, `getRequest`, `hintRequest`, ...): a bounded
/// set. Throughput is `rate(quorumkv_requests_total[1m])`, the error rate that of the errors, and
/// p99 `histogram_quantile(0.99, rate(quorumkv_request_duration_seconds_bucket[1m]))`.
package final class MeasuredService: RPCService {
    private struct Instruments {
        let requests: Counter
        let errors: Counter
        let onEventLoop: Counter
        let duration: Metrics.Timer

        /// Counts one request answered, started at `started`, and whether its answer was an error.
        func answered(startedAt started: ContinuousClock.Instant, failed: Bool) {
            requests.increment()
            duration.recordNanoseconds((ContinuousClock.now - started).wholeNanoseconds)
            if failed { errors.increment() }
        }
    }

    private let service: any RPCService
    private let nodeID: String
    private let factory: any MetricsFactory
    private let instruments = Mutex<[MessageType: Instruments]>([:])

    package init(_ service: any RPCService, nodeID: String, factory: any MetricsFactory) {
        self.service = service
        self.nodeID = nodeID
        self.factory = factory
    }

    package func handle(_ request: Message, from peer: PeerIdentity) async throws -> Message {
        let measured = instruments(for: request.type)
        let started = ContinuousClock.now
        do {
            let answer = try await service.handle(request, from: peer)
            measured.answered(startedAt: started, failed: false)
            return answer
        } catch {
            measured.answered(startedAt: started, failed: true)
            throw error
        }
    }

    package func mayAnswerWithoutTask(_ type: MessageType) -> Bool {
        service.mayAnswerWithoutTask(type)
    }

    /// Passes the request on, measured as `handle` measures it: from now to its reply.
    package func answerWithoutTask(
        _ request: Message, from peer: PeerIdentity,
        reply: @escaping @Sendable (Result<Message, any Error>) -> Void
    ) -> Bool {
        let measured = instruments(for: request.type)
        let started = ContinuousClock.now
        let taken = service.answerWithoutTask(request, from: peer) { result in
            measured.answered(startedAt: started, failed: (try? result.get()) == nil)
            reply(result)
        }
        if taken { measured.onEventLoop.increment() }
        return taken
    }

    package func handshakeState() -> (epoch: UInt64, clock: UInt64) {
        service.handshakeState()
    }

    private func instruments(for type: MessageType) -> Instruments {
        instruments.withLock { made in
            if let known = made[type] { return known }
            let dimensions = [("node", nodeID), ("type", "\(type)")]
            let new = Instruments(
                requests: Counter(label: "quorumkv_requests_total", dimensions: dimensions, factory: factory),
                errors: Counter(label: "quorumkv_request_errors_total", dimensions: dimensions, factory: factory),
                onEventLoop: Counter(
                    label: "quorumkv_requests_on_event_loop_total", dimensions: dimensions, factory: factory),
                duration: Metrics.Timer(
                    label: "quorumkv_request_duration_seconds", dimensions: dimensions, factory: factory))
            made[type] = new
            return new
        }
    }
}
