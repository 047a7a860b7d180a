import Foundation
import KVCluster
import KVCore
import KVRPC
import KVTLS
import KVWire
import Metrics
import NIOCore
import NIOPosix
import Synchronization

extension KVClient {
    // MARK: - Node health

    /// Records a successful answer from `node`: the node is alive and serving. `observe(_:from:in:)`
    /// calls it for successes only: a node's error answers (a draining node's refusals, a full disk)
    /// are not heartbeats; its pings still are.
    func heartbeat(_ node: String) {
        health.heartbeat(node)
    }

    /// Each node's phi now: how unlikely its silence is.
    package func nodePhi() -> [String: Double] {
        health.phi()
    }

    /// The nodes the failure detector suspects now.
    package func suspectedNodes() -> Set<String> {
        health.suspected()
    }

    /// The order in which a read asks the replicas of `key`, speeds aside (package: tests watch the
    /// routing).
    package func readOrder(forKey key: [UInt8]) async throws -> [String] {
        let topology = try await currentTopology()
        return reachableFirst(topology.ring.preferenceList(forKey: key), in: topology)
    }

    /// `replicas` with the ones the failure detector suspects, and those whose connection is in its
    /// backoff window (refused just now: a request would fail at once), moved to the end.
    func reachableFirst(_ replicas: [String], in topology: Topology) -> [String] {
        health.healthyFirst(replicas) { topology.nodes[$0]?.isBackingOff ?? false }
    }

    /// Sends a `Ping` to every node, not awaited: a hung node must not delay the others. Nodes new
    /// to the map are watched from now on.
    func pingAll(_ topology: Topology) {
        watch(topology)
        let epoch = topology.map.epoch
        let heartbeats = protocols.usesHeartbeats(topology.map)
        for node in topology.map.nodes where topology.nodes[node.id] != nil {
            let clock = clockNow()
            _ = send(to: node.id, in: topology, probe: true) { connection in
                MemberProtocols.probe(epoch: epoch, clock: clock, heartbeats: heartbeats, on: connection)
            }
        }
    }

    /// Whether the client's failure detector probes with `Heartbeat` now (a version-4 feature that
    /// needs every member at version 4): for tests and operators watching a rolling upgrade.
    public func usesHeartbeats() async throws -> Bool {
        protocols.usesHeartbeats(try await currentTopology().map)
    }

    /// The highest protocol version of each node this client has connected to, from its handshakes
    /// (a node not met yet is missing).
    public func protocolVersions() -> [String: UInt16] {
        protocols.known()
    }

    /// Starts watching the nodes of `topology` not watched yet, as if each had just answered: one that
    /// never does is suspected.
    func watch(_ topology: Topology) {
        health.watch(topology.map.nodes.map(\.id))
    }

    /// Starts the pinger once: every `healthCheckInterval`, a `Ping` to every node (timeout: the
    /// interval); answers are heartbeats.
    func startPinger(_ topology: Topology) {
        guard let interval = configuration.healthCheckInterval, !closed.load(ordering: .relaxed) else { return }
        pinger.withLock { task in
            guard task == nil else { return }
            watch(topology)
            task = background.spawn { [weak self] in
                while !Task.isCancelled {
                    // Holds the client only while sending, so a client nobody closed can still go away.
                    guard let self else { return }
                    // The map in use now: a newer one may have been installed since the start.
                    self.pingAll(self.topology.withLock { $0 } ?? topology)
                    try? await Task.sleep(for: interval)
                }
            }
        }
    }
}
