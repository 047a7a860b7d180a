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
public final class Membership: Sendable {
    private let state: Mutex<MapAcceptor>
    private let store: any ReplicaStore
    private let observers = Mutex<[@Sendable (ClusterMap) -> Void]>([])

    static let metadataName = "cluster.map"

    /// Loads the stored map and vote, or starts from `initial` (the cluster file, or a one-node map).
    /// A stored map of a later epoch wins over the file's; a file of a later epoch (edited by an
    /// operator) wins over the stored one.
    ///
    /// - Throws: `NodeError.storage` when the stored state cannot be read or written,
    ///   `NodeError.configuration` when it belongs to another cluster.
    package init(initial: ClusterMap, store: any ReplicaStore) throws(NodeError) {
        self.store = store
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
                acceptor.learn(initial)
            }
            try store.setMetadataDurably(Self.metadataName, Self.encode(acceptor))
        } catch let error as NodeError {
            throw error
        } catch {
            throw NodeError.storage("cannot read or write the cluster map in the data folder: \(error)")
        }
        self.state = Mutex(acceptor)
    }

    /// The map this node uses now.
    package var current: ClusterMap { state.withLock { $0.committed } }

    /// The acceptor's whole state (tests, status).
    package var acceptor: MapAcceptor { state.withLock { $0 } }

    /// Calls `observer` with every map adopted from now on (on the adopting thread; keep it short).
    package func onChange(_ observer: @escaping @Sendable (ClusterMap) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    /// Phase 1 vote; persisted before it is returned. Blocks on an fsync: call it off the event loop.
    package func prepare(epoch: UInt64, ballot: Ballot) throws(StorageError) -> (MapVote, epoch: UInt64) {
        try change { $0.prepare(epoch: epoch, ballot: ballot) }
    }

    /// Phase 2 vote; persisted before it is returned. Blocks on an fsync: call it off the event loop.
    package func accept(_ proposal: MapProposal) throws(StorageError) -> (MapVote, epoch: UInt64) {
        try change { $0.accept(proposal) }
    }

    /// Adopts `map` when it is a valid later map of this cluster; persisted, then observers are told.
    ///
    /// - Returns: whether it was adopted.
    @discardableResult
    package func learn(_ map: ClusterMap) throws(StorageError) -> Bool {
        let adopted = try change { $0.learn(map) }.0
        if adopted {
            for observer in observers.withLock({ $0 }) { observer(map) }
        }
        return adopted
    }

    private func change<Result>(_ body: (inout MapAcceptor) -> Result) throws(StorageError) -> (
        Result, epoch: UInt64
    ) {
        try state.withLock { acceptor throws(StorageError) in
            var next = acceptor
            let result = body(&next)
            if next != acceptor {
                try store.setMetadataDurably(Self.metadataName, Self.encode(next))
                acceptor = next
            }
            return (result, acceptor.committed.epoch)
        }
    }

    // MARK: - Stored form: the committed map, then the promise and the accepted proposal, if any.

    private static func encode(_ acceptor: MapAcceptor) -> [UInt8] {
        var buffer = ByteBufferAllocator().buffer(capacity: 256)
        buffer.writeInteger(UInt8(1))  // format version
        buffer.writeMapBody(MapBody(acceptor.committed))
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
        guard buffer.readInteger(as: UInt8.self) == 1, let committed = try buffer.readMapBody() else { throw Corrupt() }
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
            guard let ballot = try buffer.readBallot(), let body = try buffer.readMapBody() else { throw Corrupt() }
            accepted = MapProposal(ballot: ballot, map: body.map)
        default: throw Corrupt()
        }
        return MapAcceptor(committed: committed.map, promised: promised, accepted: accepted)
    }
}
