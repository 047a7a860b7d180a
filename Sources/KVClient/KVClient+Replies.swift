import Foundation
import KVCore
import KVRPC
import KVTLS
import KVWire
import Metrics
import NIOCore
import NIOPosix
import Synchronization

extension KVClient {
    func call(_ request: Message, node: String, in topology: Topology, timeout: Duration? = nil) async throws
        -> Message
    {
        var client = topology.nodes[node]
        if client == nil, topology.map.node(node) == nil {
            // A node added since this client's map was made (a cluster file older than the cluster):
            // look for a later map once.
            _ = try? await latestClusterMap()
            client = self.topology.withLock { $0?.nodes[node] }
        }
        guard let client else {
            let known = (self.topology.withLock { $0 } ?? topology).map.voters.joined(separator: ", ")
            throw KVClientError.invalidArgument("no node '\(node)' in the cluster (nodes: \(known))")
        }
        do {
            // A request for this node alone (no other replica to try): dial it even in its backoff window.
            return try await client.call(request, timeout: timeout ?? configuration.requestTimeout, probe: true)
        } catch let error as RPCError {
            if error.remoteCode == .notReplica {
                // The node's map says otherwise: learn it (for the next request).
                noticeEpoch(.max, from: node, in: topology)
            }
            if let code = error.remoteCode {
                throw KVClientError.refused(code, "\(node) refused the request: \(error.remoteMessage ?? "")")
            }
            throw KVClientError.unavailable("\(node) (\(client.address)): \(error)")
        }
    }

    /// The event of a `Put`'s answer; `started` (nil for a key of a batch, whose answer time is the
    /// whole batch's) feeds the node's response times.
    func writeEvent(
        _ node: String, attempt: Int, _ result: Result<Message, any Error>, started: ContinuousClock.Instant?
    ) -> WriteOperation.Event {
        switch result {
        case .success(.putResponse(let response)):
            if let started { record(node, ContinuousClock.now - started) }
            switch response.outcome {
            case .applied: return .applied(node, attempt: attempt, clock: response.clock)
            case .superseded:
                return .superseded(node, attempt: attempt, current: response.current, clock: response.clock)
            }
        case .success(let other):
            return .failed(node, attempt: attempt, reason: "answered Put with \(other.type)")
        case .failure(let error):
            return .failed(node, attempt: attempt, reason: Self.reason(error))
        }
    }

    func hintEvent(_ fallback: String, for target: String, attempt: Int, _ result: Result<Message, any Error>)
        -> WriteOperation.Event
    {
        switch result {
        case .success(.hintResponse(let response)) where response.outcome == .stored:
            hintsSent.add(1, ordering: .relaxed)
            metrics.hints.increment()
            return .hintStored(fallback, for: target, attempt: attempt, clock: response.clock)
        case .success(.hintResponse):
            return .hintFailed(fallback, for: target, attempt: attempt, reason: "refused the hint: its queue is full")
        case .success(let other):
            return .hintFailed(fallback, for: target, attempt: attempt, reason: "answered Hint with \(other.type)")
        case .failure(let error):
            return .hintFailed(fallback, for: target, attempt: attempt, reason: Self.reason(error))
        }
    }

    /// The event of a `Get`'s answer; `started` as `writeEvent`'s.
    func readEvent(_ node: String, _ result: Result<Message, any Error>, started: ContinuousClock.Instant?)
        -> ReadOperation.Event
    {
        switch result {
        case .success(.getResponse(let response)):
            if let started { record(node, ContinuousClock.now - started) }
            do throws(MalformedRecord) {
                return .answered(node, try response.record?.stored(), clock: response.clock)
            } catch {
                return .failed(node, reason: "answered Get with a malformed record: \(error)")
            }
        case .success(let other):
            return .failed(node, reason: "answered Get with \(other.type)")
        case .failure(let error):
            return .failed(node, reason: Self.reason(error))
        }
    }

    func repairEvent(_ node: String, _ result: Result<Message, any Error>) -> ReadOperation.Event {
        switch result {
        case .success(.putResponse(let response)):
            clock.withLock { $0.observe(response.clock) }
            return .repaired(node)
        case .success(let other):
            return .repairFailed(node, reason: "answered Put with \(other.type)")
        case .failure(let error):
            return .repairFailed(node, reason: Self.reason(error))
        }
    }

    static func reason(_ error: any Error) -> String {
        if let error = error as? RPCError, let message = error.remoteMessage {
            return message
        }
        return "\(error)"
    }

    func record(_ node: String, _ latency: Duration) {
        latencies.withLock { $0[node, default: NodeLatencies()].record(latency) }
        let now = ContinuousClock.now
        responseTimes.withLock { $0.record(node, latency, at: now) }
    }
}

/// One node's recent response times (KVCore's `LatencyTracker`) and their p99, which a read's
/// speculation delay takes: recomputed every `refreshEvery` answers rather than sorted at every read.
package struct NodeLatencies: Sendable {
    package static let refreshEvery = 16
    private var tracker = LatencyTracker()
    private var recorded = 0
    /// The p99 of the window as of the last refresh; nil until the tracker has enough samples.
    package private(set) var p99: Duration?

    package init() {}

    package mutating func record(_ latency: Duration) {
        tracker.record(latency)
        recorded &+= 1
        if p99 == nil || recorded % Self.refreshEvery == 0 {
            p99 = tracker.percentile(0.99)
        }
    }
}
