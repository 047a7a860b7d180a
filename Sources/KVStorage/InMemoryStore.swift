public import KVCore
import Synchronization

/// A `ReplicaStore` in memory with the same semantics as `RocksDBStore`, for unit tests of other
/// modules and for the simulator's nodes. Nothing survives the process; within it, a crash layer
/// (`InMemoryStore+Crash.swift`) loses what a store with a `durability` other than `sync` has not
/// synced. One mutex guards everything: simple, and atomic per key.
public final class InMemoryStore: ReplicaStore {
    struct State {
        var records: [[UInt8]: StoredRecord] = [:]
        /// For each key written since the last `sync()` by a store that does not sync every write,
        /// what a crash leaves of it (its durable record, or nil if it had none).
        var unsynced: [[UInt8]: Durable] = [:]
        var metadata: [String: [UInt8]] = [:]
        /// Per target (UTF-8 bytes), its hints sorted by storage key: see `InMemoryStore+Hints.swift`.
        var hints: [[UInt8]: [(storageKey: [UInt8], hint: StoredHint)]] = [:]
        /// The bytes of all hints (`HintCodec.storedBytes`).
        var hintBytes = 0
        /// Token ranges due for anti-entropy: see `InMemoryStore+RepairMarks.swift`.
        var repairMarks = RepairMarks()
        /// Kept by `apply`, like `RocksDBStore`'s: see `InMemoryStore+Merkle.swift`.
        var merkle = MerkleSegments()
        var closed = false

        /// What a crash leaves of one key.
        struct Durable {
            var record: StoredRecord?
        }

        /// Sets what `get` sees for `key`, keeping the Merkle segments; with `durably`, what a crash
        /// leaves of it too (a synced write, a purge, a range drop).
        mutating func set(_ key: [UInt8], _ record: StoredRecord?, durably: Bool) {
            let old = records[key]
            if durably {
                unsynced[key] = nil
            } else if unsynced[key] == nil {
                unsynced[key] = Durable(record: old)
            }
            merkle.update(
                old: old.map { MerkleEntry(key: key, record: $0) },
                new: record.map { MerkleEntry(key: key, record: $0) })
            records[key] = record
        }
    }

    let state = Mutex(State())
    /// When an applied write survives a crash (`InMemoryStore+Crash.swift`): with `sync`, at once.
    public let durability: Durability
    public let keyspaceID: UInt32
    /// Keyspace 0's store, which holds the hints and every keyspace's metadata; nil in itself. Held
    /// weakly: keyspace 0's store holds its views (a strong reference both ways kept every simulated
    /// node's data alive after its run).
    weak let rootStore: InMemoryStore?

    /// Keyspace 0's store for a view; nil in keyspace 0's own (and for a view that outlived it).
    var root: InMemoryStore? { rootStore }
    /// In keyspace 0's store: the views of the other keyspaces (`keyspace(_:)`).
    let views = Mutex<[UInt32: InMemoryStore]>([:])

    public init(durability: Durability = .sync) {
        self.durability = durability
        self.keyspaceID = 0
        self.rootStore = nil
    }

    private init(root: InMemoryStore, keyspace: UInt32) {
        self.durability = root.durability
        self.keyspaceID = keyspace
        self.rootStore = root
    }

    public func apply(key: [UInt8], record: StoredRecord) throws(StorageError) -> ApplyOutcome {
        try validate(key: key, record: record)
        return try state.withLock { (state) throws(StorageError) -> ApplyOutcome in
            guard !state.closed else { throw .closed }
            if let kept = ApplyOutcome.withoutWriting(over: state.records[key]?.version, offered: record.version) {
                return kept
            }
            state.set(key, record, durably: durability == .sync)
            return .applied
        }
    }

    public func get(key: [UInt8]) throws(StorageError) -> StoredRecord? {
        try state.withLock { (state) throws(StorageError) -> StoredRecord? in
            guard !state.closed else { throw .closed }
            return state.records[key]
        }
    }

    /// Everything is in memory: always `get(key:)`'s answer.
    public func getFromMemory(key: [UInt8]) throws(StorageError) -> StoredRecord?? {
        .some(try get(key: key))
    }

    public func metadata(_ name: String) throws(StorageError) -> [UInt8]? {
        try checkOpen()
        return try (root ?? self).state.withLock { (state) throws(StorageError) -> [UInt8]? in
            guard !state.closed else { throw .closed }
            return state.metadata[metadataName(name, keyspace: keyspaceID)]
        }
    }

    public func setMetadata(_ name: String, _ value: [UInt8]) throws(StorageError) {
        try validateMetadata(name: name)
        try checkOpen()
        try (root ?? self).state.withLock { (state) throws(StorageError) in
            guard !state.closed else { throw .closed }
            state.metadata[metadataName(name, keyspace: keyspaceID)] = value
        }
    }

    /// Throws `.closed` once this view (a dropped keyspace's) or the store is closed.
    func checkOpen() throws(StorageError) {
        guard !state.withLock({ $0.closed }) else { throw .closed }
    }

    public func setMetadataDurably(_ name: String, _ value: [UInt8]) throws(StorageError) {
        try setMetadata(name, value)
    }

    public func approximateKeyCount() -> UInt64 {
        state.withLock { $0.closed ? 0 : UInt64($0.records.count) }
    }

    public func close() {
        if let root { return root.close() }
        state.withLock { $0.closed = true }
        for view in views.withLock({ Array($0.values) }) { view.state.withLock { $0.closed = true } }
    }
}

extension InMemoryStore: KeyspaceStoring {
    public func keyspace(_ id: UInt32) throws(StorageError) -> InMemoryStore {
        if let root { return try root.keyspace(id) }
        try validate(keyspace: id)
        try checkOpen()
        guard id != 0 else { return self }
        return views.withLock { views in
            if let view = views[id] { return view }
            let view = InMemoryStore(root: self, keyspace: id)
            views[id] = view
            return view
        }
    }

    public func dropKeyspace(_ id: UInt32) throws(StorageError) {
        if let root { return try root.dropKeyspace(id) }
        guard id != 0 else { throw .invalidRecord("the default keyspace cannot be dropped") }
        try validate(keyspace: id)
        try checkOpen()
        let view = views.withLock { $0.removeValue(forKey: id) }
        view?.state.withLock { state in
            state = State()
            state.closed = true
        }
        let prefix = metadataName("", keyspace: id)
        state.withLock { state in state.metadata = state.metadata.filter { !$0.key.hasPrefix(prefix) } }
    }

    public func storedKeyspaces() -> [UInt32] {
        (root ?? self).views.withLock { $0.keys.sorted() }
    }

    public func everyKeyspace() -> [(id: UInt32, view: any KeyspaceStoring)] {
        let root = root ?? self
        guard (try? root.checkOpen()) != nil else { return [] }
        let views = root.views.withLock { $0.values.sorted { $0.keyspaceID < $1.keyspaceID } }
        return ([root] + views).map { ($0.keyspaceID, $0) }
    }
}
