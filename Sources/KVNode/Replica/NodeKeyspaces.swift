public import KVCore
public import KVStorage
public import NIOPosix
import Synchronization

/// The keyspaces a node serves (`ClusterMap.keyspaces`): for each keyspace of its map, the store's view
/// of it and a replica over that view sharing the node's clock. A view is opened the first time the
/// keyspace is used (its column families are created then), and a keyspace the map dropped is dropped
/// from the store, freeing its disk space (`dropKeyspacesGone(in:)`).
public final class NodeKeyspaces: Sendable {
    /// One keyspace as a node serves it.
    public struct Served: Sendable {
        public let keyspace: Keyspace
        /// The map as the keyspace sees it (`ClusterMap.viewed(as:)`): its rings, admission, movements.
        public let map: ClusterMap
        public let store: any KeyspaceStoring
        public let replica: Replica

        public var id: UInt32 { keyspace.id }
    }

    /// Keyspace 0's store, which holds every keyspace and the hints.
    public let root: any KeyspaceStoring
    /// Keyspace 0's replica, whose clock every keyspace's replica shares.
    public let replica: Replica
    private let replicas = Mutex<[UInt32: Replica]>([:])
    /// Test-only (the simulator's mutation check): every keyspace is served from the root store and
    /// replica, as if keyspaces had no storage of their own, so that their keys collide. Set once,
    /// before the first request.
    nonisolated(unsafe) package var servesEveryKeyspaceFromRoot = false

    public init(root: any KeyspaceStoring, replica: Replica) {
        precondition(replica.store === root, "the replica must run over the root store")
        self.root = root
        self.replica = replica
    }

    /// Keyspace `id` of `map`, when the map has it (not dropped); nil otherwise. Blocks the first time a
    /// keyspace is served (the store creates its view): call it on a thread pool, or use
    /// `opened(_:in:)` first.
    public func served(_ id: UInt32, in map: ClusterMap) throws(StorageError) -> Served? {
        guard let keyspace = map.keyspace(id: id) else { return nil }
        if servesEveryKeyspaceFromRoot {
            return Served(keyspace: keyspace, map: map.viewed(as: keyspace), store: root, replica: replica)
        }
        if let served = opened(keyspace, in: map) { return served }
        let view = try root.keyspace(id)
        let replica = replicas.withLock { replicas in
            if let replica = replicas[id] { return replica }
            let replica = self.replica.serving(view)
            replicas[id] = replica
            return replica
        }
        return Served(keyspace: keyspace, map: map.viewed(as: keyspace), store: view, replica: replica)
    }

    /// Keyspace `id` of `map`, from memory when it is served already, else opened on `pool`.
    public func served(_ id: UInt32, in map: ClusterMap, on pool: NIOThreadPool) async throws -> Served? {
        if let served = opened(id, in: map) { return served }
        return try await pool.runIfActive { try self.served(id, in: map) }
    }

    /// Keyspace `id` of `map` when it is served already (no I/O); nil when the map does not have it or
    /// its view is not open yet.
    public func opened(_ id: UInt32, in map: ClusterMap) -> Served? {
        map.keyspace(id: id).flatMap { opened($0, in: map) }
    }

    private func opened(_ keyspace: Keyspace, in map: ClusterMap) -> Served? {
        let replica: Replica? = keyspace.id == Keyspace.defaultID ? replica : replicas.withLock { $0[keyspace.id] }
        guard let replica, let store = replica.store as? any KeyspaceStoring else { return nil }
        return Served(keyspace: keyspace, map: map.viewed(as: keyspace), store: store, replica: replica)
    }

    /// Every keyspace of `map` the node serves, the default first (blocking, as `served(_:in:)`).
    public func all(in map: ClusterMap) throws(StorageError) -> [Served] {
        var all: [Served] = []
        for id in [Keyspace.defaultID] + map.keyspaces.filter({ !$0.dropped }).map(\.id) {
            if let served = try served(id, in: map) { all.append(served) }
        }
        return all
    }

    /// Drops from the store every keyspace it holds that `map` dropped (blocking).
    ///
    /// - Returns: the ids dropped.
    @discardableResult
    public func dropKeyspacesGone(in map: ClusterMap) throws(StorageError) -> [UInt32] {
        let gone = Set(map.keyspaces.filter(\.dropped).map(\.id))
        var dropped: [UInt32] = []
        for id in root.storedKeyspaces() where gone.contains(id) {
            _ = replicas.withLock { $0.removeValue(forKey: id) }
            try root.dropKeyspace(id)
            dropped.append(id)
        }
        return dropped
    }
}
