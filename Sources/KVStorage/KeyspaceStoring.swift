import KVCore

/// A store that keeps keyspaces (`ClusterMap.keyspaces`) apart: the store itself serves keyspace 0
/// (`default`), and `keyspace(_:)` hands out a view of another keyspace, with its own records,
/// Merkle segments, repair marks and metadata names, so the same key bytes in two keyspaces never
/// meet. Every view shares the engine (one write-ahead log, one checkpoint for a backup), the hints
/// (each `StoredHint` names its keyspace) and the node's metadata.
///
/// A view's metadata names are its own: `setMetadata("x", …)` on keyspace 5's view does not touch
/// keyspace 0's `x`, so a range transfer's or anti-entropy's checkpoint written through a view belongs
/// to that keyspace. Closing any view closes the whole store.
public protocol KeyspaceStoring: ReplicaStore, MerkleStore, RangeStreaming, TombstonePurging, RepairMarkStore,
    HintStore
{
    /// The keyspace this view serves (0: the default keyspace, the store itself).
    var keyspaceID: UInt32 { get }

    /// The view of keyspace `id`, created empty (durably) when the store has never held it; the
    /// store itself for 0. The same id answers views of the same data.
    ///
    /// - Throws: `.invalidRecord` for an id of `Limits.keyspaceIDsMax` or more; `.closed` once closed;
    ///   what the engine reports.
    func keyspace(_ id: UInt32) throws(StorageError) -> Self

    /// Deletes keyspace `id` and everything it holds (records, Merkle segments, repair marks,
    /// metadata), freeing its disk space; its views then throw `.closed`. Its hints are not touched
    /// (their replay is refused and they are dropped as a dropped keyspace's). Dropping a keyspace the
    /// store does not hold is not an error.
    ///
    /// - Throws: `.invalidRecord` for keyspace 0, which cannot be dropped; `.closed` once closed.
    func dropKeyspace(_ id: UInt32) throws(StorageError)

    /// The keyspaces other than 0 the store holds (created and not dropped), in increasing order.
    func storedKeyspaces() -> [UInt32]

    /// The view of every keyspace the store holds, keyspace 0's (the store itself) first, then by id:
    /// what the node's figures of every keyspace (its key count, its ranges due for anti-entropy) read.
    /// Empty once closed; the same from any view.
    func everyKeyspace() -> [(id: UInt32, view: any KeyspaceStoring)]
}

extension KeyspaceStoring {
    /// `figure` of every keyspace the store holds (`everyKeyspace()`), by keyspace id.
    public func everyKeyspace<Figure>(_ figure: (any KeyspaceStoring) -> Figure) -> [UInt32: Figure] {
        Dictionary(everyKeyspace().map { ($0.id, figure($0.view)) }) { first, _ in first }
    }

    /// The keys of every keyspace the store holds, keyspace 0's included, as `approximateKeyCount()`
    /// counts each (RocksDB's estimate): what the node holds, for `kvctl status` and pings. Zero once
    /// closed; the same from any view.
    public func approximateKeyCountOfEveryKeyspace() -> UInt64 {
        everyKeyspace { $0.approximateKeyCount() }.values.reduce(0, &+)
    }
}

/// Checks a keyspace id asked for, as both stores do.
func validate(keyspace id: UInt32) throws(StorageError) {
    guard id < UInt32(Limits.keyspaceIDsMax) else {
        throw .invalidRecord("keyspace id \(id) is not below Limits.keyspaceIDsMax (\(Limits.keyspaceIDsMax))")
    }
}

/// The metadata name a keyspace's view stores `name` under: the name itself for keyspace 0,
/// `keyspace/<id>/<name>` otherwise (names starting `keyspace/` are reserved).
func metadataName(_ name: String, keyspace id: UInt32) -> String {
    id == 0 ? name : "\(KeyspaceMetadata.prefix)\(id)/\(name)"
}

package enum KeyspaceMetadata {
    package static let prefix = "keyspace/"
}
