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
    /// `put` in keyspace `keyspace`: its ring, its N, its write level and TTL when the call names none.
    /// The value is the buffer the request frames are written from: the caller's `ByteBuffer` as it is.
    func put(
        _ key: [UInt8], value: ByteBuffer, consistency: ConsistencyLevel?, timeToLive: Duration?, in keyspace: String
    ) async throws -> Version {
        try await metrics.measure(
            .put, consistency: consistency ?? defaultLevels(of: keyspace).write,
            keyspace: { self.keyspaceLabel(keyspace) }
        ) {
            try validate(key: key)
            try validate(value: value, timeToLive: timeToLive)
            return try await write(
                key: key, value: value, tombstone: false, consistency: consistency, timeToLive: timeToLive,
                in: keyspace)
        }
    }

    /// `delete` in keyspace `keyspace`: a tombstone never takes the keyspace's TTL.
    func delete(_ key: [UInt8], consistency: ConsistencyLevel?, in keyspace: String) async throws -> Version {
        try await metrics.measure(
            .delete, consistency: consistency ?? defaultLevels(of: keyspace).write,
            keyspace: { self.keyspaceLabel(keyspace) }
        ) {
            try validate(key: key)
            return try await write(
                key: key, value: ByteBuffer(), tombstone: true, consistency: consistency, timeToLive: nil, in: keyspace)
        }
    }

    /// `get` in keyspace `keyspace`: its ring, its N, its read level when the call names none.
    func get(
        _ key: [UInt8], consistency: ConsistencyLevel?, repair: ReadOperation.Repair?, in keyspace: String
    ) async throws -> KVValue? {
        try await metrics.measure(
            .get, consistency: consistency ?? defaultLevels(of: keyspace).read,
            keyspace: { self.keyspaceLabel(keyspace) }
        ) {
            try validate(key: key)
            return try await onNewerMaps(in: keyspace, key: key) { topology, route in
                try await self.read(key, consistency: consistency, repair: repair, in: topology, route: route)
            }
        }
    }

    func read(
        _ key: [UInt8], consistency: ConsistencyLevel?, repair: ReadOperation.Repair?, in topology: Topology,
        route: KeyspaceRoute
    ) async throws -> KVValue? {
        let run = ReadRun(
            try readOperation(key, consistency: consistency, repair: repair, in: topology, route: route), key: key,
            in: topology, route: route, client: self)
        let outcome = try await drive(run)
        return try readValue(outcome, of: key, route: route)
    }

    /// The read of `key` a `get` runs (alone or in a batch): any R of the N replicas make a quorum, the
    /// clearly faster ones lately asked first and the ones the failure detector suspects, or whose
    /// connection was just refused, last. A read
    /// of a batch does not speculate: its replicas answer a whole batch, which single requests' p99
    /// does not measure, and its keys' timers firing one by one would split the batch's waves.
    func readOperation(
        _ key: [UInt8], consistency: ConsistencyLevel?, repair: ReadOperation.Repair?, in topology: Topology,
        route: KeyspaceRoute, speculates: Bool = true
    ) throws -> ReadOperation {
        var replicas = route.ring.preferenceList(forKey: key)
        if configuration.fastestReplicasFirst {
            let now = ContinuousClock.now
            replicas = responseTimes.withLock { $0.fastestFirst(replicas, at: now) }
        }
        replicas = reachableFirst(replicas, in: topology)
        let plan = ReadPlan(
            level: consistency ?? route.readLevel ?? configuration.readConsistency.level,
            deadline: configuration.requestTimeout, askAll: configuration.readFromAll,
            repair: repair ?? configuration.readRepair.mode, localZone: configuration.zone)
        var readConfiguration: ReadOperation.Configuration
        do {
            readConfiguration = try plan.operation(replicas: replicas, on: route.ring)
        } catch {
            throw KVClientError.invalidArgument("\(error)")
        }
        if speculates && configuration.speculativeReads && !configuration.readFromAll {
            let first = ReadPlan.firstAsked(readConfiguration)
            readConfiguration.coordinator.speculationDelay = latencies.withLock { trackers in
                first.compactMap { trackers[$0]?.p99 }.max()
            }
        }
        return ReadOperation(configuration: readConfiguration)
    }

    /// Writes `record` back to a stale replica (read repair), counted.
    func sendRepair(
        _ key: [UInt8], _ record: StoredRecord, to node: String, in topology: Topology, route: KeyspaceRoute,
        then deliver: @escaping @Sendable (ReadOperation.Event) -> Void
    ) {
        repairsSent.add(1, ordering: .relaxed)
        metrics.readRepairs.increment()
        send(route.repairRequest(key, record), to: node, in: topology) { deliver(self.repairEvent(node, $0)) }
    }

    /// What a read of `key` answers the caller: the newest record, unless it is deleted or expired.
    func readValue(_ outcome: ReadCoordinator.ReadOutcome, of key: [UInt8], route: KeyspaceRoute) throws -> KVValue? {
        switch outcome {
        case .failed(let error):
            throw KVClientError.unavailable("read of \(Self.describe(key))\(Self.naming(route)): \(error)")
        case .answered(let result):
            // An expired value is a delete at its own version: absent, by this client's clock.
            guard let newest = result.live(atMillis: configuration.wallClockMillis()) else { return nil }
            return KVValue(
                value: newest.value, version: KVVersion(newest.version),
                expiresAtMillis: newest.expiresAtMillis == 0 ? nil : newest.expiresAtMillis)
        }
    }

    /// Runs one ``WriteOperation``: it stamps the version, re-stamps and retries when a replica holds a
    /// newer one, decides when the write is acknowledged, failed or given up, and which fallbacks get
    /// hints for the replicas that did not acknowledge (which goes on in the background after the
    /// caller has its answer).
    func write(
        key: [UInt8], value: ByteBuffer, tombstone: Bool, consistency: ConsistencyLevel?, timeToLive: Duration?,
        in keyspace: String
    ) async throws -> Version {
        try await onNewerMaps(in: keyspace, key: key) { topology, route in
            try await self.write(
                key: key, value: value, tombstone: tombstone, consistency: consistency,
                timeToLive: tombstone ? nil : timeToLive ?? route.timeToLive, in: topology, route: route)
        }
    }

    /// Runs `attempt` on the map in use and the route in it of the part of keyspace `keyspace` holding
    /// `key` and, when it fails as unavailable while a newer map has been installed meanwhile, again on
    /// that map (KVCore's `NewerMapRetry`): a replica that refused with `notReplica` (a membership
    /// change this client had not heard of, a range it is still receiving, or a part that moved to
    /// another ring) made the quorum fail, and the fetch of the refusing node's map is awaited first.
    /// A client that slept through several changes can take more than one step.
    func onNewerMaps<Result>(
        in keyspace: String, key: [UInt8], _ attempt: (Topology, KeyspaceRoute) async throws -> Result
    ) async throws -> Result {
        var (topology, route) = try await topologyAndRoute(keyspace, key: key)
        var retry = NewerMapRetry(epoch: topology.map.epoch)
        while true {
            do {
                return try await attempt(topology, route)
            } catch let error as KVClientError where error.isUnavailable {
                await follower.inProgress?.wait()
                let latest = try await currentTopology()
                guard retry.retry(onEpoch: latest.map.epoch) else { throw error }
                topology = latest
                // The newer map may have dropped the keyspace (that is the answer then) or moved the
                // key's part to another ring.
                guard let newer = try topology.route(keyspace, forKey: key) else {
                    throw Self.unknownKeyspace(keyspace, in: topology.map)
                }
                route = newer
            }
        }
    }

    func write(
        key: [UInt8], value: ByteBuffer, tombstone: Bool, consistency: ConsistencyLevel?, timeToLive: Duration?,
        in topology: Topology, route: KeyspaceRoute
    ) async throws -> Version {
        let run = WriteRun(
            try writeOperation(key, consistency: consistency, route: route),
            record: RecordMaker(key: key, value: value, tombstone: tombstone, timeToLive: timeToLive), in: topology,
            route: route, client: self)
        let result = try await drive(run)
        return try writeVersion(result, of: key, route: route)
    }

    /// The write of `key` a `put` or `delete` runs (alone or in a batch).
    func writeOperation(_ key: [UInt8], consistency: ConsistencyLevel?, route: KeyspaceRoute) throws
        -> WriteOperation
    {
        var plan = WritePlan(
            level: consistency ?? route.writeLevel ?? configuration.writeConsistency.level,
            deadline: configuration.requestTimeout, supersededRetriesMax: configuration.supersededRetriesMax,
            hintedHandoff: configuration.hintedHandoff, sloppyQuorum: configuration.sloppyQuorum)
        plan.localZone = configuration.zone
        do {
            return WriteOperation(
                configuration: try plan.operation(
                    for: Token(key: key), current: route.ring, next: route.next, suspected: suspectedNodes()))
        } catch {
            throw KVClientError.invalidArgument("\(error)")
        }
    }

    /// What a write of `key` answers the caller: its version, or why it failed.
    func writeVersion(_ result: WriteOperation.WriteResult, of key: [UInt8], route: KeyspaceRoute) throws -> Version {
        // Only a failure names the key: formatting it cost every acknowledged write 3 % of the SDK's CPU.
        var described: String { Self.describe(key) + Self.naming(route) }
        switch result {
        case .acknowledged(let version, _):
            return version
        case .failed(let error):
            throw KVClientError.unavailable("write of \(described): \(error)")
        case .conflict(let attempts):
            throw KVClientError.conflict(
                "the write of \(described) was superseded \(attempts) times by newer writes; giving up")
        case .beyondClockBound(let current):
            throw KVClientError.conflict(
                "a replica holds \(described) at \(current), more than maxClockOffset "
                    + "(\(configuration.maxClockOffset)) ahead of this client's clock: check the clocks' synchronisation"
            )
        }
    }

    /// Runs a sans-I/O operation (`run`'s): performs its sends and timers, and feeds back what
    /// happened. Returns at completion without waiting for the replicas that have not answered. Until
    /// `run.isSettled` says the operation has nothing left to do (hints to hand off), it goes on in the
    /// background, for at most one more request timeout; answers arriving after that are not fed to
    /// the operation, only handed to `run.late` (which keeps their clocks).
    ///
    /// The loop runs in the caller's task until the operation answers; an operation with work left (a
    /// hand-off) then goes on as callbacks on the threads its events come from
    /// (`goOnUntilSettled`), which ``close()`` waits for. Inlined into its two
    /// callers (a read, a write), where its types are known: generic, it looked up the metadata of its
    /// types at every call.
    @inline(__always)
    func drive<Run: OperationRun>(_ run: Run) async throws -> Run.Action.Outcome {
        guard !closed.load(ordering: .relaxed) else { throw KVClientError.unavailable("the client is closed") }
        var loop = OperationLoop(run: run)
        let events = loop.events
        let outcome = await withTaskCancellationHandler {
            await untilAnswered(&loop, run.start())
        } onCancel: {
            events.finish()
        }
        if case .success = outcome, !run.isSettled {
            goOnUntilSettled(loop)
        } else {
            end(loop)
        }
        return try outcome.get()
    }

    /// Performs `actions` and what the events they lead to give, until the operation answers (or its
    /// events end: the caller's task was cancelled).
    func untilAnswered<Run: OperationRun>(
        _ loop: inout OperationLoop<Run>, _ actions: [Run.Action]
    ) async -> Result<Run.Action.Outcome, any Error> {
        var actions = actions
        while true {
            if let outcome = perform(actions, in: &loop) { return .success(outcome) }
            guard let event = await loop.events.next() else {
                return .failure(KVClientError.unavailable("the request was cancelled"))
            }
            actions = loop.run.handle(event)
        }
    }

    /// Performs `actions`, each as its `step`: sends (their answers become events), timers; returns
    /// the outcome when one of them completes the operation.
    func perform<Run: OperationRun>(
        _ actions: [Run.Action], in loop: inout OperationLoop<Run>
    ) -> Run.Action.Outcome? {
        var outcome: Run.Action.Outcome?
        let (events, run) = (loop.events, loop.run)
        for action in actions {
            switch action.step {
            case .complete(let completed):
                outcome = completed
            case .send(let what):
                run.send(what, startedAt: ContinuousClock.now) { event in
                    if !events.yield(event) { run.late(event) }
                }
            case .timer(let after, let event):
                loop.timers.append(operationTimers.schedule(in: after) { _ = events.yield(event) })
            }
        }
        return outcome
    }

    /// Ends an operation's loop: its timers cancelled, its events closed, and the answers already
    /// given handed to `run.late` (they keep their clocks).
    func end<Run: OperationRun>(_ loop: OperationLoop<Run>) {
        for timer in loop.timers { operationTimers.cancel(timer) }
        loop.events.finish()
        let run = loop.run
        loop.events.handOver { run.late($0) }
    }

    /// Refuses a value over `Limits.valueBytesMax` and a time to live out of (0, `timeToLiveMax`].
    func validate(value: ByteBuffer, timeToLive: Duration?) throws {
        guard value.readableBytes <= Limits.valueBytesMax else {
            throw KVClientError.invalidArgument(
                "value is \(value.readableBytes) bytes; the limit is \(Limits.valueBytesMax)")
        }
        if let timeToLive, timeToLive <= .zero || timeToLive > Limits.timeToLiveMax {
            throw KVClientError.invalidArgument("time to live \(timeToLive) is not in (0, \(Limits.timeToLiveMax)]")
        }
    }

    func validate(key: [UInt8]) throws {
        guard !key.isEmpty else { throw KVClientError.invalidArgument("the key is empty") }
        guard key.count <= Limits.keyBytesMax else {
            throw KVClientError.invalidArgument("key is \(key.count) bytes; the limit is \(Limits.keyBytesMax)")
        }
    }

    /// A fresh timestamp from the client's clock, for messages that carry one without a write.
    func clockNow() -> UInt64 {
        let millis = configuration.wallClockMillis()
        return clock.withLock { $0.stamp(wallMillis: millis).hlc }
    }

    func observe(_ remote: UInt64) {
        clock.withLock { $0.observe(remote) }
    }

    static func describe(_ key: [UInt8]) -> String {
        if let text = String(validating: key, as: UTF8.self), text.count <= 64,
            text.allSatisfy({ !$0.isNewline && $0 != "\0" })
        {
            return "'\(text)'"
        }
        return "a \(key.count)-byte key"
    }

}

/// The record a write sends at each version it is stamped with: the expiry travels with the version
/// (absent on the wire without a TTL). A value, not a closure: the closures that send it capture it
/// without a context of its own (this runs per write).
struct RecordMaker: Sendable {
    let key: ByteBuffer
    let value: ByteBuffer
    let tombstone: Bool
    let timeToLive: Duration?

    init(key: [UInt8], value: ByteBuffer, tombstone: Bool, timeToLive: Duration?) {
        self.key = ByteBuffer(bytes: key)
        self.value = value
        self.tombstone = tombstone
        self.timeToLive = timeToLive
    }

    func callAsFunction(_ version: Version) -> Record {
        let millis = StoredRecord.expiry(of: version, timeToLive: timeToLive)
        return Record(
            key: key, version: version, tombstone: tombstone, value: value, expiresAtMillis: millis == 0 ? nil : millis)
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

/// What one operation's loop keeps between its steps (``KVClient/drive(_:)``): the operation, its
/// events and its timers.
struct OperationLoop<Run: OperationRun>: Sendable {
    let run: Run
    let events = OperationEvents<Run.Action.Event>()
    var timers: [OperationTimers.Handle] = []
}
