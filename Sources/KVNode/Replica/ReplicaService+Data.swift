import Foundation
import KVCore
import KVRPC
import KVStorage
import KVTLS
import KVWire
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The data path: `Put`, `Get`, `Hint` and `Ping`, and the checks every write passes.
extension ReplicaService {
    /// Answers a ping: the node's epoch and clock, and its load; a node's ping also says the peer is
    /// up, and gossips its map when it is ahead.
    func pong(_ ping: PingRequest, from peer: PeerIdentity) throws -> Message {
        try checkClock(ping.clock, what: "the ping's clock")
        let keys = keyCount()
        let queues = recordQueues()
        let epoch = membership.current.epoch
        if peer.role == .node {
            // A peer that pings us is up: stop treating it as down (its connections' backoff).
            health?.resumeDialling(peer.name)
        }
        if peer.role == .node {
            // A peer ahead: fetch its map (gossip in both directions of a ping).
            health?.gossip(from: peer.name, epoch: ping.epoch)
        }
        return .pingResponse(
            PingResponse(
                epoch: epoch, clock: tick(observing: ping.clock), keys: keys,
                hintsQueued: UInt64(queues.hintQueueSizes.values.reduce(0, +)), requestsInFlight: 0))
    }

    /// Answers a heartbeat (protocol version 4): a ping without the load figures, so no storage work
    /// stands between a probe and its answer. A node's heartbeat says the peer is up and gossips, as
    /// its ping does.
    func answer(_ heartbeat: HeartbeatRequest, from peer: PeerIdentity) throws -> Message {
        try checkClock(heartbeat.clock, what: "the heartbeat's clock")
        if peer.role == .node {
            health?.resumeDialling(peer.name)
            health?.gossip(from: peer.name, epoch: heartbeat.epoch)
        }
        return .heartbeatResponse(
            HeartbeatResponse(epoch: membership.current.epoch, clock: tick(observing: heartbeat.clock)))
    }

    func apply(_ put: PutRequest, from peer: PeerIdentity, in context: KeyspaceContext) async throws -> Message {
        guard put.origin == .readRepair else {
            return try await withCheckedThrowingContinuation { continuation in
                do {
                    try write(put, from: peer, in: context) { continuation.resume(with: $0) }
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
        let (key, record) = try checkedWrite(put, from: peer, in: context)
        statistics.readRepairsReceived.add(1, keyspace: context.keyspace.name)
        let replica = context.replica
        let (outcome, clock, changed) = try await runOnPool {
            () throws(ReplicaError) -> (ApplyOutcome, UInt64, Bool) in
            // Only for a repair: was what the replica held older? (`apply` answers `.applied` for an
            // equal version too.) A concurrent write may slip in between; this only feeds a counter.
            let older: Bool
            do throws(StorageError) {
                older = try replica.store.get(key: key).map { $0.version < record.version } ?? true
            } catch {
                throw ReplicaError.storage(error)
            }
            let (outcome, clock) = try replica.put(key: key, record: record)
            return (outcome, clock, older && outcome == .applied)
        }
        if changed {
            statistics.readRepairsApplied.add(1, keyspace: context.keyspace.name)
        }
        return Self.putResponse(outcome, offered: put.version, clock: clock)
    }

    /// Writes a `Put` other than a read repair in its keyspace's group commit, with the writes waiting
    /// beside it, then calls `completion` (on the pool thread that wrote it) with the answer.
    ///
    /// - Throws: at once, what refuses the write before it is queued (role, admission, bad record,
    ///   clock too far ahead); the write's own failure goes to `completion`.
    func write(
        _ put: PutRequest, from peer: PeerIdentity, in context: KeyspaceContext,
        completion: @escaping @Sendable (Result<Message, any Error>) -> Void
    ) throws {
        let (key, record) = try checkedWrite(put, from: peer, in: context)
        try checkClock(record.version.hlc, what: "the write's version")
        let offered = put.version
        storageQueue.put(key: key, record: record, to: context.replica, keyspace: context.id) { result in
            completion(
                result.map { Self.putResponse($0.outcome, offered: offered, clock: $0.clock) }
                    .mapError { self.wireError($0) })
        }
    }

    /// The checks every `Put` passes, and its key and record.
    private func checkedWrite(_ put: PutRequest, from peer: PeerIdentity, in context: KeyspaceContext) throws -> (
        key: [UInt8], record: StoredRecord
    ) {
        guard RPCAuthorization.permits(peer.role, toSend: put.origin) else {
            throw RPCError.remote(
                .notAuthorized, message: "a \(peer.role) certificate may not send a Put of origin \(put.origin)")
        }
        let key = Array(put.key.readableBytesView)
        // Every origin writes only where this node keeps the key. A hint whose target lost the key in
        // a change since is refused here (`notReplica`), and its holder hands it to the key's replicas.
        try checkAdmitted(key, write: true, writeEpoch: put.origin == .client ? put.epoch : 0, in: context)
        if put.origin == .antiEntropy {
            statistics.antiEntropyWritesReceived.add(1, keyspace: context.keyspace.name)
        }
        let record = try Self.record(
            key: key, version: put.version, tombstone: put.tombstone, value: put.value,
            expiresAtMillis: put.expiresAtMillis ?? 0)
        return (key, record)
    }

    private static func putResponse(_ outcome: ApplyOutcome, offered: Version, clock: UInt64) -> Message {
        switch outcome {
        case .applied:
            .putResponse(PutResponse(outcome: .applied, current: offered, clock: clock))
        case .superseded(let current):
            .putResponse(PutResponse(outcome: .superseded, current: current, clock: clock))
        }
    }

    /// Keeps a write for a replica that did not acknowledge it, until hint replay hands it over
    /// (`HintAdmission`, on the pool, in the node's hint group commit: the target check, the store,
    /// the mark of a refused hint's range).
    func storeHint(_ request: HintRequest, in context: KeyspaceContext) async throws -> Message {
        try await withCheckedThrowingContinuation { continuation in
            do {
                try storeHint(request, in: context) { continuation.resume(with: $0) }
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }

    /// `storeHint` without a task (the connection's event loop hands it over): `completion` is called
    /// once the hint is durable (on the thread of the fsync that made it so, or the pool thread that
    /// stored it: `HintGroup`), or at once when it is refused before.
    func storeHint(
        _ request: HintRequest, in context: KeyspaceContext,
        completion: @escaping @Sendable (Result<Message, any Error>) -> Void
    ) throws {
        guard let hintGroup, repairMarker != nil, let marks = context.marks else {
            throw RPCError.remote(.invalidRequest, message: "this node does not hold hints")
        }
        let checked = try Self.checked(request.record)
        let offer = HintAdmission.Offer(
            target: request.target, key: checked.key, record: checked.record, keyspace: context.id, map: context.map,
            ring: ring(in: context), replica: context.replica, marks: marks, nowMillis: wallMillis())
        storageQueue.admit(offer, in: hintGroup) { result in
            completion(
                result.mapError { self.wireError($0) }
                    .flatMap { admitted in
                        Result {
                            try self.hintAnswer(admitted, target: request.target, keyspace: context.keyspace.name)
                        }
                    })
        }
    }

    /// The answer to a hint the pool admitted or refused, counted under `keyspace` (its name).
    private func hintAnswer(_ result: HintAdmission.Admitted, target: String, keyspace: String) throws -> Message {
        let admitted: (outcome: HintAdmission.Outcome, clock: UInt64)
        switch result {
        case .success(let value):
            admitted = value
        case .failure(.unknownTarget(let target)):
            throw RPCError.remote(.unknownNode, message: "\(HintAdmissionError.unknownTarget(target))")
        case .failure(.forSelf(let node)):
            statistics.hintsRefused.add(1, keyspace: keyspace)
            throw RPCError.remote(.invalidRequest, message: "\(HintAdmissionError.forSelf(node))")
        case .failure(.replica(let error)):
            if case .clockAhead = error { statistics.clockAheadRefused.add(1, ordering: .relaxed) }
            throw Self.remote(error)
        }
        switch admitted.outcome {
        case .stored:
            statistics.hintsStored.add(1, keyspace: keyspace)
        case .refused(_, let mark):
            // Never lost silently: anti-entropy will compare the key's range with the target.
            statistics.hintsRefused.add(1, keyspace: keyspace)
            repairMarker?.reportRefusedHint(mark, target: target)
        }
        return .hintResponse(
            HintResponse(outcome: admitted.outcome == .stored ? .stored : .refused, clock: admitted.clock))
    }

    func read(_ get: GetRequest, in context: KeyspaceContext) async throws -> Message {
        let key = Array(get.key.readableBytesView)
        try checkAdmitted(key, write: false, in: context)
        let replica = context.replica
        let (stored, clock) = try await runOnPool { () throws(ReplicaError) in try replica.get(key: key) }
        return .getResponse(GetResponse(record: stored.map { Record(key: get.key, $0) }, clock: clock))
    }

    /// `read(_:in:)` when RocksDB answers from memory (memtables, block cache), on the caller's
    /// thread — the connection's event loop (`answerAtOnce`); nil when the read needs the disk.
    func readFromMemory(_ get: GetRequest, in context: KeyspaceContext) throws -> Message? {
        let key = Array(get.key.readableBytesView)
        try checkAdmitted(key, write: false, in: context)
        let found: (record: StoredRecord?, clock: UInt64)?
        do {
            found = try context.replica.getFromMemory(key: key)
        } catch {
            throw Self.remote(error)
        }
        return found.map {
            .getResponse(GetResponse(record: $0.record.map { Record(key: get.key, $0) }, clock: $0.clock))
        }
    }

    /// `Replica.checked` for a peer's record, refusing bad input with the wire's error.
    static func checked(_ record: Record) throws -> StreamedRecord {
        do {
            return try Replica.checked(record)
        } catch {
            throw remote(error)
        }
    }

    /// `Replica.record` for wire fields, refusing bad input with the wire's error.
    static func record(
        key: [UInt8], version: Version, tombstone: Bool, value: ByteBuffer, expiresAtMillis: UInt64 = 0
    ) throws -> StoredRecord {
        do {
            return try Replica.record(
                key: key, version: version, tombstone: tombstone, value: Array(value.readableBytesView),
                expiresAtMillis: expiresAtMillis)
        } catch {
            throw remote(error)
        }
    }

    /// The `Error` frame that answers a replica failure.
    static func remote(_ error: ReplicaError) -> RPCError {
        switch error {
        case .invalidRequest(let message):
            RPCError.remote(.invalidRequest, message: message)
        case .storage(let storage):
            RPCError.remote(storage.code == .diskFull ? .diskFull : .storageFailure, message: "\(storage)")
        case .clockAhead(let message):
            RPCError.remote(.invalidRequest, message: message)
        }
    }

    /// Runs a blocking replica call on the thread pool, through the bounded storage queue (the one
    /// place a request's store calls enter the pool), turning its failures into wire errors.
    func runOnPool<T: Sendable>(_ body: @escaping @Sendable () throws(ReplicaError) -> T) async throws -> T {
        try await answeringReplicaErrors { try await storageQueue.run { try body() } }
    }

    /// Runs `body`, answering its failure as `wireError(_:)` does.
    func answeringReplicaErrors<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            throw wireError(error)
        }
    }

    /// The wire's error for a replica call's failure: a `ReplicaError` as `remote(_:)` answers it (a
    /// clock too far ahead counted), an `RPCError` (the storage queue's `overloaded`, already counted)
    /// as it is, anything else as `shuttingDown`.
    func wireError(_ error: any Error) -> any Error {
        switch error {
        case let error as ReplicaError:
            if case .clockAhead = error { statistics.clockAheadRefused.add(1, ordering: .relaxed) }
            return Self.remote(error)
        case let error as RPCError:
            return error
        default:
            return RPCError.remote(.shuttingDown, message: "the node is shutting down")
        }
    }

    func tick(observing remote: UInt64) -> UInt64 {
        replica.tick(observing: remote)
    }

    /// Refuses (counted) a clock or version from a peer further ahead than the maximum clock offset.
    func checkClock(_ remote: UInt64, what: String) throws {
        do {
            try replica.checkClock(remote, what: what)
        } catch {
            statistics.clockAheadRefused.add(1, ordering: .relaxed)
            throw Self.remote(error)
        }
    }
}
