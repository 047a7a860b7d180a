import Foundation
import KVConfig
package import KVCore
package import KVRPC
package import KVTLS
import KVWire
public import Metrics
public import NIOCore
import NIOPosix
import Synchronization

/// What a client needs to reach the cluster: where its nodes are, the client's certificate, and how
/// requests are made (consistency levels, timeouts, read repair, hinted handoff). <doc:GettingStarted>
/// makes one.
public struct KVClientConfiguration: Sendable {
    /// The cluster's map (from `cluster.yaml`). When nil, the client fetches it from `endpoints`.
    package var cluster: ClusterMap?
    /// Seed node addresses, `host:port`, asked for the cluster map when `cluster` is nil.
    public var endpoints: [String]
    /// The cluster the nodes must belong to; a node of another cluster refuses the connection.
    /// Taken from `cluster` when that is set.
    public var clusterID: String = "quorumkv"
    /// The cluster's CA and the client's certificate and key.
    public var tls: KVTLSConfiguration
    /// How long one request may take, all replicas included.
    public var requestTimeout: Duration = .seconds(5)
    /// The backoff of the connection to each node (50 ms doubling to 5 s).
    package var reconnect = ReconnectPolicy()
    /// The wire-protocol versions the client speaks (default: every version of this build). Capping
    /// the highest (`ProtocolRange.capped(at:)`) makes it act as the previous release: `kvctl
    /// --protocol-max`, and tests of rolling upgrades.
    package var protocolVersions: ProtocolRange = WireProtocol.versions
    /// How often a write that a replica finds older than what it holds is re-stamped and retried.
    public var supersededRetriesMax = 8
    /// The consistency of reads that do not name their own (in the `default` keyspace; another
    /// keyspace has its own levels).
    public var readConsistency: KVConsistency = .quorum
    /// The consistency of writes and deletes that do not name their own (in the `default` keyspace).
    public var writeConsistency: KVConsistency = .quorum
    /// The zone (datacenter or rack) this client runs in, as the cluster map names zones: what
    /// `local_quorum` counts in. Empty: none (`local_quorum` is then refused).
    public var zone = ""
    /// Ask all N replicas on every read instead of the first R (more load, fewer slow reads).
    public var readFromAll = false
    /// Ask one more replica when the ones asked are slower than their recent p99.
    public var speculativeReads = true
    /// Ask the replicas that answered clearly faster lately first (KVCore's `ReplicaResponseTimes`, as
    /// Cassandra's dynamic snitch): a read at R then waits for the R fastest replicas. False: the
    /// first R of the key's preference list.
    public var fastestReplicasFirst = true
    /// How often the client pings every node while it has work, for the failure detector (every
    /// answer counts as a heartbeat); nil: no pings, only answers to requests.
    public var healthCheckInterval: Duration? = .seconds(1)
    /// The phi-accrual failure detector per node (`threshold`, 8 by default). Reads ask the replicas
    /// it does not suspect first.
    package var failureDetector = PhiAccrualDetector.Configuration()
    /// What reads do about stale replicas they notice: write the newest version back in the
    /// background (default), before answering (`.blocking`), or not at all (`.none`).
    public var readRepair: KVReadRepair = .background
    /// Leave a hint with a fallback node for every replica that fails a write or stays silent past
    /// half the request timeout; the fallback replays it when the replica answers again.
    public var hintedHandoff = true
    /// Sloppy quorum (Dynamo): a hint stored for a replica counts toward W. Off by default (strict
    /// quorum: W real replicas must apply). On, writes succeed with up to N - 1 replicas down as long
    /// as fallbacks store their hints, but an acknowledged write may sit on fewer than W replicas until
    /// the hints are replayed, so a quorum read can miss it meanwhile, and it is lost if a fallback's
    /// disk is lost first. Needs `hintedHandoff`.
    public var sloppyQuorum = false
    /// The most keys of batch requests (`put(_:)`/`get(_:)` of many keys) the client keeps in flight
    /// to any one node; past it a batch request waits in the client until answers make room. The
    /// default, 2,048, is half the storage jobs a node admits by default (`kvd --storage-queue-max`,
    /// 4,096): set it to at most half that flag where the nodes run with a lower one, or their
    /// storage queue fills and batch keys come back `overloaded`. 1...1,000,000.
    public var batchKeysInFlightPerNode = Limits.batchKeysInFlightPerNodeMax
    /// The wall clock, in milliseconds since the Unix epoch, that versions start from. Replaceable so
    /// that tests (and the simulator) can give a client a clock that runs behind or jumps.
    package var wallClockMillis: @Sendable () -> UInt64 = KVClientConfiguration.systemMillis
    /// How far ahead of `wallClockMillis` a node's clock (in a reply, or a version it holds) may be
    /// for the client to move its own clock up to it; a clock further ahead is ignored, so a faulty or
    /// hostile node cannot exhaust the client's clock (a clock near 2^64) or drag its versions far
    /// into the future. Generous by default (a day), unlike the nodes' 500 ms (`kvd
    /// --max-clock-offset`): a client whose clock runs behind the cluster's must still order its
    /// writes after what it saw, and a write superseded by a version beyond the bound fails with
    /// `conflict` and says so.
    public var maxClockOffset: Duration = .seconds(86_400)
    /// Where the client's metrics go (operations, their latency and outcome, repairs, hints); nil:
    /// the process's bootstrapped swift-metrics backend (`MetricsSystem.factory`).
    public var metricsFactory: (any MetricsFactory)?
    /// The NIO event loops the client's connections and timers run on; nil: NIO's shared group
    /// (`MultiThreadedEventLoopGroup.singleton`). An application that runs its own tasks on a loop
    /// of this group (a task executor preference) saves the thread hand-offs of each request and
    /// answer: kvbench's `--event-loops` does that (docs/sdk.md, "Event loops"). The caller owns the
    /// group and shuts it down after ``KVClient/close()``.
    public var eventLoopGroup: (any EventLoopGroup)?

    /// Milliseconds since the Unix epoch, from the system's real-time clock.
    @Sendable package static func systemMillis() -> UInt64 {
        UInt64(max(0, Date().timeIntervalSince1970 * 1000))
    }

    /// A configuration for the cluster `cluster.yaml` at `clusterFile` describes; the client keeps
    /// its map current by itself after that (the file may be older than the cluster).
    ///
    /// - Throws: ``KVClientError`` (`isInvalidArgument`) when the file cannot be read or is not a
    ///   valid cluster map.
    public init(clusterFile: String, tls: KVTLSConfiguration) throws {
        let file: (map: ClusterMap, seeds: [String])
        do {
            file = try ClusterFile.loadWithSeeds(path: clusterFile)
        } catch {
            throw KVClientError.invalidArgument("cluster file \(clusterFile): \(error)")
        }
        self.init(cluster: file.map, seeds: file.seeds, tls: tls.settings)
    }

    /// A configuration that asks the nodes at `endpoints` (`host:port`) for the cluster's map.
    ///
    /// - Parameters:
    ///   - endpoints: seed nodes, `host:port`; one that answers is enough.
    ///   - clusterID: the cluster's id, as its `cluster.yaml` names it.
    ///   - tls: the cluster's CA and the client's certificate.
    public init(endpoints: [String], clusterID: String = "quorumkv", tls: KVTLSConfiguration) {
        self.init(endpoints: endpoints, tls: tls.settings)
        self.clusterID = clusterID
    }

    /// A configuration from a cluster map already loaded, and its file's `seeds` (more nodes to ask for
    /// the current map when the client starts).
    package init(cluster: ClusterMap, seeds: [String] = [], tls: TLSConfiguration) {
        self.cluster = cluster
        let listed = cluster.nodes.map(\.address)
        self.endpoints = listed + seeds.filter { !listed.contains($0) }
        self.clusterID = cluster.clusterID
        self.tls = KVTLSConfiguration(tls)
    }

    /// A configuration that asks `endpoints` for the map, with the TLS layer's configuration.
    package init(endpoints: [String], tls: TLSConfiguration) {
        self.cluster = nil
        self.endpoints = endpoints
        self.tls = KVTLSConfiguration(tls)
    }
}
