import KVCore
import KVRPC
import KVStorage
import KVWire

/// Requests name their keyspace: each is served by that keyspace's store and ring.
extension ReplicaService {
    /// What a request of one keyspace works with.
    struct KeyspaceContext: Sendable {
        let keyspace: Keyspace
        var id: UInt32 { keyspace.id }
        /// The keys of the keyspace's part (every key for the default keyspace and unsplit ones).
        let keyRange: KeyRange
        /// The map as the keyspace sees it (`ClusterMap.viewed(as:)`).
        let map: ClusterMap
        let replica: Replica
        /// The keyspace's Merkle side; nil for a node that takes no part in anti-entropy.
        let merkle: (any MerkleStore)?
        /// The keyspace's range streaming side; nil for a node that hands no range over.
        let streaming: (any RangeStreaming)?
        /// Where the keyspace's repair marks go; nil for a node that holds no hints.
        let marks: (any RepairMarkStore)?
    }

    /// The keyspace `id` of this node's map, opened on the pool the first time it is served.
    ///
    /// Refused with `notReplica` when the map does not have it (unknown to this node yet, or dropped):
    /// a client with a newer map learns of this node's; with `invalidRequest` when the node serves the
    /// default keyspace only.
    func context(_ id: UInt32) async throws -> KeyspaceContext {
        let map = membership.current
        if let context = try openedContext(id, in: map) { return context }
        guard let keyspaces else {
            throw RPCError.remote(.invalidRequest, message: "\(nodeID) serves the default keyspace only")
        }
        let served = try await runOnPool { () throws(ReplicaError) -> NodeKeyspaces.Served? in
            do throws(StorageError) {
                return try keyspaces.served(id, in: map)
            } catch {
                throw ReplicaError.storage(error)
            }
        }
        guard let served else {
            throw RPCError.remote(.notReplica, message: "keyspace \(id) was dropped from \(nodeID)'s cluster map")
        }
        return context(served, in: map)
    }

    /// `context(_:)` when it needs no waiting (the keyspace's store is open already); nil when the
    /// keyspace must be opened on the pool first.
    ///
    /// - Throws: as `context(_:)`, when the keyspace is not served here.
    func openedContext(_ id: UInt32, in map: ClusterMap) throws -> KeyspaceContext? {
        if id == Keyspace.defaultID {
            return KeyspaceContext(
                keyspace: map.defaultKeyspace, keyRange: KeyRange(low: [], high: nil), map: map, replica: replica,
                merkle: merkle, streaming: streaming,
                marks: repairMarker?.marks)
        }
        guard let keyspaces else {
            throw RPCError.remote(.invalidRequest, message: "\(nodeID) serves the default keyspace only")
        }
        guard map.keyspace(id: id) != nil else {
            throw RPCError.remote(
                .notReplica,
                message:
                    "keyspace \(id) is not in \(nodeID)'s cluster map (epoch \(map.epoch)): unknown here yet, or dropped; fetch the map and retry"
            )
        }
        return keyspaces.opened(id, in: map).map { context($0, in: map) }
    }

    private func context(_ served: NodeKeyspaces.Served, in map: ClusterMap) -> KeyspaceContext {
        KeyspaceContext(
            keyspace: served.keyspace, keyRange: keyRange(of: served.keyspace, in: map), map: served.map,
            replica: served.replica,
            merkle: merkle == nil ? nil : served.store,
            streaming: streaming == nil ? nil : served.store, marks: repairMarker == nil ? nil : served.store)
    }

    /// The keys of a part of a keyspace (cached per epoch).
    func keyRange(of keyspace: Keyspace, in map: ClusterMap) -> KeyRange {
        keyRanges.value(epoch: map.epoch, keyspace: keyspace.id) { map.keyRange(of: keyspace) }
    }

    /// The keyspace's current ring, nil when its map has none (cached per epoch: building one sorts
    /// every vnode of the cluster, which each stored hint paid when it was built per hint).
    func ring(in context: KeyspaceContext) -> Ring? {
        let map = context.map
        return rings.value(epoch: map.epoch, keyspace: context.id) { try? map.ring() }
    }

    /// The ranges this node replicates in the keyspace's current ring (cached per epoch).
    func ranges(in context: KeyspaceContext) -> [TokenRangeSpan] {
        // Under this cache's lock: `ring(in:)` takes only its own.
        replicatedRanges.value(epoch: context.map.epoch, keyspace: context.id) {
            ring(in: context)?.ranges(replicatedBy: nodeID) ?? []
        }
    }

    /// Refuses a client's request for a key this node does not serve in the keyspace's map: one it does
    /// not keep, a read of a range it is still receiving, a write made with a map older than the change
    /// in progress (`ReplicaAdmission`, the rule the simulator's nodes apply too).
    func checkAdmitted(_ key: [UInt8], write: Bool, writeEpoch: UInt64 = 0, in context: KeyspaceContext) throws {
        // No write makes an empty key (FRAMES.md): a read of one is a malformed request, not an absent key.
        guard !key.isEmpty else { throw RPCError.remote(.invalidRequest, message: "the key is empty") }
        // A keyspace split by key range: the key must be this part's.
        guard context.keyRange.contains(key) else {
            let part = context.map.keyspace(named: context.keyspace.name, forKey: key)
            throw RPCError.remote(
                .notReplica,
                message:
                    "the key belongs to part \(part.map { "\($0.id)" } ?? "?") of keyspace '\(context.keyspace.name)', not part \(context.id), in \(nodeID)'s cluster map (epoch \(context.map.epoch)); fetch the map and retry"
            )
        }
        guard transfers != nil else { return }
        let map = context.map
        let admission = admissions.value(epoch: map.epoch, keyspace: context.id) {
            try? ReplicaAdmission(node: nodeID, map: map)
        }
        guard let admission, let reason = admission.refusal(Token(key: key), write: write, writeEpoch: writeEpoch)
        else { return }
        throw RPCError.remote(.notReplica, message: reason)
    }
}
