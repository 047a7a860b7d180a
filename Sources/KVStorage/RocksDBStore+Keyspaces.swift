import CRocksDB
import Foundation
import KVCore
import Synchronization

/// Keyspaces in RocksDB: keyspace k's records and version index are the column families `data.<k>` and
/// `versions.<k>`, its Merkle segments, repair marks and metadata the `meta` keys under `keyspace/<k>/`.
/// A family is dropped whole, so dropping a keyspace frees its disk space at once, and its `meta` keys
/// are one range.
///
/// The engine keeps one view a keyspace (`RocksDBEngine.Keyspaces.views`), created at open for the
/// keyspaces the folder holds and by `keyspace(_:)` for new ones; every call for that keyspace gets the
/// same object, so the in-memory Merkle segments and repair marks have one copy.
extension RocksDBStore: KeyspaceStoring {
    public func keyspace(_ id: UInt32) throws(StorageError) -> RocksDBStore {
        try validate(keyspace: id)
        return try engine.withOpenHandles(view: nil) { () throws(StorageError) -> RocksDBStore in
            try engine.keyspaces.withLock { (keyspaces) throws(StorageError) -> RocksDBStore in
                if id == 0 {
                    guard let root = keyspaces.root else { throw .closed }
                    return root
                }
                if let view = keyspaces.views[id] { return view }
                let view = try createKeyspace(id)
                keyspaces.families[id] = RocksDBEngine.KeyspaceFamilies(
                    data: view.dataFamily, versions: view.versionsFamily)
                keyspaces.views[id] = view
                return view
            }
        }
    }

    public func dropKeyspace(_ id: UInt32) throws(StorageError) {
        guard id != 0 else { throw .invalidRecord("the default keyspace cannot be dropped") }
        try validate(keyspace: id)
        try engine.withOpenHandles(view: nil) { () throws(StorageError) in
            try engine.keyspaces.withLock { (keyspaces) throws(StorageError) in
                guard let view = keyspaces.views[id] else { return }
                try dropKeyspace(view)
                keyspaces.views[id] = nil
                keyspaces.families[id] = nil
            }
        }
    }

    public func storedKeyspaces() -> [UInt32] {
        let ids = try? engine.withOpenHandles(view: nil) { () throws(StorageError) -> [UInt32] in
            engine.keyspaces.withLock { $0.views.keys.sorted() }
        }
        return ids ?? []
    }

    public func everyKeyspace() -> [(id: UInt32, view: any KeyspaceStoring)] {
        // Taken under the lock, read outside it (a view dropped meanwhile counts 0 and has no marks).
        let stores = try? engine.withOpenHandles(view: nil) { () throws(StorageError) -> [RocksDBStore] in
            engine.keyspaces.withLock { keyspaces in
                (keyspaces.root.map { [$0] } ?? []) + keyspaces.views.values.sorted { $0.keyspaceID < $1.keyspaceID }
            }
        }
        return (stores ?? []).map { ($0.keyspaceID, $0) }
    }

    /// Makes a view of every keyspace other than 0 the folder holds: called once, by `init`.
    func openKeyspaceViews() throws(StorageError) {
        try engine.keyspaces.withLock { (keyspaces) throws(StorageError) in
            for (id, families) in keyspaces.families where id != 0 {
                let view = RocksDBStore(engine: engine, keyspace: id, families: families)
                try view.loadKeyspaceState()
                keyspaces.views[id] = view
            }
        }
    }

    /// Creates keyspace `id`'s families and its view. The engine's keyspace lock is held.
    ///
    /// RocksDB records a new family in its manifest, which it syncs before answering: the keyspace
    /// survives a crash even before its first write. `meta` keys left under its prefix (by a drop that
    /// stopped half way) are deleted first, so that no stale Merkle state describes the new families.
    private func createKeyspace(_ id: UInt32) throws(StorageError) -> RocksDBStore {
        let prefix = Array(metadataName("", keyspace: id).utf8)
        try deleteMeta(prefix: prefix)
        let data = try createFamily(RocksDBEngine.dataFamilyName(id))
        let versions: OpaquePointer
        do throws(StorageError) {
            versions = try createFamily(RocksDBEngine.versionsFamilyName(id))
        } catch {
            // A lone `data.<id>` would be completed at the next open; drop it now all the same.
            var dropError: UnsafeMutablePointer<CChar>?
            rocksdb_drop_column_family(db, data, &dropError)
            _ = Self.takeMessage(dropError)
            rocksdb_column_family_handle_destroy(data)
            throw error
        }
        let view = RocksDBStore(
            engine: engine, keyspace: id, families: RocksDBEngine.KeyspaceFamilies(data: data, versions: versions))
        do throws(StorageError) {
            try view.loadKeyspaceState()
        } catch {
            // The families stay in the folder (the next open finds the keyspace); free the handles.
            rocksdb_column_family_handle_destroy(data)
            rocksdb_column_family_handle_destroy(versions)
            throw error
        }
        return view
    }

    private func createFamily(_ name: String) throws(StorageError) -> OpaquePointer {
        var error: UnsafeMutablePointer<CChar>?
        let handle = rocksdb_create_column_family(db, engine.options(forFamily: name), name, &error)
        if let message = Self.takeMessage(error) {
            if let handle { rocksdb_column_family_handle_destroy(handle) }
            throw StorageError.fromRocksDB(message, path: directory)
        }
        guard let handle else { throw .ioError("RocksDB created no column family \(name)", path: directory) }
        return handle
    }

    /// Drops `view`'s keyspace: its calls throw `.closed` from now on; once those in flight are done,
    /// its `meta` and `merkle` keys go in one synced batch, then its two families, whose handles are
    /// then freed. The engine's keyspace lock is held.
    ///
    /// Those keys go first: a crash between the two steps leaves the keyspace's records without
    /// Merkle state, which the next open rebuilds; the other order could leave Merkle segments that a
    /// keyspace created again later would believe.
    private func dropKeyspace(_ view: RocksDBStore) throws(StorageError) {
        engine.setDropped(true, view)
        do throws(StorageError) {
            try deleteMeta(prefix: view.metaPrefix)
            for family in [view.dataFamily, view.versionsFamily] {
                var error: UnsafeMutablePointer<CChar>?
                rocksdb_drop_column_family(db, family, &error)
                try check(error)
            }
        } catch {
            // Not dropped (or half): the view serves again; a retry finishes the drop.
            engine.setDropped(false, view)
            throw error
        }
        rocksdb_column_family_handle_destroy(view.dataFamily)
        rocksdb_column_family_handle_destroy(view.versionsFamily)
        stripes.withAllLocks { headers.forget(keyspace: view.keyspaceID) }
        view.repairMarks.withLock { $0.removeAll() }
        view.merkle.withLock { $0 = MerkleSegments() }
    }

    /// Deletes every `meta` and `merkle` key starting with `prefix`, in one synced batch.
    private func deleteMeta(prefix: [UInt8]) throws(StorageError) {
        // Keyspace prefixes end with `/`: never all 0xFF, so `deleteRange` deletes them.
        try writeBatch(options: syncedWriteOptions) { batch in
            for family in [metaFamily, merkleFamily] { Self.deleteRange(batch, family, prefix: prefix) }
        }
    }
}
