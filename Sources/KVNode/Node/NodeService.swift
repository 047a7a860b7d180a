import KVCluster
import KVCore
import KVRPC
import KVStorage
import KVTLS
import KVWire
public import Logging
import Metrics
import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization

/// A running replica node: opens the store, listens for RPC, and shuts down cleanly on a graceful
/// shutdown (SIGTERM/SIGINT in `kvd`).
public final class NodeService: Service {
    private let configuration: NodeConfiguration
    private let tls: TLSContext
    private let peerTLS: TLSContext
    /// Both contexts, reloaded together (SIGHUP in `kvd`, `Admin` reloadCertificates).
    private let certificates: NodeCertificates
    private let logger: Logger

    /// Checks the configuration, the certificate and the data folder; nothing listens yet.
    ///
    /// - Throws: `NodeError` when the certificate is not a node certificate for this id, or the data
    ///   folder belongs to another node.
    public init(configuration: NodeConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        do {
            let configuration = TLSConfiguration(
                caFile: configuration.caFile,
                certificateFile: configuration.certificateFile,
                keyFile: configuration.keyFile,
                crlFile: configuration.crlFile
            )
            self.tls = try TLSContext(configuration: configuration, side: .server)
            // The same certificate, as the client side of node-to-node connections (hint replay).
            self.peerTLS = try TLSContext(configuration: configuration, side: .client)
        } catch {
            throw NodeError.configuration("certificates: \(error)")
        }
        self.certificates = NodeCertificates(server: tls, client: peerTLS, logger: logger)
        let identity = tls.localIdentity
        guard identity.role == .node else {
            throw NodeError.identity(
                "\(configuration.certificateFile) is a \(identity.role) certificate; a node needs a node certificate")
        }
        if let cluster = configuration.cluster {
            guard cluster.clusterID == configuration.clusterID else {
                throw NodeError.configuration(
                    "the cluster file names cluster '\(cluster.clusterID)' but this node is configured for '\(configuration.clusterID)'"
                )
            }
        }
        try configuration.validate()
        guard identity.name == configuration.id else {
            throw NodeError.identity(
                "\(configuration.certificateFile) is issued to '\(identity.name)', but this node's id is '\(configuration.id)'"
            )
        }
    }

    /// Reads the certificate, key, CA file and CRL file again for new connections, inbound and
    /// outbound (established ones go on); a refusal keeps the material in use. Logs the outcome.
    public func reloadCertificates(trigger: String) async -> CertificateReloadOutcome {
        await certificates.reload(trigger: trigger)
    }

    public func run() async throws {
        let store: RocksDBStore
        do {
            store = try RocksDBStore(
                directory: configuration.dataDirectory, durability: configuration.durability,
                walSync: configuration.walSync, blockCacheBytes: configuration.blockCacheBytes,
                diskReserveBytes: configuration.diskReserveBytes)
        } catch {
            throw NodeError.storage("cannot open data folder \(configuration.dataDirectory): \(error)")
        }
        defer { store.close() }
        try claim(store)
        if let free = DiskRoom.bytesFree(configuration.dataDirectory), free < configuration.diskReserveBytes {
            logger.warning(
                "less room free than the disk reserve: writes of records and hints are refused until there is more",
                metadata: [
                    "disk.free_bytes": "\(free)", "disk.reserve_bytes": "\(configuration.diskReserveBytes)",
                    "data": "\(configuration.dataDirectory)",
                ])
        }

        let pool = NIOThreadPool(numberOfThreads: 16)
        pool.start()

        let address = "\(configuration.listenHost):\(configuration.listenPort)"
        let initial =
            configuration.cluster
            ?? ClusterMap(
                clusterID: configuration.clusterID, epoch: 1, replicationFactor: 1,
                nodes: [
                    ClusterMap.Node(
                        id: configuration.id, address: address,
                        tokens: TokenAllocator.tokensForJoiningNode(
                            configuration.id, existing: [], tokensPerNode: TokenAllocator.tokensPerNodeDefault),
                        zone: configuration.zone ?? "")
                ])
        let membership: Membership
        let ring: Ring
        do {
            let peerTLS = self.peerTLS
            membership = try Membership(initial: initial, store: store, votes: TLSMapVotes(context: peerTLS))
            ring = try membership.current.ring()
        } catch {
            try? await pool.shutdownGracefully()
            throw (error as? NodeError) ?? NodeError.configuration("the cluster map is not a valid ring: \(error)")
        }
        let cluster = membership.current
        do {
            try configuration.checkZone(in: cluster)
        } catch {
            try? await pool.shutdownGracefully()
            throw error
        }
        if cluster.node(configuration.id) == nil {
            let join = "kvctl join" + (configuration.zone.map { " --zone \($0)" } ?? "")
            logger.notice(
                "this node is not in the cluster map yet: it serves nothing until an operator adds it (\(join))",
                metadata: [
                    "node.id": "\(configuration.id)", "cluster.members": "\(cluster.voters.joined(separator: ","))",
                ])
        }
        if cluster.epoch > initial.epoch {
            logger.info(
                "using the cluster map stored in the data folder, later than the cluster file's",
                metadata: ["cluster.epoch": "\(cluster.epoch)", "cluster.file_epoch": "\(initial.epoch)"])
        }
        // With --metrics, the node's own registry, served over HTTPS; otherwise whatever factory the
        // process bootstrapped (an embedder's).
        let registry = (configuration.metrics ?? configuration.metricsLocal).map { _ in
            PrometheusRegistry(help: NodeStatistics.metricHelp.merging(NodeHealth.metricHelp) { $1 })
        }
        let metricsFactory: any MetricsFactory = registry ?? MetricsSystem.factory
        let statistics = NodeStatistics(nodeID: configuration.id, metricsFactory: metricsFactory)
        let nodeHealth = NodeHealth(
            nodeID: configuration.id, diskReserveBytes: configuration.diskReserveBytes, metricsFactory: metricsFactory)
        let replica = Replica(
            nodeID: configuration.id, store: store,
            maxClockOffset: configuration.maxClockOffset,
            wallMillis: ReplicaService.systemMillis)
        let keyspaces = NodeKeyspaces(root: store, replica: replica)
        let repairMarker = RepairMarker(
            ring: { try? membership.current.ring() }, store: store,
            keyspace: { id in
                guard let served = try? keyspaces.served(id, in: membership.current) else { return nil }
                return (try? served.map.ring(), served.store)
            },
            pool: pool, statistics: statistics, wallMillis: ReplicaService.systemMillis, logger: logger)
        // Anti-entropy's (and the failure detector's) own connections to the peers, apart from hint
        // replay's; both follow the map as it changes.
        // What the node does in the background besides its services (gossip fetches, closing the
        // connections a new map dropped): ended with the node.
        let background = BackgroundWork()
        // The bytes of every RPC connection, dialled or accepted, by peer (quorumkv_peer_*_bytes_total).
        let traffic = PeerTraffic()
        // The versions this node speaks, and those its peers spoke at their last handshake (either
        // direction): both directories and the server record into it.
        let protocols = MemberProtocols(nodeID: configuration.id, versions: configuration.protocolVersions)
        let peerDirectory = PeerDirectory(
            nodeID: configuration.id, tls: peerTLS, map: cluster, background: background, traffic: traffic,
            protocols: protocols)
        let replayDirectory = PeerDirectory(
            nodeID: configuration.id, tls: peerTLS, map: cluster, background: background, traffic: traffic,
            protocols: protocols)
        membership.onChange { map in
            peerDirectory.follow(map)
            replayDirectory.follow(map)
        }
        var peers: [String: any AntiEntropyReplica] = [:]
        for (id, _) in peerDirectory.all() {
            peers[id] = RemoteAntiEntropyReplica(
                nodeID: id, directory: peerDirectory, timeout: Self.antiEntropyCallTimeout)
        }
        var detector = PhiAccrualDetector.Configuration()
        detector.threshold = configuration.phiThreshold
        detector.firstInterval = Self.pingInterval
        // A busy node answers pings late: tolerate a second's pause before phi climbs (Akka's cluster
        // detector allows three), so a loaded peer is not suspected while a hung one still is in ~3 s.
        detector.acceptablePause = .seconds(1)
        detector.minimumDeviation = .milliseconds(200)
        let health = PeerHealth(
            directory: peerDirectory, membership: membership, detector: detector, interval: Self.pingInterval,
            wallMillis: ReplicaService.systemMillis, logger: logger, pool: pool, otherDirectories: [replayDirectory],
            background: background)
        var antiEntropyConfiguration = AntiEntropy.Configuration()
        antiEntropyConfiguration.interval = configuration.antiEntropyInterval
        antiEntropyConfiguration.bytesPerSecond = configuration.antiEntropyRate
        antiEntropyConfiguration.tombstoneGrace = configuration.tombstoneGrace
        let antiEntropy = AntiEntropy(
            nodeID: configuration.id, ring: ring,
            local: LocalAntiEntropyReplica(replica: replica, merkle: store, pool: pool), peers: peers,
            marks: store, configuration: antiEntropyConfiguration, statistics: statistics,
            wallMillis: ReplicaService.systemMillis, logger: logger, checkpoint: store, membership: membership,
            makePeer: { id in
                RemoteAntiEntropyReplica(nodeID: id, directory: peerDirectory, timeout: Self.antiEntropyCallTimeout)
            })
        let antiEntropies = AntiEntropies(
            root: antiEntropy, keyspaces: keyspaces, membership: membership, pool: pool, logger: logger,
            makePeer: { id, keyspace in
                RemoteAntiEntropyReplica(
                    nodeID: id, directory: peerDirectory, timeout: Self.antiEntropyCallTimeout, keyspace: keyspace)
            })
        let board = TransferBoard()
        let service = ReplicaService(
            nodeID: configuration.id, membership: membership, store: store, hints: store, repairMarker: repairMarker,
            hintQueueMax: configuration.hintQueueMax, hintBytesMax: configuration.hintBytesMax, pool: pool,
            statistics: statistics, merkle: store,
            streaming: store, replica: replica, antiEntropy: antiEntropy, health: health, transfers: board,
            certificateNotAfterSeconds: tls.certificateNotAfterSeconds,
            diskReserveBytes: configuration.diskReserveBytes, certificates: certificates,
            storageQueueMax: configuration.storageQueueMax, keyspaces: keyspaces, antiEntropies: antiEntropies)
        var streamConfiguration = RangeStreamer.Configuration()
        streamConfiguration.bytesPerSecond = configuration.streamRate
        streamConfiguration.stallTimeout = configuration.streamStallTimeout
        let selfIdentity = PeerIdentity(name: configuration.id, role: .node)
        let streamer = RangeStreamer(
            nodeID: configuration.id, membership: membership, directory: peerDirectory, replica: replica,
            store: store, pool: pool, antiEntropy: antiEntropy, health: health, statistics: statistics,
            configuration: streamConfiguration, logger: logger, board: board, keyspaces: (keyspaces, antiEntropies),
            local: { _, request in try await service.handle(request, from: selfIdentity) })
        var serverConfiguration = RPCServerConfiguration(
            host: configuration.listenHost,
            port: configuration.listenPort,
            clusterID: configuration.clusterID,
            nodeID: configuration.id
        )
        serverConfiguration.frameBytesMax = Limits.frameBytesMax
        serverConfiguration.connectionsMax = configuration.connectionsMax
        serverConfiguration.connectionsPerIdentityMax = configuration.connectionsPerIdentityMax
        serverConfiguration.idleTimeout = configuration.idleTimeout
        serverConfiguration.inFlightBytesServerMax = configuration.inFlightBytesMax
        serverConfiguration.receivingBytesMax = configuration.receivingBytesMax
        serverConfiguration.protocolVersions = configuration.protocolVersions
        serverConfiguration.peerVersions = protocols.peers
        let server: RPCServer
        do {
            // The server's refusals are the node's too: Admin stats and quorumkv_rpc_refused_total.
            server = try await RPCServer.bind(
                configuration: serverConfiguration, tls: tls,
                service: MeasuredService(
                    service, nodeID: configuration.id, factory: metricsFactory,
                    keyspaceName: { KeyspaceLabel.name(of: $0, in: membership.current) }),
                statistics: RPCServerStatistics(onRefusal: { statistics.recordRefusal($0) }), traffic: traffic,
                logger: logger)
        } catch {
            try? await pool.shutdownGracefully()
            throw NodeError.configuration("cannot listen on \(address): \(error)")
        }
        // The metrics endpoints: HTTPS with mutual TLS, and plain HTTP on loopback (`--metrics-local`).
        var metricsServers: [MetricsServer] = []
        let endpoints = [(configuration.metrics, tls as TLSContext?), (configuration.metricsLocal, nil)]
        for case (let endpoint?, let endpointTLS) in endpoints {
            guard let registry else { break }
            do {
                let metrics = try await MetricsServer.bind(
                    host: endpoint.host, port: endpoint.port, tls: endpointTLS, render: { registry.render() })
                metricsServers.append(metrics)
                logger.info(
                    "metrics served",
                    metadata: [
                        "metrics.address": "\(endpointTLS == nil ? "http" : "https")://\(metrics.localAddress)/metrics"
                    ])
            } catch {
                server.stopAccepting()
                for metrics in metricsServers { await metrics.close() }
                try? await pool.shutdownGracefully()
                throw NodeError.configuration("cannot serve metrics on \(endpoint): \(error)")
            }
        }
        logger.info(
            "node listening",
            metadata: [
                "node.id": "\(configuration.id)",
                "node.address": "\(server.localAddress)",
                "cluster.id": "\(configuration.clusterID)",
                "storage.durability": "\(configuration.durability)",
                "storage.wal_sync": "\(configuration.durability == .sync ? configuration.walSync.rawValue : "-")",
            ])
        // On SIGTERM/SIGINT: stop accepting, drain (refuse new requests on the open connections, wait
        // for those in flight, at most `shutdownDrain`), then close what is left.
        let drain = configuration.shutdownDrain
        do {
            var replay = HintReplayer.Configuration()
            replay.window = configuration.hintWindow
            replay.ratePerSecond = configuration.hintReplayRate
            let replayer = HintReplayer(
                configuration: replay, hints: store, pool: pool, directory: replayDirectory,
                wallMillis: ReplicaService.systemMillis, statistics: statistics,
                repairMarker: repairMarker, health: health, rehoming: (membership, keyspaces), logger: logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await server.run() }
                // Returns only when cancelled, so it never ends the node by itself.
                group.addTask { await replayer.run() }
                // Pings the peers for the failure detector; only cancelled.
                group.addTask { await health.run() }
                // Receives and drops ranges as membership changes ask; only cancelled.
                group.addTask { await streamer.run() }
                // Periodic anti-entropy, when on; also returns only when cancelled.
                if configuration.antiEntropyInterval != nil {
                    group.addTask { await antiEntropies.run() }
                }
                // Keeps the hint-queue and per-keyspace anti-entropy gauges fresh between pings; also
                // only cancelled.
                group.addTask {
                    await statistics.reportQueues(every: Self.gaugeInterval) { service.queues() }
                }
                // Frees the disk space of the keyspaces the map dropped; also only cancelled.
                group.addTask {
                    await self.dropKeyspaces(keyspaces, membership: membership, pool: pool) { dropped in
                        service.storageQueue.forget(keyspaces: dropped)
                    }
                }
                // Checkpoints a killed `kvctl backup` left; also only cancelled.
                group.addTask {
                    await CheckpointSweeper(registry: store.checkpoints, pool: pool, logger: self.logger).run()
                }
                // The process, disk, certificate, replica-lag and cluster-health gauges, likewise: read
                // on the pool (it walks the data folder and reads the hint log).
                group.addTask {
                    let directory = self.configuration.dataDirectory
                    let certificates = self.certificates
                    var failureLogged = false
                    while !Task.isCancelled {
                        let (map, suspected, pings) = (
                            membership.current, health.table.suspected(), health.pingSeconds()
                        )
                        let notAfter = certificates.certificateNotAfterSeconds
                        if let sample = try? await pool.runIfActive({
                            NodeHealth.read(
                                dataDirectory: directory, hintAges: Self.hintAges(store),
                                certificateNotAfterSeconds: notAfter,
                                map: map, suspected: suspected, peerPingSeconds: pings, engine: store.engineFigures(),
                                peerTraffic: traffic.totals(),
                                keys: (self.configuration.id, store.everyKeyspace { $0.approximateKeyCount() }),
                                hintBytes: store.hintBytesHeld(), storageFailure: store.storageFailure)
                        }) {
                            if let failure = sample.storageFailure, !failureLogged {
                                failureLogged = true
                                self.logger.critical("\(failure)")
                            }
                            nodeHealth.record(sample)
                            statistics.lastHealth.withLock { $0 = sample }
                        }
                        try? await Task.sleep(for: Self.gaugeInterval)
                    }
                }
                // The peer health and epoch gauges, likewise.
                group.addTask {
                    await statistics.reportPeers(every: Self.gaugeInterval) {
                        (health.table.phi(), health.table.suspected(), membership.current.epoch)
                    }
                }
                group.addTask {
                    try await gracefulShutdown()
                    server.stopAccepting()
                    let left = await service.drainGate.drain(timeout: drain)
                    if left > 0 {
                        self.logger.warning(
                            "stopping with requests in flight", metadata: ["drain.in_flight_left": "\(left)"])
                    }
                    // The last answers are on their way out: a moment for them before connections close.
                    try await Task.sleep(for: min(drain, Self.answersLinger))
                }
                try await group.next()
                group.cancelAll()
            }
        } catch is CancellationError {
            // Cancelled from outside: a normal stop.
        } catch {
            for metrics in metricsServers { await metrics.close() }
            await peerDirectory.closeAll()
            await background.shutdown()
            try? await pool.shutdownGracefully()
            throw error
        }
        for metrics in metricsServers { await metrics.close() }
        await peerDirectory.closeAll()
        // After the connections closed, so that no gossip fetch waits out its timeout.
        await background.shutdown()
        try? await pool.shutdownGracefully()
        logger.info("node stopped", metadata: ["node.id": "\(configuration.id)"])
    }

    /// Drops from the store, every `gaugeInterval`, the keyspaces the map dropped, until cancelled.
    /// `forget` lets go of what the node kept for the keyspaces dropped (their write groups).
    private func dropKeyspaces(
        _ keyspaces: NodeKeyspaces, membership: Membership, pool: NIOThreadPool,
        forget: @Sendable ([UInt32]) -> Void
    ) async {
        while !Task.isCancelled {
            let map = membership.current
            let stored = Set(keyspaces.root.storedKeyspaces())
            if map.keyspaces.contains(where: { $0.dropped && stored.contains($0.id) }) {
                do {
                    let dropped = try await pool.runIfActive { try keyspaces.dropKeyspacesGone(in: map) }
                    forget(dropped)
                    for id in dropped {
                        logger.notice(
                            "keyspace dropped: its data is deleted",
                            metadata: ["keyspace.id": "\(id)", "cluster.epoch": "\(map.epoch)"])
                    }
                } catch {
                    logger.warning("cannot drop a keyspace", metadata: ["error": "\(error)"])
                }
            }
            try? await Task.sleep(for: Self.pingInterval)
        }
    }

    /// How long a stopping node keeps its connections open after its last request was answered.
    static let answersLinger: Duration = .milliseconds(50)

    /// How often the node pings each peer for its failure detector.
    static let pingInterval: Duration = .seconds(1)

    /// The longest one anti-entropy RPC (a Merkle query, a record's read or write) may take.
    static let antiEntropyCallTimeout: Duration = .seconds(10)

    /// How often the gauges (hints queued per target, ranges due) are set when nothing else reads them.
    static let gaugeInterval: Duration = .seconds(5)

    /// Seconds since the oldest-versioned hint of each target was stored (blocking: reads the log).
    static func hintAges(_ store: RocksDBStore) -> [String: Double] {
        let now = ReplicaService.systemMillis()
        var ages: [String: Double] = [:]
        for target in store.hintQueueSizes().keys {
            guard let oldest = try? store.hints(for: target, limit: 1).first?.hint.storedAtMillis else { continue }
            ages[target] = now > oldest ? Double(now - oldest) / 1000 : 0
        }
        return ages
    }

    /// Records this node's id in a new data folder, and refuses a folder that belongs to another node.
    private func claim(_ store: RocksDBStore) throws {
        let owner = try store.metadata("node.id").map { String(decoding: $0, as: UTF8.self) }
        switch owner {
        case nil:
            try store.setMetadata("node.id", Array(configuration.id.utf8))
        case configuration.id:
            break
        case let other?:
            throw NodeError.identity(
                "data folder \(configuration.dataDirectory) belongs to node '\(other)', not '\(configuration.id)'")
        }
    }
}
