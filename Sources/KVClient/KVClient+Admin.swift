import Foundation
import KVCluster
package import KVCore
import KVRPC
import KVTLS
package import KVWire
import Metrics
import NIOCore
import NIOPosix
import Synchronization

extension KVClient {
    // MARK: - One replica directly (admin)

    /// Reads what one replica holds for `key`, tombstones included, bypassing coordination.
    ///
    /// For debugging and repair checks; needs an admin certificate.
    package func replicaRecord(_ key: [UInt8], node: String) async throws -> StoredRecord? {
        try await replicaRecord(key, node: node, in: Keyspace.defaultName)
    }

    /// `replicaRecord` of `key` in keyspace `keyspace`.
    func replicaRecord(_ key: [UInt8], node: String, in keyspace: String) async throws -> StoredRecord? {
        try validate(key: key)
        try requireAdmin()
        let (topology, route) = try await topologyAndRoute(keyspace, key: key)
        let answer = try await call(route.getRequest(key), node: node, in: topology)
        guard case .getResponse(let response) = answer else {
            throw KVClientError.protocolViolation("\(node) answered Get with \(answer.type)")
        }
        observe(response.clock)
        do throws(MalformedRecord) {
            return try response.record?.stored()
        } catch {
            throw KVClientError.protocolViolation("\(node) answered Get with a malformed record: \(error)")
        }
    }

    /// Writes `value` (or a tombstone) to one replica only, bypassing coordination: the other replicas
    /// do not get it. For debugging, tests and repair checks; needs an admin certificate.
    ///
    /// - Returns: the version written, or the newer version the replica already held.
    @discardableResult
    package func writeReplica(_ key: [UInt8], value: [UInt8], tombstone: Bool = false, node: String) async throws
        -> ApplyOutcome
    {
        try await writeReplica(key, value: value, tombstone: tombstone, node: node, in: Keyspace.defaultName)
    }

    /// `writeReplica` of `key` in keyspace `keyspace` (never with its TTL: a debugging write).
    func writeReplica(_ key: [UInt8], value: [UInt8], tombstone: Bool, node: String, in keyspace: String)
        async throws -> ApplyOutcome
    {
        try validate(key: key)
        try requireAdmin()
        let (topology, route) = try await topologyAndRoute(keyspace, key: key)
        let millis = configuration.wallClockMillis()
        let version = clock.withLock { $0.stamp(wallMillis: millis) }
        let request = route.putRequest(
            Record(
                key: ByteBuffer(bytes: key), version: version, tombstone: tombstone, value: ByteBuffer(bytes: value),
                expiresAtMillis: nil),
            epoch: 0)
        let answer = try await call(request, node: node, in: topology)
        guard case .putResponse(let response) = answer else {
            throw KVClientError.protocolViolation("\(node) answered Put with \(answer.type)")
        }
        observe(response.clock)
        return response.outcome == .applied ? .applied : .superseded(current: response.current)
    }

    // MARK: - Cluster

    /// One node's statistics (`Admin` stats, answered as `NodeStats`: keys, uptime, its counters
    /// since it started, its queues, its view of its peers and of the cluster map). Needs an admin
    /// certificate.
    package func nodeStatistics(node: String) async throws -> NodeStats {
        try requireAdmin("reading a node's statistics")
        return try await adminStatistics(node: node, in: try await currentTopology())
    }

    func adminStatistics(node: String, in topology: Topology) async throws -> NodeStats {
        let answer = try await call(
            .adminRequest(AdminRequest(command: .stats, arguments: [])), node: node, in: topology)
        guard case .nodeStats(let stats) = answer else {
            throw KVClientError.protocolViolation("\(node) answered Admin stats with \(answer.type)")
        }
        return stats
    }

    /// Runs an anti-entropy pass on `node` now (`Admin` repair) and returns what it did: the node
    /// compares each vnode range it replicates (those overlapping `range`, when given) with every
    /// co-replica and copies what differs. Needs an admin certificate.
    ///
    /// A pass can take minutes on a large store, so it has its own `timeout`, not the request timeout.
    /// A co-replica that is down does not fail the call: the summary counts the sessions that failed.
    package func repair(node: String, range: TokenRangeSpan? = nil, timeout: Duration = .seconds(3600)) async throws
        -> RepairSummary
    {
        try requireAdmin("repair")
        let arguments = range.map { [Pair(name: "range", value: $0.repairArgument)] } ?? []
        let results = try await adminCall(.repair, arguments, node: node, timeout: timeout)
        guard let summary = RepairSummary(nodeID: node, results: results) else {
            throw KVClientError.protocolViolation("\(node) answered repair without its counts")
        }
        return summary
    }

    /// The cluster map in use (fetched from a seed node if it was not given).
    package func clusterMap() async throws -> ClusterMap {
        try await currentTopology().map
    }

    /// Pings every node of the cluster and reports which answer, how fast, and how many keys they hold.
    ///
    /// With an admin certificate it also reads each up node's counters (`Admin` stats: hints stored,
    /// replayed, expired, refused and queued per target, read repairs, ranges due for anti-entropy),
    /// one more call per node, all nodes at once. A node that answers the ping but not that call is
    /// still up: its counters stay nil and `countersError` says why.
    package func status() async throws -> [NodeStatus] {
        // The members as the nodes know them now (the cluster file may predate joins and leaves).
        _ = try? await latestClusterMap()
        let topology = try await currentTopology()
        let nodes = topology.map.nodes.filter { $0.state != .removed }
        let withCounters = identity.role == .admin
        return await withTaskGroup(of: (Int, NodeStatus).self) { group in
            for (index, node) in nodes.enumerated() {
                group.addTask {
                    let started = ContinuousClock.now
                    do {
                        let answer = try await self.call(
                            .pingRequest(PingRequest(epoch: topology.map.epoch, clock: self.clockNow())), node: node.id,
                            in: topology)
                        guard case .pingResponse(let ping) = answer else {
                            throw KVClientError.protocolViolation("\(node.id) answered Ping with \(answer.type)")
                        }
                        self.observe(ping.clock)
                        var status = NodeStatus(
                            nodeID: node.id, address: node.address, isUp: true,
                            latency: ContinuousClock.now - started, keys: ping.keys, hintsQueued: ping.hintsQueued,
                            error: nil)
                        status.protocolVersion = self.protocols.known()[node.id]
                        if withCounters {
                            do {
                                status.addCounters(try await self.adminStatistics(node: node.id, in: topology))
                            } catch {
                                status.countersError = "\(error)"
                            }
                        }
                        return (index, status)
                    } catch {
                        return (
                            index,
                            NodeStatus(
                                nodeID: node.id, address: node.address, isUp: false, latency: nil, keys: nil,
                                hintsQueued: nil, error: "\(error)")
                        )
                    }
                }
            }
            var results = [NodeStatus?](repeating: nil, count: nodes.count)
            for await (index, status) in group {
                results[index] = status
            }
            return results.compactMap { $0 }
        }
    }

    func requireAdmin(_ what: String = "reading or writing one replica directly") throws {
        guard identity.role == .admin else {
            throw KVClientError.invalidArgument("\(what) needs an admin certificate; this one is \(identity.role)")
        }
    }
}
