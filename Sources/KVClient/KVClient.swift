import Foundation
public import KVCore
public import KVRPC
public import KVTLS
import KVWire
public import Metrics
import NIOCore
import NIOPosix
import Synchronization

/// What a client needs to reach the cluster.
public struct KVClientConfiguration: Sendable {
    /// The cluster's map (from `cluster.yaml`). When nil, the client fetches it from `endpoints`.
    public var cluster: ClusterMap?
    /// Seed node addresses, `host:port`, asked for the cluster map when `cluster` is nil.
    public var endpoints: [String]
    /// The cluster the nodes must belong to; a node of another cluster refuses the connection.
    /// Taken from `cluster` when that is set.
    public var clusterID: String = "quorumkv"
    public var tls: TLSConfiguration
    /// How long one request may take, all replicas included.
    public var requestTimeout: Duration = .seconds(5)
    public var reconnect = ReconnectPolicy()
    /// How often a write that a replica finds older than what it holds is re-stamped and retried.
    public var supersededRetriesMax = 8
    /// Consistency of reads and writes that do not name their own.
    public var readConsistency: ConsistencyLevel = .quorum
    public var writeConsistency: ConsistencyLevel = .quorum
    /// Ask all N replicas on every read instead of the first R (more load, fewer slow reads).
    public var readFromAll = false
    /// Ask one more replica when the ones asked are slower than their recent p99.
    public var speculativeReads = true
    /// How often the client pings every node while it has work, for the failure detector (every
    /// answer counts as a heartbeat); nil: no pings, only answers to requests.
    public var healthCheckInterval: Duration? = .seconds(1)
    /// The phi-accrual failure detector per node (`threshold`, 8 by default). Reads ask the replicas
    /// it does not suspect first.
    public var failureDetector = PhiAccrualDetector.Configuration()
    /// What reads do about stale replicas they notice: write the newest version back in the
    /// background (default), before answering (`.blocking`), or not at all (`.none`).
    public var readRepair: ReadOperation.Repair = .background
    /// Leave a hint with a fallback node for every replica that fails a write or stays silent past
    /// half the request timeout; the fallback replays it when the replica answers again.
    public var hintedHandoff = true
    /// Sloppy quorum (Dynamo): a hint stored for a replica counts toward W. Off by default (strict
    /// quorum: W real replicas must apply). On, writes succeed with up to N - 1 replicas down as long
    /// as fallbacks store their hints, but an acknowledged write may sit on fewer than W replicas until
    /// the hints are replayed, so a quorum read can miss it meanwhile, and it is lost if a fallback's
    /// disk is lost first. Needs `hintedHandoff`.
    public var sloppyQuorum = false
    /// The wall clock, in milliseconds since the Unix epoch, that versions start from. Replaceable so
    /// that tests (and the simulator) can give a client a clock that runs behind or jumps.
    public var wallClockMillis: @Sendable () -> UInt64 = KVClientConfiguration.systemMillis
    /// How far ahead of `wallClockMillis` a node's clock (in a reply, or a version it holds) may be
    /// for the client to move its own clock up to it (as `kvd --max-clock-offset`); a clock further
    /// ahead is ignored, so a faulty or hostile node cannot drag the client's versions into the future.
    public var maxClockOffset: Duration = .milliseconds(500)
    /// Where the client's metrics go (operations, their latency and outcome, repairs, hints); nil:
    /// the process's bootstrapped swift-metrics backend (`MetricsSystem.factory`).
    public var metricsFactory: (any MetricsFactory)?

    /// Milliseconds since the Unix epoch, from the system's real-time clock.
    @Sendable public static func systemMillis() -> UInt64 {
        UInt64(max(0, Date().timeIntervalSince1970 * 1000))
    }

    public init(cluster: ClusterMap, tls: TLSConfiguration) {
        self.cluster = cluster
        self.endpoints = cluster.nodes.map(\.address)
        self.clusterID = cluster.clusterID
        self.tls = tls
    }

    public init(endpoints: [String], tls: TLSConfiguration) {
        self.cluster = nil
        self.endpoints = endpoints
        self.tls = tls
    }
}

/// A value read from the store, with the version that wrote it.
public struct KVValue: Sendable, Hashable {
    public var value: [UInt8]
    public var version: Version

    public init(value: [UInt8], version: Version) {
        self.value = value
        self.version = version
    }
}

/// How one node answered a ping and, with an admin certificate, its counters (`Admin` stats).
public struct NodeStatus: Sendable, Hashable {
    /// The node's id in the cluster map (or its address when the map is not known).
    public var nodeID: String
    public var address: String
    public var isUp: Bool
    public var latency: Duration?
    public var keys: UInt64?
    /// Hints the node holds for other replicas.
    public var hintsQueued: UInt64?
    /// Why the node is down.
    public var error: String?

    // The counters below are nil unless the client has an admin certificate and the node answered
    // `Admin` stats; they count since the node started (the queue and the marks are durable).

    /// Hints the node stored for other replicas.
    public var hintsStored: UInt64? = nil
    /// Hints it handed over to their targets, acknowledged.
    public var hintsReplayed: UInt64? = nil
    /// Hints it dropped because they outlived the hint window.
    public var hintsExpired: UInt64? = nil
    /// Hints it refused because their target's queue was full.
    public var hintsRefused: UInt64? = nil
    /// Read-repair `Put`s it received.
    public var readRepairsReceived: UInt64? = nil
    /// Read-repair `Put`s that replaced an older version (or none).
    public var readRepairsApplied: UInt64? = nil
    /// Token ranges marked due for anti-entropy (a refused or expired hint), not yet repaired.
    public var antiEntropyRangesDue: UInt64? = nil
    /// Ranges anti-entropy compared without error with every co-replica.
    public var antiEntropyRangesCompared: UInt64? = nil
    /// Records anti-entropy copied from this node to co-replicas, and from co-replicas to it.
    public var antiEntropyKeysSent: UInt64? = nil
    public var antiEntropyKeysReceived: UInt64? = nil
    /// The oldest time a vnode range of the node was last compared with every co-replica (ms since the
    /// Unix epoch); 0 while one was never compared.
    public var antiEntropyOldestRangeComparedMillis: UInt64? = nil
    /// Per vnode range (`START:END`), when it was last compared with every co-replica; 0: never.
    public var antiEntropyRangeComparedMillis: [String: UInt64]? = nil
    /// Its failure detector's phi for each peer, and the peers it suspects (the node's view).
    public var peerPhi: [String: Double]? = nil
    public var peersSuspected: [String]? = nil
    /// The epoch of the node's cluster map and the membership change in progress there ("none").
    public var clusterEpoch: UInt64? = nil
    public var clusterChange: String? = nil
    /// The ranges the node receives (or last received) in a membership change, `START:END` → its
    /// progress (`done|receiving|retrying keys=K retries=R from=S[ error=…]`).
    public var transfers: [String: String]? = nil
    /// Records received through range transfers, received again after a restart, and dropped after
    /// their range moved to other nodes, since the node started.
    public var streamKeysReceived: UInt64? = nil
    public var streamKeysResent: UInt64? = nil
    public var handoffKeysDeleted: UInt64? = nil
    /// Tombstones purged since the node started (confirmed on every replica, older than the grace).
    public var tombstonesPurged: UInt64? = nil
    /// When a whole anti-entropy pass last ended without error (ms since the Unix epoch); 0: never.
    public var antiEntropyLastFullPassMillis: UInt64? = nil
    /// Hints held per target node; targets with none are absent.
    public var hintsQueuedPerTarget: [String: UInt64]? = nil
    /// When the node's certificate expires, in seconds since the Unix epoch.
    public var certificateNotAfterSeconds: UInt64? = nil
    /// Why the counters are missing although they were asked for (the node is up: it answered the ping).
    public var countersError: String? = nil
}

/// The QuorumKV SDK: the coordinator of every read and write.
///
/// It hashes each key onto the ring, sends a write to all N replicas at once and answers at the W-th
/// acknowledgement, and reads from R replicas (asking the next one at once when a replica fails, and
/// one more when they are slower than their recent p99). Versions are hybrid-logical-clock stamps; the
/// client moves its clock past every clock a replica reports, and re-stamps and retries a write that
/// a replica finds older than what it holds, so writes are acknowledged in version order whenever
/// write quorums overlap.
public final class KVClient: Sendable {
    public let configuration: KVClientConfiguration
    let tls: TLSContext
    private let hello: Hello
    /// The version source of every operation of this client (KVCore's ``ClientClock``).
    private let clock: Mutex<ClientClock>
    private let topology = Mutex<Topology?>(nil)
    private let seeds: [RPCClient]
    private let latencies = Mutex<[String: LatencyTracker]>([:])
    private let repairsSent = Atomic<Int>(0)
    private let hintsSent = Atomic<Int>(0)
    /// Operations still handing off after they answered, by id; ``close()`` waits for them.
    private let handingOff = Mutex(HandingOff())
    /// One failure detector per node, fed by every answer and by the pinger.
    private let health = Mutex<[String: PhiAccrualDetector]>([:])
    /// Pings every node every `healthCheckInterval`, from the first operation until ``close()``.
    private let pinger = Mutex<Task<Void, Never>?>(nil)
    private let closed = Atomic<Bool>(false)
    /// Connections of nodes a newer map moved or removed, closed a request timeout later (or by
    /// ``close()``), so requests still using the older map can finish.
    private let retired = Mutex<[RPCClient]>([])
    /// The fetch of a newer cluster map in progress, if any (one at a time).
    private let refresh = Mutex(MapRefresh())
    /// The map check before the first request of a client made from a cluster file (which may be
    /// older than the cluster): nil once done, or when the map came from a node.
    private let startCheck = Mutex<StartCheck?>(nil)
    private let metrics: ClientMetrics

    /// One fetch of a newer map at a time; a newer epoch heard of meanwhile is fetched next, in the
    /// same task, so whoever awaits the task sees the newest map anyone reported.
    private struct MapRefresh {
        var task: Task<Void, Never>?
        /// The highest epoch reported while `task` ran, and the node that reported it.
        var followUp: (epoch: UInt64, node: String)?
    }

    private enum StartCheck {
        case due
        case running(Task<Void, Never>)
    }

    private struct HandingOff {
        var nextID = 0
        var tasks: [Int: Task<Void, Never>] = [:]
        var finished: Set<Int> = []
    }

    /// Hints this client handed to fallback nodes for replicas that did not acknowledge a write.
    public var hintsHandedOff: Int { hintsSent.load(ordering: .relaxed) }

    /// Repair writes this client has sent to stale replicas.
    public var readRepairsSent: Int { repairsSent.load(ordering: .relaxed) }
    /// The id that breaks ties between equal timestamps of different writers.
    public let writerID: UInt64

    /// The identity in this client's certificate.
    public var identity: PeerIdentity { tls.localIdentity }

    /// The ring and one connection per node, built from one cluster map.
    final class Topology: Sendable {
        let map: ClusterMap
        let ring: Ring
        /// The ring once the membership change in progress is done; nil when nothing is changing.
        /// Writes go to the replicas of both rings meanwhile.
        let next: Ring?
        let nodes: [String: RPCClient]

        init(map: ClusterMap, ring: Ring, next: Ring?, nodes: [String: RPCClient]) {
            self.map = map
            self.ring = ring
            self.next = next
            self.nodes = nodes
        }
    }

    public init(configuration: KVClientConfiguration) throws {
        guard configuration.cluster != nil || !configuration.endpoints.isEmpty else {
            throw KVClientError.invalidArgument(
                "no cluster: give a cluster map (cluster.yaml) or at least one node address (host:port)")
        }
        self.configuration = configuration
        self.metrics = ClientMetrics(factory: configuration.metricsFactory ?? MetricsSystem.factory)
        self.tls = try TLSContext(configuration: configuration.tls, side: .client)
        self.writerID = UInt64.random(in: 1...UInt64.max)
        self.clock = Mutex(
            ClientClock(
                writer: writerID,
                bound: ClientClock.Bound(
                    maxOffsetMillis: UInt64(max(0, configuration.maxClockOffset / .milliseconds(1))),
                    wallMillis: configuration.wallClockMillis)))
        let identity = tls.localIdentity
        let clusterID = configuration.cluster?.clusterID ?? configuration.clusterID
        self.hello = Hello(
            protocolVersion: WireProtocol.version,
            clusterId: clusterID,
            senderId: identity.name,
            role: identity.role,
            epoch: configuration.cluster?.epoch ?? 0
        )
        var seeds: [RPCClient] = []
        for endpoint in configuration.endpoints {
            let (host, port) = try Self.parse(endpoint)
            seeds.append(RPCClient(host: host, port: port, tls: tls, hello: hello, policy: configuration.reconnect))
        }
        self.seeds = seeds
        if let map = configuration.cluster {
            try install(map)
            startCheck.withLock { $0 = .due }
        }
    }

    // MARK: - Reads and writes

    /// Writes `value` under `key`, acknowledged by `consistency` replicas (default: the configuration's).
    ///
    /// - Returns: the version the write was stored with.
    @discardableResult
    public func put(_ key: [UInt8], value: [UInt8], consistency: ConsistencyLevel? = nil) async throws -> Version {
        try await metrics.measure(.put) {
            try validate(key: key)
            guard value.count <= Limits.valueBytesMax else {
                throw KVClientError.invalidArgument(
                    "value is \(value.count) bytes; the limit is \(Limits.valueBytesMax)")
            }
            return try await write(key: key, value: value, tombstone: false, consistency: consistency)
        }
    }

    /// Deletes `key` by writing a tombstone.
    ///
    /// - Returns: the version of the tombstone.
    @discardableResult
    public func delete(_ key: [UInt8], consistency: ConsistencyLevel? = nil) async throws -> Version {
        try await metrics.measure(.delete) {
            try validate(key: key)
            return try await write(key: key, value: [], tombstone: true, consistency: consistency)
        }
    }

    /// Reads `key` from `consistency` replicas (default: the configuration's) and returns the newest
    /// version they hold.
    ///
    /// - Returns: the value and its version, or nil when the key does not exist or was deleted.
    ///
    /// Replicas that answered with an older version are repaired: the newest version is written back
    /// to them, in the background or, with `repair: .blocking`, before the read answers.
    public func get(_ key: [UInt8], consistency: ConsistencyLevel? = nil, repair: ReadOperation.Repair? = nil)
        async throws -> KVValue?
    {
        try await metrics.measure(.get) { try await read(key, consistency: consistency, repair: repair) }
    }

    private func read(_ key: [UInt8], consistency: ConsistencyLevel?, repair: ReadOperation.Repair?) async throws
        -> KVValue?
    {
        try validate(key: key)
        return try await onNewerMaps { topology in
            try await self.read(key, consistency: consistency, repair: repair, in: topology)
        }
    }

    private func read(
        _ key: [UInt8], consistency: ConsistencyLevel?, repair: ReadOperation.Repair?, in topology: Topology
    ) async throws -> KVValue? {
        // Any R of the N replicas make a quorum: the ones the failure detector suspects go last.
        let replicas = healthyFirst(topology.ring.preferenceList(forKey: key))
        let level = consistency ?? configuration.readConsistency
        let required = try requiredReplicas(level, topology: topology)
        var speculationDelay: Duration?
        if configuration.speculativeReads && !configuration.readFromAll {
            speculationDelay = latencies.withLock { trackers in
                replicas.prefix(required).compactMap { trackers[$0]?.percentile(0.99) }.max()
            }
        }
        let operation = Guarded(
            ReadOperation(
                configuration: ReadOperation.Configuration(
                    replicas: replicas, required: required, askAll: configuration.readFromAll,
                    deadline: configuration.requestTimeout, speculationDelay: speculationDelay,
                    repair: repair ?? configuration.readRepair)))
        let request = Message.getRequest(GetRequest(key: ByteBuffer(bytes: key)))
        let outcome = try await drive(
            start: {
                operation.withLock { operation in self.clock.withLock { operation.start(clock: &$0).map(\.step) } }
            },
            handle: { event in
                operation.withLock { operation in
                    self.clock.withLock { operation.handle(event, clock: &$0).map(\.step) }
                }
            },
            send: { send, started in
                switch send {
                case .get(let node):
                    return self.send(request, to: node, in: topology).map {
                        self.readEvent(node, $0, started: started)
                    }
                case .repair(let node, let record):
                    self.repairsSent.add(1, ordering: .relaxed)
                    self.metrics.readRepairs.increment()
                    let put = Message.putRequest(
                        PutRequest(
                            key: ByteBuffer(bytes: key), value: ByteBuffer(bytes: record.value),
                            version: record.version, tombstone: record.tombstone, origin: .readRepair, epoch: 0))
                    return self.send(put, to: node, in: topology).map { self.repairEvent(node, $0) }
                }
            },
            late: { event in self.clock.withLock { event.observeClocks(&$0) } })
        switch outcome {
        case .failed(let error):
            throw KVClientError.unavailable("read of \(Self.describe(key)): \(error)")
        case .answered(let result):
            guard let newest = result.newest else { return nil }
            return newest.tombstone ? nil : KVValue(value: newest.value, version: newest.version)
        }
    }

    /// Runs one ``WriteOperation``: it stamps the version, re-stamps and retries when a replica holds a
    /// newer one, decides when the write is acknowledged, failed or given up, and which fallbacks get
    /// hints for the replicas that did not acknowledge (which goes on in the background after the
    /// caller has its answer).
    private func write(key: [UInt8], value: [UInt8], tombstone: Bool, consistency: ConsistencyLevel?) async throws
        -> Version
    {
        try await onNewerMaps { topology in
            try await self.write(key: key, value: value, tombstone: tombstone, consistency: consistency, in: topology)
        }
    }

    /// Runs `attempt` on the map in use and, when it fails as unavailable while a newer map has been
    /// installed meanwhile, again on that map (KVCore's `NewerMapRetry`): a replica that refused with
    /// `notReplica` (a membership change this client had not heard of, or a range it is still
    /// receiving) made the quorum fail, and the fetch of the refusing node's map is awaited first. A
    /// client that slept through several changes can take more than one step.
    private func onNewerMaps<Result>(_ attempt: (Topology) async throws -> Result) async throws -> Result {
        var topology = try await currentTopology()
        var retry = NewerMapRetry(epoch: topology.map.epoch)
        while true {
            do {
                return try await attempt(topology)
            } catch let error as KVClientError where error.isUnavailable {
                await refresh.withLock { $0.task }?.value
                let latest = try await currentTopology()
                guard retry.retry(onEpoch: latest.map.epoch) else { throw error }
                topology = latest
            }
        }
    }

    private func write(
        key: [UInt8], value: [UInt8], tombstone: Bool, consistency: ConsistencyLevel?, in topology: Topology
    ) async throws -> Version {
        let token = Token(key: key)
        let level = consistency ?? configuration.writeConsistency
        var replicas = topology.ring.preferenceList(for: token)
        let required = try requiredReplicas(level, topology: topology)
        var quorums: [WriteCoordinator.Quorum] = []
        // During a membership change, the replicas of the next ring get the write too, and it must
        // reach a quorum in each ring: reads find it before and after ownership switches.
        if let next = topology.next, case let pending = next.preferenceList(for: token), pending != replicas {
            let nextRequired: Int
            do {
                nextRequired = try level.required(replicationFactor: next.replicationFactor)
            } catch {
                throw KVClientError.invalidArgument("\(error)")
            }
            quorums = [
                WriteCoordinator.Quorum(replicas: replicas, required: required),
                WriteCoordinator.Quorum(replicas: pending, required: nextRequired),
            ]
            replicas += pending.filter { !replicas.contains($0) }
        }
        var writeConfiguration = WriteOperation.Configuration(
            replicas: replicas, required: min(required, replicas.count), deadline: configuration.requestTimeout,
            supersededRetriesMax: configuration.supersededRetriesMax,
            fallbacks: configuration.hintedHandoff
                ? topology.ring.fallbacks(for: token).filter { !replicas.contains($0) } : [],
            hintsCountTowardQuorum: configuration.hintedHandoff && configuration.sloppyQuorum,
            suspected: suspectedNodes())
        writeConfiguration.quorums = quorums
        let operation = Guarded(WriteOperation(configuration: writeConfiguration))
        let keyBytes = ByteBuffer(bytes: key)
        let valueBytes = ByteBuffer(bytes: value)
        let wallClockMillis = configuration.wallClockMillis
        let result = try await drive(
            start: {
                let millis = wallClockMillis()
                return operation.withLock { operation in
                    self.clock.withLock { operation.start(clock: &$0, wallMillis: millis).map(\.step) }
                }
            },
            handle: { event in
                let millis = wallClockMillis()
                return operation.withLock { operation in
                    self.clock.withLock { operation.handle(event, clock: &$0, wallMillis: millis).map(\.step) }
                }
            },
            send: { send, started in
                switch send {
                case .put(let node, let version, let attempt):
                    let request = Message.putRequest(
                        PutRequest(
                            key: keyBytes, value: valueBytes, version: version, tombstone: tombstone, origin: .client,
                            epoch: topology.map.epoch))
                    return self.send(request, to: node, in: topology).map {
                        self.writeEvent(node, attempt: attempt, $0, started: started)
                    }
                case .hint(let fallback, let target, let version, let attempt):
                    let request = Message.hintRequest(
                        HintRequest(
                            target: target,
                            record: Record(key: keyBytes, version: version, tombstone: tombstone, value: valueBytes)))
                    return self.send(request, to: fallback, in: topology).map {
                        self.hintEvent(fallback, for: target, attempt: attempt, $0)
                    }
                }
            },
            late: { event in self.clock.withLock { event.observeClocks(&$0) } },
            settled: { operation.withLock(\.isSettled) })
        switch result {
        case .acknowledged(let version, _):
            return version
        case .failed(let error):
            throw KVClientError.unavailable("write of \(Self.describe(key)): \(error)")
        case .conflict(let attempts):
            throw KVClientError.conflict(
                "the write of \(Self.describe(key)) was superseded \(attempts) times by newer writes; giving up")
        }
    }

    /// Runs a sans-I/O operation: performs its sends and timers, and feeds back what happened. Returns
    /// at completion without waiting for the replicas that have not answered. Until `settled` says the
    /// operation has nothing left to do (hints to hand off), it goes on in the background, for at most
    /// one more request timeout; answers arriving after that are not fed to the operation, only handed
    /// to `late` (which keeps their clocks).
    private func drive<Send: Sendable, Event: Sendable, Outcome: Sendable>(
        start: @escaping @Sendable () -> [Step<Send, Event, Outcome>],
        handle: @escaping @Sendable (Event) -> [Step<Send, Event, Outcome>],
        send: @escaping @Sendable (Send, ContinuousClock.Instant) -> EventLoopFuture<Event>,
        late: @escaping @Sendable (Event) -> Void,
        settled: @escaping @Sendable () -> Bool = { true }
    ) async throws -> Outcome {
        let (events, continuation) = AsyncStream<Event>.makeStream()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (caller: CheckedContinuation<Outcome, any Error>) in
                let id = handingOff.withLock { state in
                    state.nextID += 1
                    return state.nextID
                }
                let task = Task {
                    await self.run(
                        events: events, continuation: continuation, start: start, handle: handle, send: send,
                        late: late, settled: settled, answer: caller)
                    self.handingOff.withLock { state in
                        if state.tasks.removeValue(forKey: id) == nil { state.finished.insert(id) }
                    }
                }
                handingOff.withLock { state in
                    if state.finished.remove(id) == nil { state.tasks[id] = task }
                }
            }
        } onCancel: {
            continuation.finish()
        }
    }

    /// The loop of ``drive(start:handle:send:late:settled:)``: answers the caller once, at completion.
    private func run<Send: Sendable, Event: Sendable, Outcome: Sendable>(
        events: AsyncStream<Event>,
        continuation: AsyncStream<Event>.Continuation,
        start: @Sendable () -> [Step<Send, Event, Outcome>],
        handle: @Sendable (Event) -> [Step<Send, Event, Outcome>],
        send: @escaping @Sendable (Send, ContinuousClock.Instant) -> EventLoopFuture<Event>,
        late: @escaping @Sendable (Event) -> Void,
        settled: @Sendable () -> Bool,
        answer: CheckedContinuation<Outcome, any Error>
    ) async {
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        var timers: [Scheduled<Void>] = []
        var answered = false
        var iterator = events.makeAsyncIterator()
        var steps = start()
        while true {
            for step in steps {
                switch step {
                case .complete(let outcome):
                    answer.resume(returning: outcome)
                    answered = true
                    // The hand-off may go on for one more timeout, not longer.
                    timers.append(
                        eventLoop.scheduleTask(in: TimeAmount(configuration.requestTimeout)) { continuation.finish() })
                case .send(let what):
                    let started = ContinuousClock.now
                    send(what, started).whenSuccess { event in
                        if case .terminated = continuation.yield(event) {
                            late(event)
                        }
                    }
                case .timer(let after, let event):
                    timers.append(eventLoop.scheduleTask(in: TimeAmount(after)) { continuation.yield(event) })
                }
            }
            if answered && settled() { break }
            guard let event = await iterator.next() else {
                if !answered {
                    answer.resume(throwing: KVClientError.unavailable("the request was cancelled"))
                }
                break
            }
            steps = handle(event)
        }
        for timer in timers { timer.cancel() }
        continuation.finish()
        // Answers already queued when the stream closed are late too: they keep their clocks.
        while let event = await iterator.next() {
            late(event)
        }
    }

    // MARK: - One replica directly (admin)

    /// Reads what one replica holds for `key`, tombstones included, bypassing coordination.
    ///
    /// For debugging and repair checks; needs an admin certificate.
    public func replicaRecord(_ key: [UInt8], node: String) async throws -> StoredRecord? {
        try validate(key: key)
        try requireAdmin()
        let topology = try await currentTopology()
        let answer = try await call(.getRequest(GetRequest(key: ByteBuffer(bytes: key))), node: node, in: topology)
        guard case .getResponse(let response) = answer else {
            throw KVClientError.protocolViolation("\(node) answered Get with \(answer.type)")
        }
        observe(response.clock)
        return response.record.map {
            StoredRecord(version: $0.version, tombstone: $0.tombstone, value: Array($0.value.readableBytesView))
        }
    }

    /// Writes `value` (or a tombstone) to one replica only, bypassing coordination: the other replicas
    /// do not get it. For debugging, tests and repair checks; needs an admin certificate.
    ///
    /// - Returns: the version written, or the newer version the replica already held.
    @discardableResult
    public func writeReplica(_ key: [UInt8], value: [UInt8], tombstone: Bool = false, node: String) async throws
        -> ApplyOutcome
    {
        try validate(key: key)
        try requireAdmin()
        let topology = try await currentTopology()
        let millis = configuration.wallClockMillis()
        let version = clock.withLock { $0.stamp(wallMillis: millis) }
        let request = Message.putRequest(
            PutRequest(
                key: ByteBuffer(bytes: key), value: ByteBuffer(bytes: value), version: version, tombstone: tombstone,
                origin: .client, epoch: 0))
        let answer = try await call(request, node: node, in: topology)
        guard case .putResponse(let response) = answer else {
            throw KVClientError.protocolViolation("\(node) answered Put with \(answer.type)")
        }
        observe(response.clock)
        return response.outcome == .applied ? .applied : .superseded(current: response.current)
    }

    // MARK: - Cluster

    /// One node's counters (`Admin` stats: keys, uptime, hints stored/refused/replayed/expired and
    /// queued per target). Needs an admin certificate.
    public func nodeStatistics(node: String) async throws -> [String: String] {
        try requireAdmin("reading a node's statistics")
        return try await adminStatistics(node: node, in: try await currentTopology())
    }

    private func adminStatistics(node: String, in topology: Topology) async throws -> [String: String] {
        let answer = try await call(
            .adminRequest(AdminRequest(command: .stats, arguments: [])), node: node, in: topology)
        guard case .adminResponse(let response) = answer else {
            throw KVClientError.protocolViolation("\(node) answered Admin with \(answer.type)")
        }
        return Dictionary(response.results.map { ($0.name, $0.value) }, uniquingKeysWith: { $1 })
    }

    /// Runs an anti-entropy pass on `node` now (`Admin` repair) and returns what it did: the node
    /// compares each vnode range it replicates (those overlapping `range`, when given) with every
    /// co-replica and copies what differs. Needs an admin certificate.
    ///
    /// A pass can take minutes on a large store, so it has its own `timeout`, not the request timeout.
    /// A co-replica that is down does not fail the call: the summary counts the sessions that failed.
    public func repair(node: String, range: TokenRangeSpan? = nil, timeout: Duration = .seconds(3600)) async throws
        -> RepairSummary
    {
        try requireAdmin("repair")
        let arguments = range.map { [Pair(name: "range", value: $0.repairArgument)] } ?? []
        let answer = try await call(
            .adminRequest(AdminRequest(command: .repair, arguments: arguments)), node: node,
            in: try await currentTopology(), timeout: timeout)
        guard case .adminResponse(let response) = answer else {
            throw KVClientError.protocolViolation("\(node) answered Admin with \(answer.type)")
        }
        let results = Dictionary(response.results.map { ($0.name, $0.value) }, uniquingKeysWith: { $1 })
        guard let summary = RepairSummary(nodeID: node, results: results) else {
            throw KVClientError.protocolViolation("\(node) answered repair without its counts")
        }
        return summary
    }

    /// The cluster map in use (fetched from a seed node if it was not given).
    public func clusterMap() async throws -> ClusterMap {
        try await currentTopology().map
    }

    /// Pings every node of the cluster and reports which answer, how fast, and how many keys they hold.
    ///
    /// With an admin certificate it also reads each up node's counters (`Admin` stats: hints stored,
    /// replayed, expired, refused and queued per target, read repairs, ranges due for anti-entropy),
    /// one more call per node, all nodes at once. A node that answers the ping but not that call is
    /// still up: its counters stay nil and `countersError` says why.
    public func status() async throws -> [NodeStatus] {
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

    /// Waits for the hints of earlier writes to be handed off (at most one request timeout), then
    /// closes every connection.
    public func close() async {
        closed.store(true, ordering: .relaxed)
        if let pinger = pinger.withLock({ task in
            defer { task = nil }; return task
        }) {
            pinger.cancel()
            await pinger.value
        }
        for task in handingOff.withLock({ Array($0.tasks.values) }) {
            await task.value
        }
        let nodes = topology.withLock { $0?.nodes.values.map { $0 } ?? [] }
        for node in nodes {
            await node.close()
        }
        for seed in seeds {
            await seed.close()
        }
        for client in retired.withLock({ $0 }) {
            await client.close()
        }
    }

    // MARK: - Plumbing

    func currentTopology() async throws -> Topology {
        if let topology = topology.withLock({ $0 }) {
            if let check = startChecking(topology) {
                await check.value
                let checked = self.topology.withLock { $0 } ?? topology
                startPinger(checked)
                return checked
            }
            startPinger(topology)
            return topology
        }
        var failures: [String] = []
        for seed in seeds {
            do {
                let answer = try await seed.call(
                    .clusterMapRequest(ClusterMapRequest(knownEpoch: 0, epoch: 0)),
                    timeout: configuration.requestTimeout)
                guard case .clusterMapResponse(let response) = answer else {
                    throw KVClientError.protocolViolation("\(seed.address) answered ClusterMap with \(answer.type)")
                }
                return try install(response.map)
            } catch let error as KVClientError {
                failures.append("\(seed.address): \(error)")
            } catch let error as RPCError {
                if let code = error.remoteCode, code != .overloaded, code != .shuttingDown {
                    throw KVClientError.refused(
                        code, "\(seed.address) refused the connection: \(error.remoteMessage ?? "")")
                }
                failures.append("\(seed.address): \(error)")
            }
        }
        throw KVClientError.unavailable(
            "no node answered with the cluster map (\(failures.count) of \(seeds.count) tried): "
                + failures.joined(separator: "; "))
    }

    /// The start check of a client made from a cluster file, begun by the first caller; nil when done.
    private func startChecking(_ topology: Topology) -> Task<Void, Never>? {
        startCheck.withLock { check in
            switch check {
            case nil: return nil
            case .running(let task): return task
            case .due:
                let task = Task {
                    await self.fetchCurrentMap(topology)
                    self.startCheck.withLock { $0 = nil }
                }
                check = .running(task)
                return task
            }
        }
    }

    /// Asks every node of `topology` for its map at once and installs the first answer if it is
    /// newer: a cluster file may be older than the cluster (nodes joined or left since), and the first
    /// request should not pay a refused round to learn it. Unanswered (every node down), the file's
    /// map stays in use; later maps still arrive by gossip and refusals.
    private func fetchCurrentMap(_ topology: Topology) async {
        let clients = topology.map.voters.compactMap { topology.nodes[$0] }
        guard !clients.isEmpty else { return }
        let request = Message.clusterMapRequest(ClusterMapRequest(knownEpoch: topology.map.epoch, epoch: 0))
        let clusterID = topology.map.clusterID
        let first: ClusterMap? = await withCheckedContinuation { continuation in
            let waiting = Guarded((answered: false, pending: clients.count))
            for client in clients {
                client.send(request, timeout: configuration.requestTimeout).whenComplete { result in
                    var map: ClusterMap?
                    if case .success(.clusterMapResponse(let response)) = result, response.clusterId == clusterID {
                        map = response.map
                    }
                    let answer = waiting.withLock { waiting in
                        waiting.pending -= 1
                        guard !waiting.answered, map != nil || waiting.pending == 0 else { return false }
                        waiting.answered = true
                        return true
                    }
                    if answer { continuation.resume(returning: map) }
                }
            }
        }
        if let first {
            _ = try? install(first)
        }
    }

    /// Installs `map` unless the one in use is as new: connections of nodes whose address did not
    /// change are kept, the others retired.
    ///
    /// - Returns: the topology in use afterwards.
    @discardableResult
    func install(_ map: ClusterMap) throws -> Topology {
        let ring: Ring
        let next: Ring?
        do {
            ring = try map.ring()
            next = map.isChanging ? try map.nextRing() : nil
        } catch {
            throw KVClientError.invalidArgument("the cluster map is not a valid ring: \(error)")
        }
        let hello = Hello(
            protocolVersion: WireProtocol.version, clusterId: map.clusterID, senderId: self.hello.senderId,
            role: self.hello.role, epoch: map.epoch)
        var addresses: [String: (host: String, port: Int)] = [:]
        for node in map.nodes where node.state != .removed {
            addresses[node.id] = try Self.parse(node.address)
        }
        let (topology, dropped) = topology.withLock { current -> (Topology, [RPCClient]) in
            if let current, current.map.epoch >= map.epoch { return (current, []) }
            var nodes: [String: RPCClient] = [:]
            for node in map.nodes where node.state != .removed {
                if let current, let client = current.nodes[node.id], current.map.node(node.id)?.address == node.address
                {
                    nodes[node.id] = client
                } else if let (host, port) = addresses[node.id] {
                    nodes[node.id] = RPCClient(
                        host: host, port: port, tls: tls, hello: hello, nodeID: node.id,
                        policy: configuration.reconnect)
                }
            }
            let dropped = (current?.nodes ?? [:]).filter { nodes[$0.key] !== $0.value }.map(\.value)
            let installed = Topology(map: map, ring: ring, next: next, nodes: nodes)
            current = installed
            return (installed, dropped)
        }
        if !dropped.isEmpty {
            retired.withLock { $0.append(contentsOf: dropped) }
            let timeout = configuration.requestTimeout
            Task {
                try? await Task.sleep(for: timeout)
                for client in dropped { await client.close() }
            }
        }
        return topology
    }

    /// Fetches the map of a node that answered with a later epoch than the one in use, and installs
    /// it; one fetch at a time, failures ignored (the next answer tries again).
    private func noticeEpoch(_ epoch: UInt64, from node: String, in topology: Topology) {
        guard epoch > (self.topology.withLock { $0?.map.epoch ?? 0 }) else { return }
        refresh.withLock { refresh in
            guard refresh.task == nil else {
                if epoch > refresh.followUp?.epoch ?? 0 { refresh.followUp = (epoch, node) }
                return
            }
            refresh.task = Task {
                var node = node
                while true {
                    await self.fetchMap(from: node)
                    let installed = self.topology.withLock { $0?.map.epoch ?? 0 }
                    let next: String? = self.refresh.withLock { refresh in
                        defer { refresh.followUp = nil }
                        guard let followUp = refresh.followUp, followUp.epoch > installed else {
                            refresh.task = nil
                            return nil
                        }
                        return followUp.node
                    }
                    guard let next else { return }
                    node = next
                }
            }
        }
    }

    /// Fetches `node`'s map and installs it if it is newer; failures ignored (the next answer with a
    /// newer epoch tries again).
    private func fetchMap(from node: String) async {
        guard let topology = try? await currentTopology(),
            case .clusterMapResponse(let response)? = try? await call(
                .clusterMapRequest(ClusterMapRequest(knownEpoch: topology.map.epoch, epoch: 0)), node: node,
                in: topology),
            response.clusterId == topology.map.clusterID
        else { return }
        _ = try? install(response.map)
    }

    /// Sends `request` to `node`; a `probe` (the pinger's) dials a node in its backoff window.
    private func send(_ request: Message, to node: String, in topology: Topology, probe: Bool = false)
        -> EventLoopFuture<Result<Message, any Error>>
    {
        let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
        guard let client = topology.nodes[node] else {
            return eventLoop.makeSucceededFuture(.failure(KVClientError.invalidArgument("unknown node \(node)")))
        }
        return client.send(request, timeout: configuration.requestTimeout, probe: probe)
            .map { answer in
                self.heartbeat(node)
                if case .pingResponse(let pong) = answer, pong.epoch > topology.map.epoch {
                    self.noticeEpoch(pong.epoch, from: node, in: topology)
                }
                return Result<Message, any Error>.success(answer)
            }
            .flatMapErrorThrowing { error in
                // A replica that does not keep the key in its (newer) map: fetch that map.
                if (error as? RPCError)?.remoteCode == .notReplica {
                    self.noticeEpoch(.max, from: node, in: topology)
                }
                return Result<Message, any Error>.failure(error)
            }
    }

    // MARK: - Node health

    /// Records an answer from `node` (any answer, errors included: the node is alive).
    private func heartbeat(_ node: String) {
        let now = configuration.wallClockMillis()
        let detector = configuration.failureDetector
        health.withLock { $0[node, default: PhiAccrualDetector(configuration: detector)].heartbeat(atMillis: now) }
    }

    /// Each node's phi now (0 for a node not heard from yet): how unlikely its silence is.
    public func nodePhi() -> [String: Double] {
        let now = configuration.wallClockMillis()
        return health.withLock { detectors in detectors.mapValues { $0.phi(atMillis: now) } }
    }

    /// The nodes the failure detector suspects now.
    public func suspectedNodes() -> Set<String> {
        let now = configuration.wallClockMillis()
        return health.withLock { detectors in Set(detectors.filter { $0.value.isSuspected(atMillis: now) }.keys) }
    }

    /// `replicas` with the suspected ones moved to the end, the others in their order.
    package func healthyFirst(_ replicas: [String]) -> [String] {
        let suspected = suspectedNodes()
        guard !suspected.isEmpty else { return replicas }
        return replicas.filter { !suspected.contains($0) } + replicas.filter { suspected.contains($0) }
    }

    /// The order in which a read asks the replicas of `key` (package: tests watch the routing).
    package func readOrder(forKey key: [UInt8]) async throws -> [String] {
        try await healthyFirst(currentTopology().ring.preferenceList(forKey: key))
    }

    /// Sends a `Ping` to every node, not awaited: a hung node must not delay the others. Nodes new
    /// to the map are watched from now on.
    private func pingAll(_ topology: Topology) {
        watch(topology)
        for node in topology.map.nodes where topology.nodes[node.id] != nil {
            _ = send(
                .pingRequest(PingRequest(epoch: topology.map.epoch, clock: clockNow())), to: node.id, in: topology,
                probe: true)
        }
    }

    /// Starts watching the nodes of `topology` not watched yet, as if each had just answered: one that
    /// never does is suspected.
    private func watch(_ topology: Topology) {
        let now = configuration.wallClockMillis()
        let detector = configuration.failureDetector
        health.withLock { detectors in
            for node in topology.map.nodes where detectors[node.id] == nil {
                detectors[node.id] = PhiAccrualDetector(configuration: detector, watchingFrom: now)
            }
        }
    }

    /// Starts the pinger once: every `healthCheckInterval`, a `Ping` to every node (timeout: the
    /// interval); answers are heartbeats.
    private func startPinger(_ topology: Topology) {
        guard let interval = configuration.healthCheckInterval, !closed.load(ordering: .relaxed) else { return }
        pinger.withLock { task in
            guard task == nil else { return }
            watch(topology)
            task = Task { [weak self] in
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

    private func writeEvent(
        _ node: String, attempt: Int, _ result: Result<Message, any Error>, started: ContinuousClock.Instant
    ) -> WriteOperation.Event {
        switch result {
        case .success(.putResponse(let response)):
            record(node, ContinuousClock.now - started)
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

    private func hintEvent(_ fallback: String, for target: String, attempt: Int, _ result: Result<Message, any Error>)
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

    private func readEvent(_ node: String, _ result: Result<Message, any Error>, started: ContinuousClock.Instant)
        -> ReadOperation.Event
    {
        switch result {
        case .success(.getResponse(let response)):
            record(node, ContinuousClock.now - started)
            let record = response.record.map {
                StoredRecord(version: $0.version, tombstone: $0.tombstone, value: Array($0.value.readableBytesView))
            }
            return .answered(node, record, clock: response.clock)
        case .success(let other):
            return .failed(node, reason: "answered Get with \(other.type)")
        case .failure(let error):
            return .failed(node, reason: Self.reason(error))
        }
    }

    private func repairEvent(_ node: String, _ result: Result<Message, any Error>) -> ReadOperation.Event {
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

    private static func reason(_ error: any Error) -> String {
        if let error = error as? RPCError, let message = error.remoteMessage {
            return message
        }
        return "\(error)"
    }

    private func record(_ node: String, _ latency: Duration) {
        latencies.withLock { trackers in
            trackers[node, default: LatencyTracker()].record(latency)
        }
    }

    private func requiredReplicas(_ level: ConsistencyLevel, topology: Topology) throws -> Int {
        do {
            return try level.required(replicationFactor: topology.ring.replicationFactor)
        } catch {
            throw KVClientError.invalidArgument("\(error)")
        }
    }

    func requireAdmin(_ what: String = "reading or writing one replica directly") throws {
        guard identity.role == .admin else {
            throw KVClientError.invalidArgument("\(what) needs an admin certificate; this one is \(identity.role)")
        }
    }

    private func validate(key: [UInt8]) throws {
        guard !key.isEmpty else { throw KVClientError.invalidArgument("the key is empty") }
        guard key.count <= Limits.keyBytesMax else {
            throw KVClientError.invalidArgument("key is \(key.count) bytes; the limit is \(Limits.keyBytesMax)")
        }
    }

    /// A fresh timestamp from the client's clock, for messages that carry one without a write.
    private func clockNow() -> UInt64 {
        let millis = configuration.wallClockMillis()
        return clock.withLock { $0.stamp(wallMillis: millis).hlc }
    }

    private func observe(_ remote: UInt64) {
        clock.withLock { $0.observe(remote) }
    }

    private static func describe(_ key: [UInt8]) -> String {
        if let text = String(validating: key, as: UTF8.self), text.count <= 64,
            text.allSatisfy({ !$0.isNewline && $0 != "\0" })
        {
            return "'\(text)'"
        }
        return "a \(key.count)-byte key"
    }

    static func parse(_ endpoint: String) throws -> (String, Int) {
        guard let address = HostPort(parsing: endpoint) else {
            throw KVClientError.invalidArgument("address '\(endpoint)' is not HOST:PORT with a valid port")
        }
        return (address.host, address.port)
    }
}

extension NodeStatus {
    /// Fills the counters from `Admin` stats (names as `ReplicaService` answers them); a counter the
    /// node does not report stays nil.
    mutating func addCounters(_ statistics: [String: String]) {
        func counter(_ name: String) -> UInt64? { statistics[name].flatMap { UInt64($0) } }
        hintsStored = counter("hints_stored")
        hintsReplayed = counter("hints_replayed")
        hintsExpired = counter("hints_expired")
        hintsRefused = counter("hints_refused")
        readRepairsReceived = counter("read_repairs_received")
        readRepairsApplied = counter("read_repairs_applied")
        antiEntropyRangesDue = counter("anti_entropy_ranges_due")
        antiEntropyRangesCompared = counter("anti_entropy_ranges_compared")
        antiEntropyKeysSent = counter("anti_entropy_keys_sent")
        antiEntropyKeysReceived = counter("anti_entropy_keys_received")
        antiEntropyLastFullPassMillis = counter("anti_entropy_last_full_pass_millis")
        tombstonesPurged = counter("tombstones_purged")
        antiEntropyOldestRangeComparedMillis = counter("anti_entropy_oldest_range_compared_millis")
        /// The statistics named `prefix` + an id, by id, parsed by `parse`.
        func byID<Number>(_ prefix: String, _ parse: (String) -> Number?) -> [String: Number] {
            var numbers: [String: Number] = [:]
            for (name, value) in statistics where name.hasPrefix(prefix) {
                numbers[String(name.dropFirst(prefix.count))] = parse(value)
            }
            return numbers
        }
        hintsQueuedPerTarget = byID("hints_queued.") { UInt64($0) }
        antiEntropyRangeComparedMillis = byID("anti_entropy_range_compared.") { UInt64($0) }
        peerPhi = byID("peer_phi.") { Double($0) }
        peersSuspected = statistics["peers_suspected"].map { $0.split(separator: ",").map(String.init) }
        clusterEpoch = counter("cluster_epoch")
        clusterChange = statistics["cluster_change"]
        transfers = byID("stream_range.") { $0 }
        streamKeysReceived = counter("stream_keys_received")
        streamKeysResent = counter("stream_keys_resent")
        handoffKeysDeleted = counter("handoff_keys_deleted")
        certificateNotAfterSeconds = counter("certificate_not_after")
    }
}

/// What an operation asks its driver to do, whichever operation it is: send `Send` (a replica, or a
/// replica with the version and attempt to write), feed an event after a delay, or return.
enum Step<Send: Sendable, Event: Sendable, Outcome: Sendable> {
    case send(Send)
    case timer(after: Duration, Event)
    case complete(Outcome)
}

/// What a write sends: a `Put` to a replica, or a `Hint` to a fallback for a replica; their replies
/// are tagged with the attempt they answer.
enum WriteSend: Sendable, Hashable {
    case put(String, version: Version, attempt: Int)
    case hint(String, for: String, version: Version, attempt: Int)
}

extension WriteOperation.Action {
    var step: Step<WriteSend, WriteOperation.Event, WriteOperation.WriteResult> {
        switch self {
        case .send(let node, let version, let attempt): .send(.put(node, version: version, attempt: attempt))
        case .hint(let fallback, let target, let version, let attempt):
            .send(.hint(fallback, for: target, version: version, attempt: attempt))
        case .scheduleDeadline(let after, let attempt): .timer(after: after, .deadlinePassed(attempt: attempt))
        case .scheduleHintDue(let after, let attempt): .timer(after: after, .hintDue(attempt: attempt))
        case .complete(let result): .complete(result)
        }
    }
}

/// A value behind a lock that `@Sendable` closures can share: the state of one running operation.
final class Guarded<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) {
        self.mutex = Mutex(value)
    }

    func withLock<Result>(_ body: (inout Value) -> Result) -> Result {
        mutex.withLock { body(&$0) }
    }
}

/// What a read sends: a `Get`, or a repair `Put` of the newest record.
enum ReadSend: Sendable {
    case get(String)
    case repair(String, StoredRecord)
}

extension ReadOperation.Action {
    var step: Step<ReadSend, ReadOperation.Event, ReadCoordinator.ReadOutcome> {
        switch self {
        case .send(let node): .send(.get(node))
        case .repair(let node, let record): .send(.repair(node, record))
        case .scheduleDeadline(let after): .timer(after: after, .deadlinePassed)
        case .scheduleSpeculation(let after): .timer(after: after, .speculationDue)
        case .complete(let outcome): .complete(outcome)
        }
    }
}
