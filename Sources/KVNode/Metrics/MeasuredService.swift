import KVCore
package import KVRPC
package import KVTLS
package import KVWire
package import Metrics
import Synchronization

/// An `RPCService` that counts and times every request it passes on, per message type and keyspace:
///
/// | metric | kind | moves when |
/// |---|---|---|
/// | `quorumkv_requests_total{type,keyspace}` | counter | a request of that type was answered (or failed) |
/// | `quorumkv_request_errors_total{type,keyspace}` | counter | one ended in an error answer |
/// | `quorumkv_request_duration_seconds{type,keyspace}` | timer (histogram) | from the request's arrival to its answer |
/// | `quorumkv_requests_on_event_loop_total{type,keyspace}` | counter | one was taken on the event loop (`answerWithoutTask`) |
/// | `quorumkv_batch_items_total{type,keyspace}` | counter | a batch (`getBatchRequest`, `putBatchRequest`, `hintBatchRequest`) was answered: one per key |
/// | `quorumkv_batch_item_errors_total{type,keyspace}` | counter | one of its keys was answered with an error (each key of a batch answered with one error) |
///
/// `type` is the request's message type (`putRequest`, `getRequest`, `hintRequest`, ...): a bounded
/// set. `keyspace` is the name of the keyspace a request about keys names (`Message.keyspaceID`;
/// `default` for id 0, the parts of a split keyspace under its one name), `unknown` for an id the
/// node's map lacks (so a peer's ids cannot grow the label set), and `none` for a request about no
/// keyspace (pings, maps, admin). Throughput is `rate(quorumkv_requests_total[1m])`, the error rate
/// that of the errors, and p99 `histogram_quantile(0.99, rate(quorumkv_request_duration_seconds_bucket[1m]))`.
package final class MeasuredService: RPCService {
    private struct Instruments {
        let requests: Counter
        let errors: Counter
        let onEventLoop: Counter
        let duration: Metrics.Timer
        /// A batch type's keys, and those answered with an error.
        let items: (all: Counter, failed: Counter)?

        /// Counts a request answered with `answer` (nil: an error), started at `started`; `keys`: the
        /// keys of a batch request (`MeasuredService.keys(of:)`), nil for another.
        func answered(with answer: Message?, keys: Int?, startedAt started: ContinuousClock.Instant) {
            requests.increment()
            duration.recordNanoseconds((ContinuousClock.now - started).wholeNanoseconds)
            if answer == nil { errors.increment() }
            guard let items, let keys else { return }
            items.all.increment(by: keys)
            let failed = MeasuredService.keysFailed(of: keys, answeredWith: answer)
            if failed > 0 { items.failed.increment(by: failed) }
        }
    }

    /// The keys of a batch request; nil for a request that is not a batch. Taken before the request is
    /// passed on, so that what answers it later need not hold the request.
    static func keys(of request: Message) -> Int? {
        switch request {
        case .getBatchRequest(let batch): batch.keys.count
        case .putBatchRequest(let batch): batch.puts.count
        case .hintBatchRequest(let batch): batch.hints.count
        default: nil
        }
    }

    /// How many of a batch's `keys` its answer refused: those its items answer with an error, or all
    /// of them when the batch was answered with one (`answer` nil).
    static func keysFailed(of keys: Int, answeredWith answer: Message?) -> Int {
        switch answer {
        case .getBatchResponse(let response): response.items.count { $0.error != nil }
        case .putBatchResponse(let response): response.items.count { $0.error != nil }
        case .hintBatchResponse(let response): response.items.count { $0.error != nil }
        default: keys
        }
    }

    /// What the instruments of a request are kept under: its type, and its keyspace's id (`none` and
    /// `unknown` above `UInt32.max`).
    private struct Key: Hashable {
        let type: MessageType
        let keyspace: UInt64

        static let noKeyspace = UInt64(UInt32.max) + 1
        static let unknownKeyspace = UInt64(UInt32.max) + 2
    }

    private let service: any RPCService
    private let nodeID: String
    private let factory: any MetricsFactory
    private let keyspaceName: @Sendable (UInt32) -> String?
    private let instruments = Mutex<[Key: Instruments]>([:])

    /// - Parameter keyspaceName: the name of keyspace `id` (never the default keyspace's, which is
    ///   `default`) in the node's map (the keyspace's own name for every part of a split one), nil
    ///   when the map has none by that id. Asked once per keyspace and type: a keyspace's id never
    ///   names another.
    package init(
        _ service: any RPCService, nodeID: String, factory: any MetricsFactory,
        keyspaceName: @escaping @Sendable (UInt32) -> String? = { _ in nil }
    ) {
        self.service = service
        self.nodeID = nodeID
        self.factory = factory
        self.keyspaceName = keyspaceName
    }

    package func handle(_ request: Message, from peer: PeerIdentity) async throws -> Message {
        let measured = instruments(for: request)
        let keys = Self.keys(of: request)
        let started = ContinuousClock.now
        do {
            let answer = try await service.handle(request, from: peer)
            measured.answered(with: answer, keys: keys, startedAt: started)
            return answer
        } catch {
            measured.answered(with: nil, keys: keys, startedAt: started)
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
        let measured = instruments(for: request)
        let keys = Self.keys(of: request)
        let started = ContinuousClock.now
        let taken = service.answerWithoutTask(request, from: peer) { result in
            measured.answered(with: try? result.get(), keys: keys, startedAt: started)
            reply(result)
        }
        if taken { measured.onEventLoop.increment() }
        return taken
    }

    package func handshakeState() -> (epoch: UInt64, clock: UInt64) {
        service.handshakeState()
    }

    private func instruments(for request: Message) -> Instruments {
        let id = request.keyspaceID
        var key = Key(type: request.type, keyspace: id.map(UInt64.init) ?? Key.noKeyspace)
        if let known = instruments.withLock({ $0[key] }) { return known }
        // First sight of this type and keyspace: the name, outside the lock (it reads the map).
        let label: String
        if id == Keyspace.defaultID {
            label = Keyspace.defaultName
        } else if let id {
            if let name = keyspaceName(id) {
                label = name
            } else {
                key = Key(type: request.type, keyspace: Key.unknownKeyspace)
                label = KeyspaceLabel.unknown
            }
        } else {
            label = KeyspaceLabel.none
        }
        return instruments.withLock { made in
            if let known = made[key] { return known }
            let dimensions = [("node", nodeID), ("type", "\(request.type)"), ("keyspace", label)]
            let new = Instruments(
                requests: Counter(label: "quorumkv_requests_total", dimensions: dimensions, factory: factory),
                errors: Counter(label: "quorumkv_request_errors_total", dimensions: dimensions, factory: factory),
                onEventLoop: Counter(
                    label: "quorumkv_requests_on_event_loop_total", dimensions: dimensions, factory: factory),
                duration: Metrics.Timer(
                    label: "quorumkv_request_duration_seconds", dimensions: dimensions, factory: factory),
                items: [.getBatchRequest, .putBatchRequest, .hintBatchRequest].contains(request.type)
                    ? (
                        Counter(label: "quorumkv_batch_items_total", dimensions: dimensions, factory: factory),
                        Counter(label: "quorumkv_batch_item_errors_total", dimensions: dimensions, factory: factory)
                    ) : nil)
            made[key] = new
            return new
        }
    }
}
