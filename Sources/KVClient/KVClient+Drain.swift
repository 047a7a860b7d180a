import KVCore
import KVRPC
import KVWire

/// What `Admin` drain did on one node.
package struct DrainResult: Sendable, Hashable {
    package var node: String
    /// Requests still running when the node stopped waiting for them (0 unless the wait timed out).
    package var inFlightLeft: UInt64
    /// Whether the node put its store on disk.
    package var flushed: Bool
}

/// Whether a node is back in service after a restart, as the cluster sees it: what a rolling restart
/// waits for before it moves on to the next node.
package struct NodeReadiness: Sendable, Hashable {
    package var node: String
    /// What is not there yet, in words; empty when the node is ready.
    package var waitingFor: [String]

    package var isReady: Bool { waitingFor.isEmpty }
}

extension KVClient {
    // MARK: - Drain and readiness (rolling restarts)

    /// Drains `node` before a restart (`Admin` drain): it refuses every new request but Admin ones
    /// with `shuttingDown`, so clients answer from the other replicas and hand its writes off as
    /// hints, waits for the requests in flight (at most `timeout`, ≤ 60 s), then flushes its store.
    /// Needs an admin certificate.
    package func drain(node: String, timeout: Duration = .seconds(10)) async throws -> DrainResult {
        try requireAdmin("draining a node")
        let millis = max(1, min(timeout.wholeMillisecondsClamped, 60_000))
        let results = try await adminCall(
            .drain, [Pair(name: "timeout_ms", value: "\(millis)")], node: node, timeout: timeout + .seconds(30))
        guard results["outcome"] == "drained", let left = results["in_flight_left"].flatMap(UInt64.init) else {
            throw KVClientError.protocolViolation("\(node) answered Admin drain with \(results)")
        }
        return DrainResult(node: node, inFlightLeft: left, flushed: results["flushed"] == "1")
    }

    /// Ends a drain without a restart: `node` takes requests again. Needs an admin certificate.
    package func resume(node: String) async throws {
        try requireAdmin("resuming a node")
        let results = try await adminCall(.drain, [Pair(name: "resume", value: "1")], node: node)
        guard results["outcome"] == "resumed" else {
            throw KVClientError.protocolViolation("\(node) answered Admin drain resume with \(results)")
        }
    }

    /// Whether `node` is back in service: it takes requests (a `Ping` is answered, so it is not
    /// draining), it holds the newest map any member holds, every other member (but those declared
    /// down or removed) answers and none suspects it, and no member holds hints for it any more (its hand-offs were replayed). Needs an
    /// admin certificate.
    package func readiness(of node: String) async throws -> NodeReadiness {
        try requireAdmin("checking a node's readiness")
        let topology = try await currentTopology()
        guard topology.map.node(node) != nil else {
            throw KVClientError.invalidArgument("\(node) is not in the cluster map")
        }
        var waiting: [String] = []
        do {
            let ping = Message.pingRequest(PingRequest(epoch: topology.map.epoch, clock: 0))
            _ = try await call(ping, node: node, in: topology)
        } catch {
            waiting.append("\(node) to take requests (\(Self.reason(error)))")
        }
        var epochs: [String: UInt64] = [:]
        // Members an operator declared down or removed are not waited for.
        for member in topology.map.nodes.filter({ $0.state != .removed && $0.state != .down }).map(\.id) {
            let stats: NodeStats
            do {
                stats = try await adminStatistics(node: member, in: topology)
            } catch {
                waiting.append("\(member) to answer (\(Self.reason(error)))")
                continue
            }
            epochs[member] = stats.clusterEpoch
            guard member != node else { continue }
            if stats.peers.contains(where: { $0.node == node && $0.suspected }) {
                waiting.append("\(member) to see \(node) healthy")
            }
            let hints = stats.hintsQueued(for: node)
            if hints > 0 {
                waiting.append("\(member) to replay its \(hints) hint(s) for \(node)")
            }
        }
        if let own = epochs[node], let newest = epochs.values.max(), own < newest {
            waiting.append("\(node) to learn epoch \(newest) (it holds \(own))")
        }
        return NodeReadiness(node: node, waitingFor: waiting)
    }

    /// Sends `Admin command` to `node` and returns its results by name.
    func adminCall(
        _ command: AdminCommand, _ arguments: [Pair], node: String, timeout: Duration? = nil
    ) async throws -> [String: String] {
        let answer = try await call(
            .adminRequest(AdminRequest(command: command, arguments: arguments)), node: node,
            in: try await currentTopology(), timeout: timeout)
        guard case .adminResponse(let response) = answer else {
            throw KVClientError.protocolViolation("\(node) answered Admin \(command) with \(answer.type)")
        }
        return Dictionary(response.results.map { ($0.name, $0.value) }, uniquingKeysWith: { $1 })
    }
}
