import KVCore

// A placeholder until RocksDB keeps keyspaces in their own column families: the default keyspace only.
extension RocksDBStore: KeyspaceStoring {
    public var keyspaceID: UInt32 { 0 }

    public func keyspace(_ id: UInt32) throws(StorageError) -> RocksDBStore {
        try validate(keyspace: id)
        guard id == 0 else { throw .invalidRecord("keyspace \(id): this store keeps only the default keyspace") }
        return self
    }

    public func dropKeyspace(_ id: UInt32) throws(StorageError) {
        guard id != 0 else { throw .invalidRecord("the default keyspace cannot be dropped") }
    }

    public func storedKeyspaces() -> [UInt32] { [] }
}
