import KVCore
import KVNode
import KVStorage
import Synchronization

/// A whole QuorumKV cluster in one thread: replica nodes running the production `Replica` over an
/// `InMemoryStore`, SDK clients running the production `WriteOperation`/`ReadOperation` (and so the
/// production quorum coordinators and version rules), a ring from the production `TokenAllocator`, and
/// a network, clocks and disks replaced by seeded fakes: delays, drops, duplicates, reordering,
/// partitions that heal, crashes that lose what was not synced, skewed clocks that jump backwards.
///
/// A run is a pure function of its seed.
public final class Simulation {
    let configuration: SimulationConfiguration
    /// The seeded randomness; the late clients (`Simulation+LateClients.swift`) switch to a stream of
    /// their own, so that the main run draws exactly what it drew before they existed.
    var random: SplitMix64
    /// The faults in force: the configuration's, or none for the late clients.
    var faults: FaultProfile
    var queue = TimeOrderedQueue<SimulationEvent>()
    /// Simulated time, in milliseconds since the Unix epoch (starting in 2023, so skews stay positive).
    var now: UInt64 = 1_700_000_000_000
    let worldClock: WorldClock
    var nodes: [SimulatedNode] = []
    var clients: [SimulatedClient] = []
    /// The ring the invariants check against: the fixed ring, or with membership the current ring of
    /// the latest map chosen.
    var ring: Ring
    /// Cluster maps, their consensus, gossip, streaming and dropping (`Simulation+Membership.swift`).
    var membership: MembershipState
    var history = HistoryRecorder()
    var trace: [String] = []
    var traceStart = 0
    var violations: [String] = []
    var blocked: Set<Link> = []
    var partitionsActive: [Int: Set<Link>] = [:]
    var nextPartitionID = 0
    var acknowledgedWrites: [(key: [UInt8], version: Version, historyID: Int, keyspace: UInt32)] = []
    /// The keyspace of each client operation, by history id (absent: the default keyspace).
    var keyspaceOfOperation: [Int: UInt32] = [:]
    var highestSeen: [NodeKey: Version] = [:]
    /// Keys whose replicas broke the placement (reported once each), keyspace-qualified (`historyKey`).
    var placementBroken: Set<[UInt8]> = []
    var statistics = Statistics()

    struct Statistics {
        var completed = 0
        var failed = 0
        var messages = 0
        var crashes = 0
        var partitions = 0
        var repairs = 0
        var hintsStored = 0
        var hintsReplayed = 0
        var hintsExpired = 0
        var hintsRefused = 0
        var antiEntropyKeys = 0
        var tombstonesPurged = 0
        var expiredValuesPurged = 0
        var expiringWritesAcknowledged = 0
        var expiredReads = 0
        var epochsChosen = 0
        var keysStreamed = 0
        var keysStreamedByKeyspace: [UInt32: Int] = [:]
        var rangesDropped = 0
        var newerMapRetries = 0
        var lateOperationsSucceeded = 0
        var sleeperLagEpochs = 0
        var mapWaits = 0
    }

    /// Tombstones purged, per node and key: the version purged and when (true time). No value older
    /// than a purged tombstone that existed before the purge may be seen again.
    var purged: [NodeKey: (version: Version, at: UInt64)] = [:]
    /// When each (key, version) was first stored on any node (true time).
    var firstStored: [VersionedKey: UInt64] = [:]

    /// Every hint a fallback stored, and the ones that expired: at the end each stored hint must be on
    /// its target (or newer), unless it expired.
    var hintsStored: [HintRecord] = []
    var hintsExpired: Set<HintRecord> = []
    /// Hints a fallback refused (no room) or let expire: each must leave a repair mark (`RepairMarking`).
    var hintsMissed: [MissedHint] = []
    var nextReplayRound = 0
    /// Client writes waiting at each node (by index) for a later map, by wait id (`Simulation+MapWait`).
    var mapWaiters: [Int: [Int: Envelope]] = [:]
    var nextMapWaitID = 0

    /// Upper bound on simulated time: a run still going by then has hung.
    static let simulatedTimeMax: UInt64 = 600_000

    public init(configuration: SimulationConfiguration) {
        self.configuration = configuration
        self.faults = configuration.faults
        var random = SplitMix64(seed: configuration.seed)
        let nodeCount = configuration.nodes ?? Int(4 + random.next() % 5)
        let clientCount = configuration.clients ?? Int(2 + random.next() % 3)
        self.worldClock = WorldClock(start: now)
        let ids = (1...nodeCount).map { "n\($0)" }
        let members = configuration.membershipProfile.map { Array(ids.prefix($0.initialMembers)) } ?? ids
        let ringNodes =
            configuration.membershipProfile == nil
            ? TokenAllocator.allocate(nodeIDs: members)
            : TokenAllocator.allocate(nodeIDs: members, tokensPerNode: MembershipProfile.tokensPerNode)
        // The fixed ring too is the first map's ring, built by `ClusterMap.ring()` as the SDK builds it.
        var firstMap = ClusterMap(
            clusterID: "sim", epoch: 1,
            placement: configuration.placement
                ?? .simple(replicas: min(configuration.replicationFactor, members.count)),
            nodes: ringNodes.map { node in
                ClusterMap.Node(
                    id: node.id, address: "10.0.0.\(node.id.dropFirst()):7000", tokens: node.tokens,
                    zone: configuration.zone(ofNode: node.id), ring: configuration.ring(ofNode: node.id))
            })
        if configuration.runsKeyspaces {
            firstMap = Self.creatingKeyspaces(in: firstMap)
        }
        if configuration.runsRings {
            firstMap = Self.creatingSplitKeyspace(in: firstMap)
        }
        let membership = MembershipState(
            firstMap: firstMap, nodes: nodeCount, clients: clientCount, configuration: configuration)
        ring = membership.ring(of: firstMap)
        self.membership = membership
        let skewMax = configuration.faults.clockSkewMax.wholeMillisecondsClamped
        let driftMax = configuration.faults.clockDriftMaxPPM
        func draw(_ bound: Int64) -> Int64 {
            bound == 0 ? 0 : Int64(random.next() % UInt64(2 * bound + 1)) - bound
        }
        for id in ids {
            nodes.append(
                SimulatedNode(
                    id: id, skewMillis: draw(Int64(skewMax)), driftPPM: draw(driftMax), clock: worldClock))
        }
        for index in 0..<clientCount {
            clients.append(
                SimulatedClient(
                    name: "c\(index + 1)", clock: ClientClock(writer: UInt64(index + 1)),
                    skewMillis: draw(Int64(skewMax)), driftPPM: draw(driftMax),
                    remaining: configuration.operationsPerClient))
        }
        self.random = random
        for index in nodes.indices {
            serveKeyspaces(index)
        }
    }

    /// Runs the simulation to the end and checks every invariant.
    public func run() -> SimulationResult {
        for index in clients.indices {
            queue.push(.startOperation(client: index), at: now + random.next() % 20)
        }
        scheduleNextCrash()
        scheduleNextPartition()
        if configuration.hintedHandoff {
            for index in nodes.indices {
                queue.push(
                    .replayTick(node: index),
                    at: now + 1 + random.next() % configuration.replayInterval.wholeMillisecondsClamped)
            }
        }
        if configuration.membershipProfile != nil {
            startMembership()
        }
        if let every = configuration.antiEntropyEvery?.wholeMillisecondsClamped {
            for index in nodes.indices {
                queue.push(.antiEntropyTick(node: index), at: now + 1 + random.next() % every)
            }
        }
        let finished = runEvents()
        checkAcknowledgedWritesDurable()
        if finished, configuration.membershipProfile?.lateClients == true {
            runLateClients()
        }
        checkEnd()
        var result = SimulationResult(
            seed: configuration.seed,
            violations: violations,
            trace: Array(trace[traceStart...]) + Array(trace[..<traceStart]),
            operationsCompleted: statistics.completed,
            operationsFailed: statistics.failed,
            messagesSent: statistics.messages,
            crashes: statistics.crashes,
            partitions: statistics.partitions,
            repairs: statistics.repairs,
            hintsStored: statistics.hintsStored,
            hintsReplayed: statistics.hintsReplayed,
            hintsExpired: statistics.hintsExpired,
            antiEntropyKeys: statistics.antiEntropyKeys, tombstonesPurged: statistics.tombstonesPurged
        )
        result.hintsRefused = statistics.hintsRefused
        result.expiredValuesPurged = statistics.expiredValuesPurged
        result.expiringWritesAcknowledged = statistics.expiringWritesAcknowledged
        result.expiredReads = statistics.expiredReads
        result.epochsChosen = statistics.epochsChosen
        result.keysStreamed = statistics.keysStreamed
        result.rangesDropped = statistics.rangesDropped
        result.newerMapRetries = statistics.newerMapRetries
        result.lateOperationsSucceeded = statistics.lateOperationsSucceeded
        result.sleeperLagEpochs = statistics.sleeperLagEpochs
        result.mapWaits = statistics.mapWaits
        result.placement = ring.placement
        for write in acknowledgedWrites {
            result.acknowledgedWritesByKeyspace[partName(write.keyspace), default: 0] += 1
        }
        for (id, count) in statistics.keysStreamedByKeyspace {
            result.keysStreamedByKeyspace[partName(id)] = count
        }
        return result
    }

    /// Handles events in time order until none is left; false (a violation) when the run is still
    /// going at `simulatedTimeMax`: something hangs.
    func runEvents() -> Bool {
        while let (time, event) = queue.pop() {
            if time - worldClock.start > Self.simulatedTimeMax {
                violate("the run did not finish within \(Self.simulatedTimeMax) simulated ms: something hangs")
                return false
            }
            now = max(now, time)
            worldClock.set(now)
            handle(event)
        }
        return true
    }

    // MARK: - Bookkeeping

    func log(_ text: @autoclosure () -> String) {
        let line = "t=\(now - worldClock.start) \(text())"
        if trace.count < configuration.traceCapacity {
            trace.append(line)
        } else {
            trace[traceStart] = line
            traceStart = (traceStart + 1) % configuration.traceCapacity
        }
    }

    func violate(_ text: String) {
        log("VIOLATION \(text)")
        violations.append(text)
    }

    /// True while some client has operations to run or hints to hand off.
    var clientsActive: Bool {
        clients.contains { $0.remaining > 0 || $0.current != nil || !$0.handingOff.isEmpty }
    }

    /// The replicas an acknowledged write must be durable on: the keyspace's ring's preference list;
    /// with membership, those of the current and next rings of the latest chosen map as the keyspace
    /// sees it (the same once no change is in progress, as at the end of a run).
    func replicas(of key: [UInt8], keyspace: UInt32 = Keyspace.defaultID) -> [String] {
        guard configuration.membershipProfile != nil else {
            return ring(ofKeyspace: keyspace).preferenceList(forKey: key)
        }
        return membership.owners(ofKey: key, in: viewed(membership.latest, as: keyspace))
    }

    /// `configuration.requestDeadline` in the simulated milliseconds events are scheduled in.
    var requestDeadlineMillis: UInt64 {
        configuration.requestDeadline.wholeMillisecondsClamped
    }

    func nodeIndex(_ id: String) -> Int {
        Int(id.dropFirst())! - 1
    }
}

/// A message or timer the simulator will deliver.
enum SimulationEvent {
    case deliver(Envelope)
    /// A timer an operation asked for (`OperationStep.timer`): feed it `event`.
    case writeTimer(client: Int, operation: OperationTry, event: WriteOperation.Event)
    case readTimer(client: Int, operation: OperationTry, event: ReadOperation.Event)
    /// A hint sent to `fallback` for `target` has had no answer for a request deadline.
    case hintTimeout(client: Int, operation: OperationTry, attempt: Int, fallback: Int, target: String)
    case replayTick(node: Int)
    /// A node's mid-run anti-entropy pass.
    case antiEntropyTick(node: Int)
    /// A replayed hint has had no answer for a request deadline.
    case replayTimeout(node: Int, target: String, round: Int, id: HintID)
    case startOperation(client: Int)
    case crash(node: Int)
    case restart(node: Int)
    case partition
    case heal(partition: Int)
    case membership(MembershipEvent)
    /// A client write's wait at `node` for a later map ends (`Simulation+MapWait`).
    case mapWaitEnd(node: Int, id: Int)
}

/// A request from a client to a node, or a node's answer; or a hint replayed from its holder to its
/// target, or the target's answer (then `client` is `Envelope.nodeToNode` and `holder` is set).
struct Envelope {
    enum Payload {
        case put(key: [UInt8], record: StoredRecord)
        case get(key: [UInt8])
        case hint(target: String, key: [UInt8], record: StoredRecord)
        case putReply(Result<(outcome: ApplyOutcome, clock: UInt64), ReplyFailure>)
        case getReply(Result<(record: StoredRecord?, clock: UInt64), ReplyFailure>)
        case hintReply(target: String, Result<(stored: Bool, clock: UInt64), ReplyFailure>)
        case replay(key: [UInt8], record: StoredRecord, round: Int, id: HintID)
        case replayReply(round: Int, id: HintID, Result<Void, ReplyFailure>)
        /// Map consensus, gossip and streaming, between nodes, clients and the operator.
        case membership(MembershipMessage, from: Endpoint, to: Endpoint)
    }

    var client: Int
    var node: Int
    /// The client operation's history id; -1 between nodes.
    var operation: Int
    /// The write attempt (`WriteOperation`'s), or `repairAttempt`.
    var attempt: Int
    /// Which try of the client operation this is: how many newer-map retries came before it.
    var retry = 0
    var payload: Payload
    /// The hint holder of a replay message.
    var holder: Int?
    /// The epoch of the map a client's write was computed with (`PutRequest.epoch`); 0: not stated.
    var epoch: UInt64 = 0
    /// The keyspace of the key the message carries (`ClusterMap.keyspaces`).
    var keyspace: UInt32 = Keyspace.defaultID
    /// A client write that waited at its node for a later map already: not parked again.
    var waitedForMap = false

    /// The `client` of messages between nodes.
    static let nodeToNode = -1

    /// The attempt number that marks a read's repair write.
    static let repairAttempt = -1

    /// The try of the client operation this message belongs to.
    var operationTry: OperationTry { OperationTry(operation: operation, retry: retry) }
}

/// One try of a client operation: its history id, and how many times it was retried on a newer map
/// before (0: the first try). Every request and timer of a try carries it, so that late replies and
/// the hand-off of a failed try never reach the try that replaced it (a new `WriteOperation` numbers
/// its attempts from 1 again).
struct OperationTry: Hashable, Comparable, CustomStringConvertible {
    var operation: Int
    var retry: Int

    static func < (left: Self, right: Self) -> Bool {
        (left.operation, left.retry) < (right.operation, right.retry)
    }

    var description: String { retry == 0 ? "op\(operation)" : "op\(operation).\(retry)" }
}

struct ReplyFailure: Error {
    var reason: String
}

/// A client-node pair a partition cuts.
struct Link: Hashable {
    var client: Int
    var node: Int
}

struct VersionedKey: Hashable {
    var key: [UInt8]
    var version: Version
    var keyspace: UInt32 = Keyspace.defaultID
}

struct NodeKey: Hashable {
    var node: Int
    var key: [UInt8]
    var keyspace: UInt32 = Keyspace.defaultID
}

/// One hint as the invariants track it.
/// A hint its holder refused or let expire.
struct MissedHint {
    var holder: Int
    var target: String
    var key: [UInt8]
    var version: Version
    var keyspace: UInt32 = Keyspace.defaultID
}

struct HintRecord: Hashable {
    var target: String
    var key: [UInt8]
    var version: Version
    var keyspace: UInt32 = Keyspace.defaultID
}

/// Simulated true time, readable from the replicas' `@Sendable` wall-clock closures.
final class WorldClock: Sendable {
    let start: UInt64
    private let millis: Atomic<UInt64>

    init(start: UInt64) {
        self.start = start
        self.millis = Atomic(start)
    }

    func set(_ value: UInt64) {
        millis.store(value, ordering: .relaxed)
    }

    var now: UInt64 { millis.load(ordering: .relaxed) }
}

/// One replica node: the production `Replica` over a simulated disk, with its own clock skew and drift.
struct SimulatedNode {
    let id: String
    var skewMillis: Int64
    let driftPPM: Int64
    let clock: WorldClock
    var store = InMemoryStore(durability: .sync)
    /// The node's hint log: synced like its data, so it survives crashes.
    let hints = InMemoryStore()
    /// The replay round running per target, with its id; forgotten in a crash.
    var rounds: [String: ReplayRound] = [:]
    var replica: Replica
    /// The keyspaces the node serves: the production `NodeKeyspaces` over `store` and `replica`,
    /// made again with the replica at each restart (`Simulation.serveKeyspaces(_:)`).
    var keyspaces: NodeKeyspaces
    var isUp = true

    init(id: String, skewMillis: Int64, driftPPM: Int64, clock: WorldClock) {
        self.id = id
        self.skewMillis = skewMillis
        self.driftPPM = driftPPM
        self.clock = clock
        let replica = Self.makeReplica(id: id, store: store, skewMillis: skewMillis, driftPPM: driftPPM, clock: clock)
        self.replica = replica
        self.keyspaces = NodeKeyspaces(root: store, replica: replica)
    }

    static func makeReplica(id: String, store: InMemoryStore, skewMillis: Int64, driftPPM: Int64, clock: WorldClock)
        -> Replica
    {
        Replica(nodeID: id, store: store) {
            localMillis(clock.now, start: clock.start, skewMillis: skewMillis, driftPPM: driftPPM)
        }
    }

    /// A restart after a crash: same disk (minus what was not synced), a fresh process, and a clock
    /// that may have been set back by `jumpMillis`.
    mutating func restart(jumpMillis: Int64) {
        store.crash()
        skewMillis -= jumpMillis
        replica = Self.makeReplica(id: id, store: store, skewMillis: skewMillis, driftPPM: driftPPM, clock: clock)
        rounds = [:]
        isUp = true
    }

    /// This node's wall clock now.
    var localNow: UInt64 {
        localMillis(clock.now, start: clock.start, skewMillis: skewMillis, driftPPM: driftPPM)
    }
}

/// One replay round a node runs for one target.
struct ReplayRound {
    var id: Int
    var round: HintReplayRound
}

/// One try of a write: its `WriteOperation`, what it writes, and the epoch of the map it was planned
/// with (`PutRequest.epoch`); kept after completion while its hints are still being handed off.
struct WriteTry {
    var operation: WriteOperation
    var key: [UInt8]
    var tombstone: Bool
    var value: [UInt8]
    var timeToLive: Duration?
    /// 0 without membership (not stated).
    var epoch: UInt64
    var keyspace: UInt32 = Keyspace.defaultID

    /// The record a put or a hint of this write carries at `version`, with the expiry the SDK stamps
    /// (`StoredRecord.expiry(of:timeToLive:)`, as its `RecordMaker` does).
    func record(at version: Version) -> StoredRecord {
        StoredRecord(
            version: version, tombstone: tombstone, value: value,
            expiresAtMillis: StoredRecord.expiry(of: version, timeToLive: timeToLive))
    }
}

/// A local clock reading: true time scaled by the drift since the start, plus the skew.
func localMillis(_ now: UInt64, start: UInt64, skewMillis: Int64, driftPPM: Int64) -> UInt64 {
    let elapsed = Int64(now - start)
    let drifted = elapsed + elapsed * driftPPM / 1_000_000
    return UInt64(max(0, Int64(start) + drifted + skewMillis))
}

/// One SDK client: its version clock, its wall-clock skew, and the operation it is running.
struct SimulatedClient {
    /// The current operation's try in flight.
    enum Current {
        case write(WriteTry)
        case read(ReadOperation, key: [UInt8])
        /// The try failed while the client was fetching a map: it waits for its fetches to end (each
        /// within a request deadline), then retries on a newer map or fails with `failure`.
        case awaitingMap(failure: String)
    }

    let name: String
    var clock: ClientClock
    var skewMillis: Int64
    var driftPPM: Int64
    var remaining: Int
    /// Operations to run in this order, each in its keyspace; empty: each operation is drawn at random.
    var script: [(keyspace: UInt32, operation: PlannedOperation)] = []
    var current: Current?
    /// What the current operation does, whichever try runs it.
    var planned: PlannedOperation?
    /// Write tries that completed but are still handing hints off.
    var handingOff: [OperationTry: WriteTry] = [:]
    /// The history id of the current operation.
    var operation = -1
    /// The keyspace of the current operation.
    var keyspace: UInt32 = Keyspace.defaultID
    /// The current operation's retries on newer maps, and the epoch of its try's map.
    var newerMapRetry = NewerMapRetry(epoch: 0)
    var startedAt: UInt64 = 0
    /// Set for the clients that start after the run (`Simulation+LateClients.swift`).
    var late: LateClient?
    /// The client fetches a map at its start and waits for it (at most a request deadline) before
    /// its first operation, as the SDK does when it was built from a cluster file.
    var awaitsFirstMap = false

    /// The try of the current operation running now.
    var currentTry: OperationTry { OperationTry(operation: operation, retry: newerMapRetry.retries) }
}

/// One client operation, decided before its first try and kept for the retries: a retried write
/// writes the same value.
enum PlannedOperation {
    case read(key: [UInt8], repair: ReadOperation.Repair)
    case write(key: [UInt8], tombstone: Bool, value: [UInt8], timeToLive: Duration? = nil)

    var key: [UInt8] {
        switch self {
        case .read(let key, _), .write(let key, _, _, _): key
        }
    }
}
