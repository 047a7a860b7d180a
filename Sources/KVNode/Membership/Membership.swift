package import KVCore
package import KVStorage
import KVWire
import NIOCore
import Synchronization

/// This node's cluster map and its vote on the next one (`MapAcceptor`), kept in the store's `meta`
/// family under `cluster.map` and written durably (fsync, whatever the durability mode) before a vote
/// is answered or a map adopted, so a restarted node neither forgets a promise nor goes back a map.
///
/// Components that depend on the map (peer connections, hint replay, anti-entropy) read `current`
/// when they need it, and `onChange` observers hear of every adopted map.
///
/// A map from a peer is adopted only as the next epoch, with the signatures of a majority of the
/// current voters (`MapAcceptor.learn`); this node signs its own acceptances with `votes`. Each
/// adopted map and its proof also go to a history of the last `historyEpochs` epochs, from which
/// peers that are behind fetch the epochs they missed one at a time.
public final class Membership: Sendable {
    /// The acceptor; held while a vote or map is written durably, so only voting waits on it.
    private let state: Mutex<MapAcceptor>
    /// The committed map, published after it was written: what every request reads, never behind an
    /// fsync.
    private let published: Mutex<ClusterMap>
    private let store: any ReplicaStore
    private let observers = Mutex<[@Sendable (ClusterMap) -> Void]>([])
    /// Requests waiting for a later map than this node's (`untilEpoch`), by a number of their own.
    private let epochWaiters = Mutex<EpochWaiters>(EpochWaiters())
    /// Signs this node's acceptances and checks the proofs of maps from peers.
    package let votes: any MapVoteSigner & MapVoteVerifier

    static let metadataName = "cluster.map"
    /// Epochs kept for peers that are behind, in slots `cluster.map.zoned-history.<epoch mod
    /// historyEpochs>` (`cluster.map.history.<…>` holds the epochs a protocol-version-2 node kept, in
    /// `LegacyMapBody` form, read until the new slots have replaced them).
    static let historyEpochs: UInt64 = 1024

    /// Loads the stored map and vote, or starts from `initial` (the cluster file, or a one-node map).
    /// A stored map of a later epoch wins over the file's; a file of a later epoch (edited by an
    /// operator) wins over the stored one.
    ///
    /// - Throws: `NodeError.storage` when the stored state cannot be read or written,
    ///   `NodeError.configuration` when it belongs to another cluster.
    package init(
        initial: ClusterMap, store: any ReplicaStore, votes: any MapVoteSigner & MapVoteVerifier
    ) throws(NodeError) {
        self.store = store
        self.votes = votes
        var acceptor = MapAcceptor(committed: initial)
        do {
            if let bytes = try store.metadata(Self.metadataName) {
                let stored = try Self.decode(bytes)
                guard stored.committed.clusterID == initial.clusterID else {
                    throw NodeError.configuration(
                        "the data folder holds a map of cluster '\(stored.committed.clusterID)', not '\(initial.clusterID)'"
                    )
                }
                acceptor = stored
                acceptor.install(initial)
            }
            try store.setMetadataDurably(Self.metadataName, Self.encode(acceptor))
        } catch let error as NodeError {
            throw error
        } catch {
            throw NodeError.storage("cannot read or write the cluster map in the data folder: \(error)")
        }
        self.state = Mutex(acceptor)
        self.published = Mutex(acceptor.committed)
    }

    /// The map this node uses now.
    package var current: ClusterMap { published.withLock { $0 } }

    /// The acceptor's whole state (tests, status).
    package var acceptor: MapAcceptor { state.withLock { $0 } }

    /// Calls `observer` with every map adopted from now on (on the adopting thread; keep it short).
    package func onChange(_ observer: @escaping @Sendable (ClusterMap) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    /// Phase 1 vote; persisted before it is returned. Blocks on an fsync: call it off the event loop.
    package func prepare(epoch: UInt64, ballot: Ballot, nowMillis: UInt64) throws(StorageError) -> (
        MapVote, epoch: UInt64
    ) {
        try change {
            $0.forgetPromise(aheadOf: nowMillis)
            return $0.prepare(epoch: epoch, ballot: ballot)
        }
    }

    /// Phase 2 vote, signed when granted; persisted before it is returned. Blocks on an fsync: call
    /// it off the event loop.
    package func accept(_ proposal: MapProposal, nowMillis: UInt64) throws(StorageError) -> (
        (MapVote, MapVoteSignature?), epoch: UInt64
    ) {
        let votes = self.votes
        return try change {
            $0.forgetPromise(aheadOf: nowMillis)
            return $0.accept(proposal, signer: votes)
        }
    }

    /// Adopts `map` when it is the next map of this cluster and `proof` shows it was chosen;
    /// persisted, then observers are told. Blocks on an fsync: call it off the event loop.
    @discardableResult
    package func learn(_ map: ClusterMap, proof: MapProof) throws(StorageError) -> MapLearning {
        let votes = self.votes
        let learning = try change { $0.learn(map, proof: proof, verifier: votes) }.0
        if learning == .adopted {
            for observer in observers.withLock({ $0 }) { observer(map) }
            for waiter in epochWaiters.withLock({ $0.reached(map.epoch) }) { waiter.resume() }
        }
        return learning
    }

    /// Returns once this node uses the map of `epoch` or a later one, or once `duration` passed, or
    /// at once when `waitersMax` requests wait already: whether the map is there. For a client's
    /// request made with a later map than this node's, which a node that has not learnt the change yet
    /// would refuse (`ReplicaAdmission`); the number is the client's, so the wait is bounded in time
    /// and in count, not by it.
    package func untilEpoch(_ epoch: UInt64, atMost duration: Duration) async -> Bool {
        let nodeEpoch = current.epoch
        let id: UInt64? = epochWaiters.withLock {
            Self.waits(forEpoch: epoch, nodeEpoch: nodeEpoch, waiting: $0.count) ? $0.nextID() : nil
        }
        guard let id else { return nodeEpoch >= epoch }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            epochWaiters.withLock { $0.add(id, epoch: epoch, continuation) }
            // Adopted between the check above and the wait's start: nobody else will wake it.
            if current.epoch >= epoch { epochWaiters.withLock { $0.remove(id) }?.resume() }
            Task {
                try? await Task.sleep(for: duration)
                self.epochWaiters.withLock { $0.remove(id) }?.resume()
            }
        }
        return current.epoch >= epoch
    }

    /// The requests waiting for a later map now (`untilEpoch`).
    package var waitingForLaterMaps: Int { epochWaiters.withLock { $0.count } }

    /// Requests that may wait for a later map at once (`untilEpoch`).
    package static let waitersMax = 4096

    /// Whether a request made with the map of `epoch` waits at a node whose map is of `nodeEpoch`, with
    /// `waiting` requests waiting there already (`untilEpoch`; the simulator's nodes ask it too).
    package static func waits(forEpoch epoch: UInt64, nodeEpoch: UInt64, waiting: Int) -> Bool {
        nodeEpoch < epoch && waiting < waitersMax
    }

    /// The map of `epoch` and the proof it was chosen (nil for a map from the cluster file), if this
    /// node still keeps it; `epoch` 0 is the current map.
    package func map(atEpoch epoch: UInt64) throws(StorageError) -> (ClusterMap, MapProof?)? {
        let acceptor = self.acceptor
        if epoch == 0 || epoch == acceptor.committed.epoch { return (acceptor.committed, acceptor.proof) }
        guard epoch < acceptor.committed.epoch, acceptor.committed.epoch - epoch < Self.historyEpochs else {
            return nil
        }
        if let bytes = try store.metadata(Self.historyName(epoch)), let kept = try? Self.decodeHistory(bytes),
            kept.map.epoch == epoch
        {
            return kept
        }
        if let bytes = try store.metadata(Self.legacyHistoryName(epoch)),
            let kept = try? Self.decodeHistory(bytes, legacy: true), kept.map.epoch == epoch
        {
            return kept
        }
        return nil
    }

    private func change<Result>(_ body: (inout MapAcceptor) -> Result) throws(StorageError) -> (
        Result, epoch: UInt64
    ) {
        try state.withLock { acceptor throws(StorageError) in
            var next = acceptor
            let result = body(&next)
            if next != acceptor {
                if next.committed.epoch != acceptor.committed.epoch {
                    // Made durable by the write below, which goes through the same log.
                    try store.setMetadata(
                        Self.historyName(next.committed.epoch), Self.encodeHistory(next.committed, next.proof))
                }
                try store.setMetadataDurably(Self.metadataName, Self.encode(next))
                if next.committed != acceptor.committed {
                    published.withLock { $0 = next.committed }
                }
                acceptor = next
            }
            return (result, acceptor.committed.epoch)
        }
    }

    // MARK: - Stored form: the committed map and its proof, then the promise and the accepted
    // proposal, if any (format 1 had no proof; formats 1 and 2 hold `LegacyMapBody`s, format 3
    // `MapBody`s with zones and placements).

    private static func encode(_ acceptor: MapAcceptor) -> [UInt8] {
        var buffer = ByteBufferAllocator().buffer(capacity: 256)
        buffer.writeInteger(UInt8(3))  // format version
        buffer.writeMapBody(MapBody(acceptor.committed))
        buffer.writeOptionalProof(acceptor.proof)
        if let promised = acceptor.promised {
            buffer.writeInteger(UInt8(1))
            buffer.writeBallot(promised)
        } else {
            buffer.writeInteger(UInt8(0))
        }
        if let accepted = acceptor.accepted {
            buffer.writeInteger(UInt8(1))
            buffer.writeBallot(accepted.ballot)
            buffer.writeMapBody(MapBody(accepted.map))
        } else {
            buffer.writeInteger(UInt8(0))
        }
        return Array(buffer.readableBytesView)
    }

    private static func decode(_ bytes: [UInt8]) throws -> MapAcceptor {
        struct Corrupt: Error, CustomStringConvertible {
            var description: String { "the stored cluster map is truncated or of an unknown format" }
        }
        var buffer = ByteBufferAllocator().buffer(bytes: bytes)
        guard let format = buffer.readInteger(as: UInt8.self), (1...3).contains(format),
            let committed = try buffer.readMap(legacy: format < 3)
        else { throw Corrupt() }
        var proof: MapProof?
        if format >= 2 {
            guard let read = try buffer.readOptionalProof() else { throw Corrupt() }
            proof = read
        }
        var promised: Ballot?
        switch buffer.readInteger(as: UInt8.self) {
        case 0: break
        case 1: promised = try buffer.readBallot()
        default: throw Corrupt()
        }
        var accepted: MapProposal?
        switch buffer.readInteger(as: UInt8.self) {
        case 0: break
        case 1:
            guard let ballot = try buffer.readBallot(), let map = try buffer.readMap(legacy: format < 3) else {
                throw Corrupt()
            }
            accepted = MapProposal(ballot: ballot, map: map)
        default: throw Corrupt()
        }
        return MapAcceptor(committed: committed, proof: proof, promised: promised, accepted: accepted)
    }

    private static func historyName(_ epoch: UInt64) -> String {
        "\(metadataName).zoned-history.\(epoch % historyEpochs)"
    }

    private static func legacyHistoryName(_ epoch: UInt64) -> String {
        "\(metadataName).history.\(epoch % historyEpochs)"
    }

    private static func encodeHistory(_ map: ClusterMap, _ proof: MapProof?) -> [UInt8] {
        var buffer = ByteBufferAllocator().buffer(capacity: 256)
        buffer.writeMapBody(MapBody(map))
        buffer.writeOptionalProof(proof)
        return Array(buffer.readableBytesView)
    }

    private static func decodeHistory(_ bytes: [UInt8], legacy: Bool = false) throws -> (
        map: ClusterMap, proof: MapProof?
    ) {
        var buffer = ByteBufferAllocator().buffer(bytes: bytes)
        guard let map = try buffer.readMap(legacy: legacy), let proof = try buffer.readOptionalProof() else {
            throw WireError.truncated
        }
        return (map, proof)
    }
}

extension ByteBuffer {
    /// A stored map: a `MapBody`, or a `LegacyMapBody` as a protocol-version-2 node wrote it.
    fileprivate mutating func readMap(legacy: Bool) throws -> ClusterMap? {
        legacy ? try readLegacyMapBody()?.map : try readMapBody()?.map
    }

    fileprivate mutating func writeOptionalProof(_ proof: MapProof?) {
        if let proof {
            writeInteger(UInt8(1))
            writeMapProofBody(MapProofBody(proof))
        } else {
            writeInteger(UInt8(0))
        }
    }

    /// The proof (`.some(nil)` when none was stored); nil when the bytes are short or unknown.
    fileprivate mutating func readOptionalProof() throws -> MapProof?? {
        switch readInteger(as: UInt8.self) {
        case 0: return .some(nil)
        case 1: return try readMapProofBody().map { .some($0.mapProof) }
        default: return nil
        }
    }
}

/// The requests waiting for a later map (`Membership.untilEpoch`): each resumed once, by whichever
/// comes first, the map or its deadline.
private struct EpochWaiters: Sendable {
    private var waiting: [UInt64: (epoch: UInt64, continuation: CheckedContinuation<Void, Never>)] = [:]
    private var lastID: UInt64 = 0
    /// Numbers given (`nextID`) whose continuation is not added yet: counted, so that callers racing
    /// past the limit's check cannot exceed it.
    private var reserved = 0

    var count: Int { waiting.count + reserved }

    mutating func nextID() -> UInt64 {
        lastID &+= 1
        reserved += 1
        return lastID
    }

    mutating func add(_ id: UInt64, epoch: UInt64, _ continuation: CheckedContinuation<Void, Never>) {
        reserved -= 1
        waiting[id] = (epoch, continuation)
    }

    /// The waiter `id`'s continuation, no longer waiting; nil when it was resumed already.
    mutating func remove(_ id: UInt64) -> CheckedContinuation<Void, Never>? {
        waiting.removeValue(forKey: id)?.continuation
    }

    /// The continuations of every waiter `epoch` satisfies, no longer waiting.
    mutating func reached(_ epoch: UInt64) -> [CheckedContinuation<Void, Never>] {
        let ready = waiting.filter { $0.value.epoch <= epoch }
        for id in ready.keys { waiting.removeValue(forKey: id) }
        return ready.values.map(\.continuation)
    }
}
