import ArgumentParser
import Foundation
import Glibc
import KVConfig
import KVCore
import KVNode
import KVRPC
import KVWire
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

/// `kvd`: one QuorumKV replica node.
@main
struct KVD: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvd",
        abstract: "Run one QuorumKV replica node.",
        discussion: """
            Settings come from --config (YAML, same names as the flags) and are overridden by flags.
            The node serves mutual-TLS RPC on --listen and stores data in --data.
            SIGTERM or SIGINT shut it down cleanly. SIGHUP reloads --cert, --key, --ca and --crl for new
            connections (established ones go on); a reload that fails keeps the old files' material and
            logs why.
            """
    )

    @Option(help: "A YAML file with the node's settings.")
    var config: String?

    @Option(help: "The node's id; its certificate must be issued to this name.")
    var id: String?

    @Option(help: "Address to listen on, HOST:PORT.")
    var listen: String?

    @Option(help: "The node's data folder.")
    var data: String?

    @Option(help: "The cluster CA certificate (PEM).")
    var ca: String?

    @Option(help: "The node's certificate (PEM).")
    var cert: String?

    @Option(help: "The node's private key (PEM).")
    var key: String?

    @Option(
        help: ArgumentHelp(
            "Certificate revocation lists (PEM, one per CA, e.g. from 'kvctl certs revoke').",
            discussion: "A peer whose certificate is listed is refused in the handshake. Reloaded on SIGHUP."))
    var crl: String?

    @Option(help: "The cluster file (cluster.yaml): members, addresses, tokens, replication factor.")
    var cluster: String?

    @Option(name: .customLong("cluster-id"), help: "The cluster this node belongs to (default: the cluster file's).")
    var clusterID: String?

    @Option(help: "sync (fsync before acknowledging, default), interval:<N>ms, or none.")
    var durability: String?

    @Option(
        name: .customLong("wal-sync"),
        help: ArgumentHelp(
            "With durability sync, who fsyncs the log: thread (default) or event-loop.",
            discussion:
                "event-loop: each event loop fsyncs the writes it made, then answers them, serving nothing meanwhile; for --event-loops 1 (docs/operations.md, \"Event loops\")."
        ))
    var walSync: String?

    @Option(name: .customLong("hint-queue-max"), help: "Hints held per target node before new ones are refused.")
    var hintQueueMax: Int?

    @Option(
        name: .customLong("hint-bytes-max"),
        help: "Bytes all held hints may take before new ones are refused (default 1073741824).")
    var hintBytesMax: Int?

    @Option(name: .customLong("hint-window"), help: "Seconds a hint is kept before it is dropped (default 10800).")
    var hintWindowSeconds: Int?

    @Option(
        name: .customLong("max-clock-offset"),
        help:
            "Milliseconds a peer's clock or a write's version may be ahead of this node's clock; further ahead is refused (default 500)."
    )
    var maxClockOffsetMillis: Int?

    @Option(
        name: .customLong("hint-replay-rate"),
        help: "Hints this node replays per second, over all targets (default 250).")
    var hintReplayRate: Int?

    @Option(
        name: .customLong("anti-entropy-interval"),
        help: "Seconds between anti-entropy passes, jittered ±20 % (default 600; 0 = off).")
    var antiEntropyIntervalSeconds: Int?

    @Option(
        name: .customLong("anti-entropy-rate"),
        help: "Bytes per second anti-entropy may move, over all its sessions (default 4194304).")
    var antiEntropyRate: Int?

    @Option(
        name: .customLong("stream-rate"),
        help: "Bytes per second this node pulls when it takes ranges over (default 33554432).")
    var streamRate: Int?

    @Option(
        name: .customLong("stream-stall-timeout"),
        help: "Seconds a range transfer waits for a page before it tries another source (default 30).")
    var streamStallTimeoutSeconds: Int?

    @Option(
        name: .customLong("tombstone-grace"),
        help:
            "Seconds before a tombstone every replica holds may be purged; longer than --hint-window (default 864000; 0 = never)."
    )
    var tombstoneGraceSeconds: Int?

    @Option(
        name: .customLong("phi-threshold"),
        help: "Phi above which this node suspects a peer and holds its hints back (default 8).")
    var phiThreshold: Double?

    @Option(
        name: .customLong("connections-max"),
        help: "Connections held at once, over all peers; past it new ones are closed at once (default 4096).")
    var connectionsMax: Int?

    @Option(
        name: .customLong("connections-per-identity-max"),
        help:
            "Connections held at once with one certificate; past it the Hello is answered 'overloaded' (default 512)."
    )
    var connectionsPerIdentityMax: Int?

    @Option(
        name: .customLong("idle-timeout"),
        help: "Seconds a connection with no request in flight and no frame received stays open (default 300).")
    var idleTimeoutSeconds: Int?

    @Option(
        name: .customLong("storage-queue-max"),
        help:
            "Requests' store calls queued or running at once; past it a request is answered 'overloaded' (default 4096)."
    )
    var storageQueueMax: Int?

    @Option(
        name: .customLong("in-flight-bytes-max"),
        help: ArgumentHelp(
            "Bytes of requests and large answers in flight, over all connections (default 1073741824: 1 GiB).",
            discussion: """
                Requests read and not answered, and answers over 64 KiB not yet taken by the network. Past it a \
                request or answer is answered 'overloaded'; one alone always passes. 1 MiB...1 TiB.
                """))
    var inFlightBytesMax: Int?

    @Option(
        name: .customLong("receiving-bytes-max"),
        help: ArgumentHelp(
            "Bytes of frames over 64 KiB still arriving, over all connections (default 268435456: 256 MiB).",
            discussion: """
                A frame past it waits, its connection reading nothing more, until earlier frames end; its \
                30-s deadline starts once it has room. A frame alone always has room. 1 MiB...1 TiB.
                """))
    var receivingBytesMax: Int?

    @Option(
        name: .customLong("block-cache-bytes"),
        help: ArgumentHelp(
            "Bytes of table blocks kept in memory, over every column family (default 268435456: 256 MiB).",
            discussion: "Reads the memtables and this cache serve need no disk read; 1 MiB...1 TiB."))
    var blockCacheBytes: Int?

    @Option(
        name: .customLong("disk-reserve-bytes"),
        help: ArgumentHelp(
            "Bytes kept free on the data folder's file system (default 536870912: 512 MiB).",
            discussion: """
                Below it, writes of records and hints are refused with diskFull (reads go on) until there is \
                room again, so that RocksDB never runs out itself; 0 turns it off; at most 1 TiB.
                """))
    var diskReserveBytes: Int?

    @Option(
        name: .customLong("event-loops"),
        help: ArgumentHelp(
            "Event loops (threads) serving connections and requests (default: the CPUs this process may use).",
            discussion:
                "1...256. Fewer than the CPUs leaves them to a load generator or other nodes on the same host (docs/operations.md, \"Event loops\")."
        ))
    var eventLoops: Int?

    @Option(
        help: ArgumentHelp(
            "Serve GET /metrics (Prometheus text) on HOST:PORT, over HTTPS with mutual TLS.",
            discussion: "The scraper shows a certificate issued by the cluster CA, of any role."))
    var metrics: String?

    @Option(
        name: .customLong("metrics-local"),
        help: ArgumentHelp(
            "Also serve GET /metrics over plain HTTP on HOST:PORT, a loopback address only.",
            discussion: "For a Prometheus on the same host; any other address is refused at start."))
    var metricsLocal: String?

    @Option(
        help: ArgumentHelp(
            "The zone (datacenter or rack) this node runs in.",
            discussion: "Checked against the cluster map's zone for this node at start: a mismatch is refused."))
    var zone: String?

    @Option(
        name: .customLong("protocol-max"),
        help: ArgumentHelp(
            "The highest wire-protocol version to speak (default: this build's highest).",
            discussion:
                "A release of version N speaks N and N-1; '--protocol-max N-1' makes it act as the previous release (proto-spec/FRAMES.md, docs/operations.md)."
        ))
    var protocolMax: Int?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        _ = try protocolVersions()
    }

    /// The versions `--protocol-max` leaves: this build's, capped; anything outside them is refused.
    func protocolVersions() throws -> ProtocolRange {
        guard let protocolMax else { return WireProtocol.versions }
        guard let capped = WireProtocol.versions(highestMax: protocolMax) else {
            let versions = WireProtocol.versions
            throw ValidationError(
                "--protocol-max must be one of \(versions.lowest)...\(versions.highest) (this build speaks protocol versions \(versions)), not \(protocolMax)"
            )
        }
        return capped
    }

    func run() async throws {
        let file = try config.map { path in try NodeFile.load(path: path) } ?? NodeFile()
        if let eventLoops = eventLoops ?? file.eventLoops {
            guard (1...256).contains(eventLoops) else { throw ValidationError("--event-loops must be 1...256") }
            // Before anything uses NIO's shared group: the node's server, peer links and metrics
            // endpoint all run on it.
            NIOSingletons.groupLoopCountSuggestion = eventLoops
        }
        func required(_ flag: String?, _ setting: String?, _ name: String) throws -> String {
            guard let value = flag ?? setting else {
                throw ValidationError("missing --\(name) (or '\(name):' in the config file)")
            }
            return value
        }
        let id = try required(id, file.id, "id")
        let address = try parseAddress(try required(listen, file.listen, "listen"))
        var configuration = NodeConfiguration(
            id: id,
            listenHost: address.host,
            listenPort: address.port,
            dataDirectory: try required(data, file.data, "data"),
            caFile: try required(ca, file.ca, "ca"),
            certificateFile: try required(cert, file.cert, "cert"),
            keyFile: try required(key, file.key, "key")
        )
        configuration.crlFile = crl ?? file.crl
        if let path = cluster ?? file.cluster {
            let map = try ClusterFile.load(path: path)
            configuration.cluster = map
            configuration.clusterID = clusterID ?? file.clusterID ?? map.clusterID
        } else {
            configuration.clusterID = clusterID ?? file.clusterID ?? NodeConfiguration.defaultClusterID
        }
        if let hintQueueMax = hintQueueMax ?? file.hintQueueMax {
            guard hintQueueMax >= 0 else { throw ValidationError("--hint-queue-max must not be negative") }
            configuration.hintQueueMax = hintQueueMax
        }
        if let millis = maxClockOffsetMillis ?? file.maxClockOffset {
            guard (1...86_400_000).contains(millis) else {
                throw ValidationError("--max-clock-offset must be 1...86400000 milliseconds")
            }
            configuration.maxClockOffset = .milliseconds(millis)
        }
        if let hintBytesMax = hintBytesMax ?? file.hintBytesMax {
            guard hintBytesMax >= 0 else { throw ValidationError("--hint-bytes-max must not be negative") }
            configuration.hintBytesMax = hintBytesMax
        }
        if let hintWindowSeconds = hintWindowSeconds ?? file.hintWindow {
            guard hintWindowSeconds > 0 else { throw ValidationError("--hint-window must be positive") }
            configuration.hintWindow = .seconds(hintWindowSeconds)
        }
        if let hintReplayRate = hintReplayRate ?? file.hintReplayRate {
            guard (1...1_000_000).contains(hintReplayRate) else {
                throw ValidationError("--hint-replay-rate must be 1...1000000 hints per second")
            }
            configuration.hintReplayRate = hintReplayRate
        }
        if let seconds = antiEntropyIntervalSeconds ?? file.antiEntropyInterval {
            guard (0...7 * 86_400).contains(seconds) else {
                throw ValidationError("--anti-entropy-interval must be 0...604800 seconds (0 = off)")
            }
            configuration.antiEntropyInterval = seconds == 0 ? nil : .seconds(seconds)
        }
        if let rate = antiEntropyRate ?? file.antiEntropyRate {
            guard (1024...(1 << 34)).contains(rate) else {
                throw ValidationError("--anti-entropy-rate must be 1024...17179869184 bytes per second")
            }
            configuration.antiEntropyRate = rate
        }
        if let rate = streamRate ?? file.streamRate {
            guard (1024...(1 << 34)).contains(rate) else {
                throw ValidationError("--stream-rate must be 1024...17179869184 bytes per second")
            }
            configuration.streamRate = rate
        }
        if let seconds = streamStallTimeoutSeconds ?? file.streamStallTimeout {
            guard (1...3600).contains(seconds) else {
                throw ValidationError("--stream-stall-timeout must be 1...3600 seconds")
            }
            configuration.streamStallTimeout = .seconds(seconds)
        }
        if let seconds = tombstoneGraceSeconds ?? file.tombstoneGrace {
            guard seconds >= 0 else {
                throw ValidationError("--tombstone-grace must not be negative (0 = never purge)")
            }
            configuration.tombstoneGrace = seconds == 0 ? nil : .seconds(seconds)
        }
        if let phi = phiThreshold ?? file.phiThreshold {
            guard phi > 0, phi <= 100 else { throw ValidationError("--phi-threshold must be in (0, 100]") }
            configuration.phiThreshold = phi
        }
        if let connectionsMax = connectionsMax ?? file.connectionsMax {
            guard (1...1_000_000).contains(connectionsMax) else {
                throw ValidationError("--connections-max must be 1...1000000")
            }
            configuration.connectionsMax = connectionsMax
        }
        if let perIdentityMax = connectionsPerIdentityMax ?? file.connectionsPerIdentityMax {
            guard (1...1_000_000).contains(perIdentityMax) else {
                throw ValidationError("--connections-per-identity-max must be 1...1000000")
            }
            configuration.connectionsPerIdentityMax = perIdentityMax
        }
        if let seconds = idleTimeoutSeconds ?? file.idleTimeout {
            guard (1...86_400).contains(seconds) else {
                throw ValidationError("--idle-timeout must be 1...86400 seconds")
            }
            configuration.idleTimeout = .seconds(seconds)
        }
        if let storageQueueMax = storageQueueMax ?? file.storageQueueMax {
            guard (1...1_000_000).contains(storageQueueMax) else {
                throw ValidationError("--storage-queue-max must be 1...1000000")
            }
            configuration.storageQueueMax = storageQueueMax
        }
        if let bytes = inFlightBytesMax ?? file.inFlightBytesMax {
            guard ((1 << 20)...(1 << 40)).contains(bytes) else {
                throw ValidationError("--in-flight-bytes-max must be 1048576...1099511627776 (1 MiB...1 TiB)")
            }
            configuration.inFlightBytesMax = bytes
        }
        if let bytes = receivingBytesMax ?? file.receivingBytesMax {
            guard ((1 << 20)...(1 << 40)).contains(bytes) else {
                throw ValidationError("--receiving-bytes-max must be 1048576...1099511627776 (1 MiB...1 TiB)")
            }
            configuration.receivingBytesMax = bytes
        }
        if let blockCacheBytes = blockCacheBytes ?? file.blockCacheBytes {
            guard ((1 << 20)...(1 << 40)).contains(blockCacheBytes) else {
                throw ValidationError("--block-cache-bytes must be 1048576...1099511627776 (1 MiB...1 TiB)")
            }
            configuration.blockCacheBytes = UInt64(blockCacheBytes)
        }
        if let diskReserveBytes = diskReserveBytes ?? file.diskReserveBytes {
            guard (0...(1 << 40)).contains(diskReserveBytes) else {
                throw ValidationError("--disk-reserve-bytes must be 0...1099511627776 (0: off; at most 1 TiB)")
            }
            configuration.diskReserveBytes = UInt64(diskReserveBytes)
        }
        if let metrics = metrics ?? file.metrics {
            let address = try parseAddress(metrics, defaultPort: NodeConfiguration.metricsPortDefault)
            configuration.metrics = HostPort(host: address.host, port: address.port)
        }
        if let local = metricsLocal ?? file.metricsLocal {
            let address = try parseAddress(local, defaultPort: NodeConfiguration.metricsPortDefault)
            configuration.metricsLocal = HostPort(host: address.host, port: address.port)
        }
        if let durability = durability ?? file.durability {
            configuration.durability = try parseDurability(durability)
        }
        if let walSync = walSync ?? file.walSync {
            configuration.walSync = try parseWALSync(walSync)
        }
        configuration.protocolVersions = try protocolVersions()
        if let zone = zone ?? file.zone {
            guard zone.utf8.count <= Limits.nameBytesMax else {
                throw ValidationError("--zone must be at most \(Limits.nameBytesMax) bytes")
            }
            configuration.zone = zone
        }

        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "kvd")
        logger[metadataKey: "node.id"] = "\(id)"

        // Trap SIGHUP before anything listens: its default action would end the process.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        // Test-only: delay and loss on this node's links (scripts/netns-cluster.sh delay), armed before
        // the first connection.
        let linkFaults = getenv(LinkFaultsFromFile.environmentName).map {
            LinkFaultsFromFile(path: String(cString: $0), logger: logger)
        }
        try linkFaults?.start()
        let node = try NodeService(configuration: configuration, logger: logger)
        var services: [any Service] = [node, CertificateReloadOnHangup(node: node, hangups: hangups)]
        if let linkFaults {
            services.append(linkFaults)
        }
        if let value = getenv(ExitWithParent.environmentName).map({ String(cString: $0) }) {
            guard let parent = pid_t(value), parent > 1 else {
                throw ValidationError("\(ExitWithParent.environmentName) must be a process id, not '\(value)'")
            }
            services.append(ExitWithParent(parent: parent, logger: logger))
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            ))
        do {
            try await group.run()
        } catch let error as NodeError {
            throw error
        } catch {
            throw NodeError.configuration("\(error)")
        }
    }
}

/// Reloads the node's certificate, key, CA file and CRL file on every SIGHUP, until the node shuts
/// down. The node logs each outcome (`certificates reloaded`, or `certificate reload refused` with the
/// reason; the certificates in use then stay).
struct CertificateReloadOnHangup: Service {
    let node: NodeService
    /// Trapped before the node starts, so an early SIGHUP does not end the process.
    let hangups: UnixSignalsSequence

    func run() async {
        for await _ in hangups.cancelOnGracefulShutdown() {
            _ = await node.reloadCertificates(trigger: "SIGHUP")
        }
    }
}

/// With `QUORUMKV_LINK_FAULTS=FILE` in its environment (tests only), `kvd` arms `LinkFaults.process`
/// and applies the rules of FILE (``LinkFaults/parse(_:)``) to its links, reading the file again
/// whenever it changes; a missing file means no rules, a malformed one is logged and the rules in use
/// stay.
struct LinkFaultsFromFile: Service {
    static let environmentName = "QUORUMKV_LINK_FAULTS"

    let path: String
    let logger: Logger

    /// Arms the faults and applies the file as it is now.
    func start() throws {
        LinkFaults.process.arm()
        _ = apply()
    }

    func run() async throws {
        var applied = contents()
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .milliseconds(100))
            let current = contents()
            if current != applied {
                applied = apply()
            }
        }
    }

    private func contents() -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    /// Applies the file's rules; returns the text applied (the text read, also when it was refused,
    /// so that it is not logged again until it changes).
    private func apply() -> String {
        let text = contents()
        do {
            let rules = try LinkFaults.parse(text)
            LinkFaults.process.set(rules)
            let described = rules.sorted { $0.key < $1.key }.map {
                "\($0.key) \($0.value.delay.wholeMillisecondsClamped) ms \($0.value.lossPercent)%"
            }
            logger.notice("link faults applied", metadata: ["faults": "\(described)"])
        } catch {
            logger.warning("link faults refused; the rules in use stay", metadata: ["error": "\(error)"])
        }
        return text
    }
}

/// With `QUORUMKV_EXIT_WITH_PARENT=PID` in its environment, `kvd` shuts down (as on SIGTERM) once
/// its parent is no longer process PID: the test harness sets it to its own id, so that a test process
/// that crashes leaves no node running behind it. The id is given rather than read at start, because
/// a parent that died before `kvd` looked would go unnoticed. Operators' nodes never see it.
struct ExitWithParent: Service {
    static let environmentName = "QUORUMKV_EXIT_WITH_PARENT"

    let parent: pid_t
    let logger: Logger

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            if getppid() != parent {
                logger.notice("the process that started this node is gone; shutting down")
                kill(getpid(), SIGTERM)
                try? await gracefulShutdown()
                return
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }
}
