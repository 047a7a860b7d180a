import KVCore
import KVRPC
import KVStorage
import KVTLS
import KVWire
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Hands held hints over to their targets: as soon as a target answers again, its hints are replayed
/// as ordinary `Put`s, in version order, throttled, and each is deleted only after the target
/// acknowledged it (applied, or already held something newer). Hints older than the hint window are
/// dropped and counted: anti-entropy must fix those replicas.
final class HintReplayer: Sendable {
    struct Configuration: Sendable {
        /// How often queues are looked at.
        var interval: Duration = .milliseconds(200)
        /// Hints replayed per second, over all targets.
        var ratePerSecond = 2_000
        /// Hints older than this are dropped, not replayed.
        var window: Duration = .seconds(3 * 3600)
        /// Replays in flight at once per target.
        var concurrency = 32
    }

    private let configuration: Configuration
    private let hints: any HintStore
    private let pool: NIOThreadPool
    private let clients: [String: RPCClient]
    private let wallMillis: @Sendable () -> UInt64
    private let logger: Logger
    private let statistics: NodeStatistics

    init(
        configuration: Configuration,
        hints: any HintStore,
        pool: NIOThreadPool,
        cluster: ClusterMap,
        nodeID: String,
        tls: TLSContext,
        wallMillis: @escaping @Sendable () -> UInt64,
        statistics: NodeStatistics,
        logger: Logger
    ) {
        self.statistics = statistics
        self.configuration = configuration
        self.hints = hints
        self.pool = pool
        self.wallMillis = wallMillis
        self.logger = logger
        let hello = Hello(
            protocolVersion: WireProtocol.version, clusterId: cluster.clusterID, senderId: nodeID, role: .node,
            epoch: cluster.epoch)
        var clients: [String: RPCClient] = [:]
        for node in cluster.nodes where node.id != nodeID {
            guard let address = HostPort(parsing: node.address) else { continue }
            clients[node.id] = RPCClient(host: address.host, port: address.port, tls: tls, hello: hello)
        }
        self.clients = clients
    }

    /// Replays until the task is cancelled.
    func run() async {
        while !Task.isCancelled {
            let budget = max(1, Int(Double(configuration.ratePerSecond) * (configuration.interval / .seconds(1))))
            var spent = 0
            for (target, count) in hints.hintQueueSizes().sorted(by: { $0.key < $1.key }) where count > 0 {
                guard spent < budget else { break }
                spent += await replay(target: target, limit: budget - spent)
            }
            try? await Task.sleep(for: configuration.interval)
        }
        for client in clients.values {
            await client.close()
        }
    }

    /// Replays up to `limit` of one target's hints; returns how many it tried.
    private func replay(target: String, limit: Int) async -> Int {
        guard let client = clients[target] else { return 0 }
        let hints = self.hints
        let batch: [(id: HintID, hint: StoredHint)]
        do {
            batch = try await pool.runIfActive { try hints.hints(for: target, limit: limit) }
        } catch {
            logger.warning("cannot read hints", metadata: ["peer.node_id": "\(target)", "error": "\(error)"])
            return 0
        }
        let now = wallMillis()
        let windowMillis = UInt64(configuration.window.components.seconds) * 1000
        var live: [(id: HintID, hint: StoredHint)] = []
        for entry in batch {
            if now > entry.hint.storedAtMillis && now - entry.hint.storedAtMillis > windowMillis {
                try? await pool.runIfActive { try hints.deleteHint(entry.id) }
                statistics.hintsExpired.add(1, ordering: .relaxed)
                logger.info("hint expired", metadata: ["peer.node_id": "\(target)"])
            } else {
                live.append(entry)
            }
        }
        // Expired hints are dropped even while the target is down; live ones wait for it.
        guard !client.isBackingOff else { return batch.count - live.count }
        // Replay in order, a bounded number at a time; stop at the first failure (the target is down
        // again) so that the rest wait for the next round.
        var index = 0
        while index < live.count {
            let chunk = live[index..<min(live.count, index + configuration.concurrency)]
            index += chunk.count
            let acknowledged = await withTaskGroup(of: HintID?.self) { group in
                for (id, hint) in chunk {
                    group.addTask {
                        let request = Message.putRequest(
                            PutRequest(
                                key: ByteBuffer(bytes: hint.key), value: ByteBuffer(bytes: hint.record.value),
                                version: hint.record.version, tombstone: hint.record.tombstone,
                                origin: .hintReplay))
                        guard case .putResponse = try? await client.call(request, timeout: .seconds(5)) else {
                            return nil
                        }
                        return id
                    }
                }
                var done: [HintID] = []
                for await id in group {
                    if let id { done.append(id) }
                }
                return done
            }
            for id in acknowledged {
                try? await pool.runIfActive { try hints.deleteHint(id) }
            }
            statistics.hintsReplayed.add(acknowledged.count, ordering: .relaxed)
            if acknowledged.count < chunk.count {
                break
            }
        }
        if !live.isEmpty {
            logger.debug("hints replayed", metadata: ["peer.node_id": "\(target)", "hints.count": "\(live.count)"])
        }
        return batch.count
    }
}
