import Foundation
import KVConfig
public import KVCore
public import KVStorage
import KVWire
import Yams

/// Everything a node needs to start: identity, address, data folder, certificates.
///
/// Read from a YAML file (`kvd --config node.yaml`), then overridden by command-line flags. The
/// file uses the flags' names:
///
/// ```yaml
/// id: n1
/// listen: 127.0.0.11:7411
/// data: /var/lib/quorumkv/n1
/// ca: certs/out/ca.pem
/// cert: certs/out/n1.pem
/// key: certs/out/n1-key.pem
/// crl: certs/out/crl.pem     # optional: certificates it revokes are refused (reloaded on SIGHUP)
/// cluster-id: quorumkv
/// durability: sync          # sync | none | interval:50ms
/// wal-sync: thread           # with sync, who fsyncs: thread | event-loop (for one event loop)
/// cluster: cluster.yaml      # the cluster file (see KVConfig.ClusterFile)
/// anti-entropy-interval: 600 # seconds between anti-entropy passes, 0 = off
/// anti-entropy-rate: 4194304 # bytes per second
/// tombstone-grace: 864000    # seconds before a confirmed tombstone may be purged, 0 = never
/// stream-rate: 33554432      # bytes per second a node pulls when it takes ranges over
/// stream-stall-timeout: 30   # seconds without a page before a range transfer tries another source
/// connections-max: 4096      # connections held at once; past it new ones are closed at once
/// connections-per-identity-max: 512 # connections held at once with one certificate
/// idle-timeout: 300          # seconds a connection with nothing in flight stays open
/// storage-queue-max: 4096    # requests' store calls queued or running; past it `overloaded`
/// in-flight-bytes-max: 1073741824 # bytes of requests and large answers in flight, over all connections
/// receiving-bytes-max: 268435456 # bytes of large frames still arriving, over all connections
/// block-cache-bytes: 268435456 # table blocks kept in memory, over every column family
/// disk-reserve-bytes: 536870912 # kept free on the data's file system; below it writes are refused
/// event-loops: 2             # threads serving connections (default: one a CPU)
/// ```
public struct NodeConfiguration: Sendable, Hashable {
    public var id: String
    public var listenHost: String
    public var listenPort: Int
    public var dataDirectory: String
    public var caFile: String
    public var certificateFile: String
    public var keyFile: String
    /// Certificate revocation lists (PEM, one per CA) whose certificates are refused in the handshake;
    /// nil: none. Read again with the certificates on reload (SIGHUP, `kvctl certs reload`).
    public var crlFile: String?
    public var clusterID: String = NodeConfiguration.defaultClusterID
    public var durability: Durability = .sync
    /// With `sync`, where the log is fsynced for the writes the event loops make: a thread of the
    /// store's, or each loop itself (`WALSyncMode`; docs/operations.md, "Event loops").
    public var walSync: WALSyncMode = .thread
    /// The cluster this node belongs to (from `--cluster cluster.yaml`); nil for a node on its own.
    public var cluster: ClusterMap?
    /// Hints held for one target before new ones are refused.
    public var hintQueueMax = NodeConfiguration.hintQueueMaxDefault
    public static let hintQueueMaxDefault = 100_000
    /// The bytes all held hints may take together, whatever their targets: a target that never comes
    /// back must not fill the disk. Past it, hints are refused (counted, their ranges marked for
    /// anti-entropy), as with a full queue.
    public var hintBytesMax = NodeConfiguration.hintBytesMaxDefault
    public static let hintBytesMaxDefault = 1 << 30
    /// Hints older than this are dropped instead of replayed (their replica then needs anti-entropy).
    public var hintWindow: Duration = .seconds(3 * 3600)
    /// Hints this node replays per second, over all targets: the throttle that keeps a returning
    /// node's catch-up from crowding out live traffic.
    public var hintReplayRate = NodeConfiguration.hintReplayRateDefault
    public static let hintReplayRateDefault = 250
    /// How often the node compares every range it replicates with its co-replicas (anti-entropy),
    /// jittered by ±20 %; nil turns periodic anti-entropy off (`kvctl repair` still works).
    public var antiEntropyInterval: Duration? = .seconds(NodeConfiguration.antiEntropyIntervalSecondsDefault)
    public static let antiEntropyIntervalSecondsDefault = 600
    /// Bytes per second anti-entropy may move (Merkle queries and repaired records, both directions),
    /// over all its sessions: the throttle that keeps a repair from crowding out live traffic.
    public var antiEntropyRate = NodeConfiguration.antiEntropyRateDefault
    public static let antiEntropyRateDefault = 4 << 20
    /// How old a tombstone must be before anti-entropy may purge it, once it has confirmed that every
    /// replica of its range holds it; nil: tombstones are kept for ever. Must be longer than the hint
    /// window (by more than the longest client request timeout and the clocks' skew): a hint or a slow
    /// write older than a purged tombstone would bring the deleted value back.
    public var tombstoneGrace: Duration? = .seconds(NodeConfiguration.tombstoneGraceSecondsDefault)
    /// Ten days, Cassandra's `gc_grace_seconds` default.
    public static let tombstoneGraceSecondsDefault = 864_000
    /// How far ahead of this node's clock a peer's clock or a write's version may be: further ahead is
    /// refused (`invalidRequest`, counted), so that no request can drag the node's clock (and every
    /// version it stamps after) into the future. CockroachDB's `--max-offset` (default 500 ms).
    public var maxClockOffset: Duration = NodeConfiguration.maxClockOffsetDefault
    public static let maxClockOffsetDefault: Duration = .milliseconds(500)
    /// The phi above which the node's failure detector suspects a peer (hint replay then waits).
    public var phiThreshold = NodeConfiguration.phiThresholdDefault
    public static let phiThresholdDefault = 8.0
    /// Bytes per second this node pulls when it receives ranges (join, replace, raised N, another
    /// node's decommission): the throttle that keeps a move from crowding out live traffic.
    public var streamRate = NodeConfiguration.streamRateDefault
    public static let streamRateDefault = 32 << 20
    /// A range transfer whose page does not come within this long is retried from another source,
    /// and the reason reported.
    public var streamStallTimeout: Duration = .seconds(NodeConfiguration.streamStallTimeoutSecondsDefault)
    public static let streamStallTimeoutSecondsDefault = 30
    /// Connections the node holds at once, over all peers; a new one past it is closed at once.
    public var connectionsMax = Limits.connectionsMax
    /// Connections the node holds at once with one certificate (name and role); past it the `Hello`
    /// is answered `overloaded`. The SDK opens one connection per node per client.
    public var connectionsPerIdentityMax = Limits.connectionsPerIdentityMax
    /// A connection with no request in flight and no frame for this long is closed (clients re-dial).
    public var idleTimeout: Duration = .seconds(NodeConfiguration.idleTimeoutSecondsDefault)
    public static let idleTimeoutSecondsDefault = 300
    /// Store calls of requests queued for or running on the storage thread pool; past it a request is
    /// answered `overloaded` at once.
    public var storageQueueMax = NodeConfiguration.storageQueueMaxDefault
    public static let storageQueueMaxDefault = Limits.storageQueueMax
    /// Bytes of requests read and not answered yet and of large answers not yet sent, over all
    /// connections; past it a request or answer is answered `overloaded`
    /// (`RPCServerConfiguration.inFlightBytesServerMax`).
    public var inFlightBytesMax = Limits.inFlightBytesPerServerMax
    /// Bytes of frames over 64 KiB still arriving, over all connections; past it a frame's connection
    /// waits for room (`RPCServerConfiguration.receivingBytesMax`).
    public var receivingBytesMax = Limits.receivingBytesPerServerMax
    /// The bytes of table blocks the store keeps in memory (RocksDB's block cache, shared by every
    /// column family): reads it serves cost no disk read and no hop to the storage threads.
    public var blockCacheBytes = RocksDBStore.blockCacheBytesDefault
    /// The bytes kept free on the data folder's file system: records and hints are refused with
    /// `diskFull` below it, before RocksDB runs out of room (`DiskRoom`); 0: never refused.
    public var diskReserveBytes = DiskRoom.reserveBytesDefault
    /// On shutdown, how long the node waits for the requests in flight once it closed its listener and
    /// refuses new requests (`shuttingDown`).
    public var shutdownDrain: Duration = .seconds(1)
    /// Where `GET /metrics` (Prometheus text over mutual TLS) is served; nil: nowhere, and the
    /// metrics go to the process's swift-metrics backend (none in `kvd`).
    public var metrics: HostPort?
    /// Where `GET /metrics` is also served over plain HTTP, a loopback address only (for a Prometheus
    /// on the same host); nil: nowhere.
    public var metricsLocal: HostPort?
    /// The metrics port when `--metrics` names a host alone.
    public static let metricsPortDefault = 9411
    /// The zone (datacenter or rack) the operator says this node runs in (`kvd --zone`): checked
    /// against the cluster map's at start, so a node started in the wrong place refuses to serve
    /// rather than break the placement. Nil: whatever the map says.
    public var zone: String?
    /// The protocol versions the node speaks (`kvd --protocol-max` lowers the highest, to act as the
    /// previous release during a rolling upgrade): announced to peers, accepted from clients.
    public var protocolVersions: ProtocolRange = WireProtocol.versions

    /// The cluster id used when none is configured, by nodes and clients alike.
    public static let defaultClusterID = "quorumkv"
    /// The port used when an address names none.
    public static let defaultPort = HostPort.defaultPort

    public init(
        id: String,
        listenHost: String,
        listenPort: Int,
        dataDirectory: String,
        caFile: String,
        certificateFile: String,
        keyFile: String
    ) {
        self.id = id
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.dataDirectory = dataDirectory
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }
}

extension NodeConfiguration {
    /// Checks `zone` against the zone `map` gives this node (nothing to check when the node is not a
    /// member yet, or no zone was configured).
    public func checkZone(in map: ClusterMap) throws(NodeError) {
        guard let zone, let member = map.node(id), member.zone != zone else { return }
        throw NodeError.configuration(
            "the cluster map puts \(id) in zone '\(member.zone)' but it was started with zone '\(zone)': start it "
                + "with the map's zone, or replace the node by one in the right zone (kvctl replace … ; the new "
                + "node takes the old one's zone) ")
    }

    /// Checks the settings against each other, once flags and file are merged.
    public func validate() throws(NodeError) {
        if let tombstoneGrace, tombstoneGrace <= hintWindow {
            throw NodeError.configuration(
                "tombstone-grace (\(tombstoneGrace.components.seconds) s) must be longer than hint-window "
                    + "(\(hintWindow.components.seconds) s): a hint older than a purged tombstone would bring "
                    + "the deleted value back")
        }
    }
}

/// The optional settings of a node file, as written; flags fill or override them.
public struct NodeFile: Sendable, Hashable, Decodable {
    public var id: String?
    public var listen: String?
    public var data: String?
    public var ca: String?
    public var cert: String?
    public var key: String?
    public var crl: String?
    public var clusterID: String?
    public var durability: String?
    /// `thread` or `event-loop`.
    public var walSync: String?
    public var cluster: String?
    public var hintQueueMax: Int?
    /// Bytes.
    public var hintBytesMax: Int?
    /// Seconds.
    public var hintWindow: Int?
    /// Hints per second.
    public var hintReplayRate: Int?
    /// Seconds; 0 turns periodic anti-entropy off.
    public var antiEntropyInterval: Int?
    /// Bytes per second.
    public var antiEntropyRate: Int?
    /// Seconds; 0: tombstones are never purged.
    public var tombstoneGrace: Int?
    public var phiThreshold: Double?
    /// Bytes per second.
    public var streamRate: Int?
    /// Seconds.
    public var streamStallTimeout: Int?
    /// HOST:PORT for `GET /metrics`.
    public var metrics: String?
    /// Loopback HOST:PORT for `GET /metrics` over plain HTTP.
    public var metricsLocal: String?
    /// Milliseconds.
    public var maxClockOffset: Int?
    public var connectionsMax: Int?
    public var connectionsPerIdentityMax: Int?
    /// Seconds.
    public var idleTimeout: Int?
    public var storageQueueMax: Int?
    /// Bytes.
    public var inFlightBytesMax: Int?
    /// Bytes.
    public var receivingBytesMax: Int?
    /// Bytes.
    public var blockCacheBytes: Int?
    /// Bytes.
    public var diskReserveBytes: Int?
    /// Threads of the node's event-loop group.
    public var eventLoops: Int?
    public var zone: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case id, listen, data, ca, cert, key, crl, durability, cluster, metrics, zone
        case clusterID = "cluster-id"
        case metricsLocal = "metrics-local"
        case hintQueueMax = "hint-queue-max"
        case hintBytesMax = "hint-bytes-max"
        case hintWindow = "hint-window"
        case hintReplayRate = "hint-replay-rate"
        case antiEntropyInterval = "anti-entropy-interval"
        case antiEntropyRate = "anti-entropy-rate"
        case tombstoneGrace = "tombstone-grace"
        case phiThreshold = "phi-threshold"
        case streamRate = "stream-rate"
        case streamStallTimeout = "stream-stall-timeout"
        case maxClockOffset = "max-clock-offset"
        case connectionsMax = "connections-max"
        case connectionsPerIdentityMax = "connections-per-identity-max"
        case idleTimeout = "idle-timeout"
        case storageQueueMax = "storage-queue-max"
        case inFlightBytesMax = "in-flight-bytes-max"
        case receivingBytesMax = "receiving-bytes-max"
        case blockCacheBytes = "block-cache-bytes"
        case diskReserveBytes = "disk-reserve-bytes"
        case eventLoops = "event-loops"
        case walSync = "wal-sync"
    }

    public init() {}

    /// Reads a node file; unknown keys are an error so that a typo does not pass silently.
    public static func load(path: String) throws(NodeError) -> NodeFile {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw NodeError.configuration("cannot read \(path): \(error.localizedDescription)")
        }
        do {
            if let dictionary = try Yams.load(yaml: text) as? [String: Any] {
                let known = Set(CodingKeys.allCases.map(\.rawValue))
                if let unknown = dictionary.keys.sorted().first(where: { !known.contains($0) }) {
                    throw NodeError.configuration("\(path): unknown setting '\(unknown)'")
                }
            }
            return try YAMLDecoder().decode(NodeFile.self, from: text)
        } catch let error as NodeError {
            throw error
        } catch {
            throw NodeError.configuration("\(path): \(YAMLErrors.describe(error))")
        }
    }
}

/// Parses `host:port` (or `[v6]:port`); a missing port takes `defaultPort`.
public func parseAddress(_ text: String, defaultPort: Int = NodeConfiguration.defaultPort) throws(NodeError) -> (
    host: String, port: Int
) {
    guard let address = HostPort(parsing: text, defaultPort: defaultPort) else {
        throw NodeError.configuration("address '\(text)' is not HOST:PORT with a port in 0...65535")
    }
    return (address.host, address.port)
}

/// Parses `sync`, `none` or `interval:<N>ms`.
public func parseDurability(_ text: String) throws(NodeError) -> Durability {
    switch text {
    case "sync": return .sync
    case "none": return .none
    default:
        if text.hasPrefix("interval:") {
            var value = text.dropFirst("interval:".count)
            if value.hasSuffix("ms") { value = value.dropLast(2) }
            if let millis = Int(value), millis > 0 {
                return .interval(.milliseconds(millis))
            }
        }
        throw NodeError.configuration("durability '\(text)' is not one of sync, none, interval:<N>ms")
    }
}

/// Parses `thread` or `event-loop`.
public func parseWALSync(_ text: String) throws(NodeError) -> WALSyncMode {
    guard let mode = WALSyncMode(rawValue: text) else {
        throw NodeError.configuration(
            "wal-sync '\(text)' is not one of \(WALSyncMode.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return mode
}
