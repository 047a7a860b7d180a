public import KVCore

/// A write held for another replica (hinted handoff).
public struct StoredHint: Sendable, Hashable {
    /// The node id the write is for.
    public var target: String
    /// The key written.
    public var key: [UInt8]
    /// The write itself: version, tombstone flag, value.
    public var record: StoredRecord
    /// Wall clock, in milliseconds since the Unix epoch, when the hint was stored: for expiry.
    public var storedAtMillis: UInt64
    /// The keyspace of `key` (`ClusterMap.keyspaces`); 0: the default keyspace.
    public var keyspace: UInt32

    public init(target: String, key: [UInt8], record: StoredRecord, storedAtMillis: UInt64, keyspace: UInt32 = 0) {
        self.target = target
        self.key = key
        self.record = record
        self.storedAtMillis = storedAtMillis
        self.keyspace = keyspace
    }
}

/// What `HintStore.storeHint(_:queueMax:)` did.
public enum HintStoreOutcome: Sendable, Hashable {
    /// The hint is stored (or replaced the identical hint already stored).
    case stored
    /// The target's queue already holds `queueMax` hints: nothing was written.
    case refusedQueueFull
    /// The hints held for all targets together would take more than `bytesMax` bytes: nothing was
    /// written. (A target that never returns must not fill the disk.)
    case refusedStorageFull
}

/// The identity of one stored hint, as handed out by `HintStore.hints(for:limit:)`.
///
/// Opaque: it holds the hint's storage key (`HintCodec.storageKey`), which both implementations
/// share, so an id is only meaningful to the store that returned it.
public struct HintID: Sendable, Hashable, CustomStringConvertible {
    /// The storage key bytes.
    let bytes: [UInt8]

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    public var description: String {
        "HintID(\(bytes.count) bytes)"
    }
}

/// The durable log of hints a node holds for other replicas (hinted handoff).
///
/// Calls block, like `ReplicaStore`: run them on a thread pool. Implementations are thread-safe.
/// A hint is identified by (target, version, key): storing the same write for the same target again
/// replaces it rather than adding a second copy, and it counts once.
public protocol HintStore: AnyObject, Sendable {
    /// Stores each of `hints` as `storeHint` would have, one after another in order (a hint replacing
    /// one stored just before in the same call replaces it), in one write: one fsync in `.sync` mode,
    /// however many. A hint `storeHint` would have thrown for answers that error and writes nothing of
    /// its own; a failure of the write throws, and none of the call's hints is stored then.
    func storeHints(_ hints: [StoredHint], queueMax: Int, bytesMax: Int) throws(StorageError)
        -> [Result<HintStoreOutcome, StorageError>]

    /// `storeHints` without the fsync of `.sync` mode: the hints are in the log when it returns, and
    /// durable once `whenHintsDurable` calls back, which shares the fsyncs of the data writes. The
    /// default stores them with `storeHints`, for a store whose writes are as durable as they get when
    /// they return.
    func storeHintsUnsynced(_ hints: [StoredHint], queueMax: Int, bytesMax: Int) throws(StorageError)
        -> [Result<HintStoreOutcome, StorageError>]

    /// Calls `completion` once every hint stored before this call is durable: nil then, or the error
    /// of the fsync that failed. The default calls it at once.
    func whenHintsDurable(_ completion: @escaping @Sendable (StorageError?) -> Void)

    /// The oldest-versioned hints for `target` that come after `after` (from the first when nil), at
    /// most `limit`, in version order (hlc, then writer, then key bytes), each with its id. A corrupt
    /// stored hint throws `.corruption`.
    ///
    /// `after` lets a replayer go on from where it stopped instead of stepping again over the hints it
    /// deleted, which RocksDB keeps as tombstones until a compaction: a scan from the start of a queue
    /// that was just replayed would walk over every one of them.
    func hints(for target: String, after: HintID?, limit: Int) throws(StorageError) -> [(id: HintID, hint: StoredHint)]

    /// Deletes one hint (after its target acknowledged it, or when it expired). Not fsynced on its
    /// own, whatever the durability: a delete lost in a power cut only means the hint is replayed once
    /// more, which the target answers as already applied or superseded. Deleting a missing id is not
    /// an error.
    func deleteHint(_ id: HintID) throws(StorageError)

    /// The number of hints queued per target; targets with none are absent. Empty once closed.
    func hintQueueSizes() -> [String: Int]

    /// The bytes all hints take (as `HintCodec.storedBytes` counts them); 0 once closed.
    func hintBytesHeld() -> Int
}

extension HintStore {
    public func storeHintsUnsynced(_ hints: [StoredHint], queueMax: Int, bytesMax: Int) throws(StorageError)
        -> [Result<HintStoreOutcome, StorageError>]
    {
        try storeHints(hints, queueMax: queueMax, bytesMax: bytesMax)
    }

    public func whenHintsDurable(_ completion: @escaping @Sendable (StorageError?) -> Void) {
        completion(nil)
    }

    /// Stores `hint` with the store's durability (in `.sync` mode fsynced like data writes), unless
    /// `hint.target` already holds `queueMax` hints: then answers `.refusedQueueFull` and writes
    /// nothing. Replacing a hint already stored (same target, version and key) does not grow the
    /// queue, so it is accepted even when the queue is full. (`storeHints` of one hint.)
    ///
    /// Throws `.invalidRecord` for an empty target or one longer than `Limits.nameBytesMax` UTF-8
    /// bytes, and for keys and values the data store would refuse.
    ///
    /// `bytesMax` bounds the bytes of all targets' hints together (storage key and value, as
    /// `HintCodec.storedBytes` counts them): a hint that would pass it is refused with
    /// `.refusedStorageFull`. Replacing a hint counts only the difference.
    public func storeHint(_ hint: StoredHint, queueMax: Int, bytesMax: Int) throws(StorageError) -> HintStoreOutcome {
        try storeHints([hint], queueMax: queueMax, bytesMax: bytesMax)[0].get()
    }

    /// `storeHint(_:queueMax:bytesMax:)` with no bound on bytes.
    public func storeHint(_ hint: StoredHint, queueMax: Int) throws(StorageError) -> HintStoreOutcome {
        try storeHint(hint, queueMax: queueMax, bytesMax: .max)
    }
}

extension HintStore {
    /// The oldest-versioned hints for `target`, at most `limit`, in version order.
    public func hints(for target: String, limit: Int) throws(StorageError) -> [(id: HintID, hint: StoredHint)] {
        try hints(for: target, after: nil, limit: limit)
    }
}

/// The bytes of the `hints` column family.
///
/// Key, all integers big-endian: `target length (u16) · target (UTF-8) · version hlc (u64) ·
/// version writer (u64) · key bytes [· keyspace (u32)]`. The length prefix keeps targets apart (`n1`
/// never prefixes `n10`'s hints), one prefix scan reads a target's hints in version order, and the
/// same write for the same target always lands on the same key. A hint of a keyspace other than the
/// default ends with the keyspace's id: the value's key length tells the two apart (the rest of the
/// storage key is exactly the key, or the key and 4 bytes), so hints stored before keyspaces existed
/// read unchanged.
///
/// Value (format 1):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | format, `1` |
/// | 1 | 8 | storedAtMillis |
/// | 9 | 1 | flags: bit 0 tombstone, other bits zero |
/// | 10 | 4 | key length (u32), checked against the storage key |
/// | 14 | rest | value bytes (none for a tombstone) |
///
/// Anything that does not decode is `StorageError.corruption`. `docs/storage.md` repeats this.
package enum HintCodec {
    package static let formatV1: UInt8 = 1
    /// Bytes of the value before the record's value bytes.
    package static let valueHeaderBytes = 14
    /// Bytes of the storage key besides target and key: length prefix, hlc, writer.
    package static let keyOverheadBytes = 2 + 8 + 8
    /// Bytes of the keyspace suffix of a hint outside the default keyspace.
    package static let keyspaceBytes = 4

    /// The common prefix of every storage key of `target`.
    package static func prefix(target: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(2 + target.count)
        bytes.append(UInt8(truncatingIfNeeded: target.count >> 8))
        bytes.append(UInt8(truncatingIfNeeded: target.count))
        bytes.append(contentsOf: target)
        return bytes
    }

    package static func storageKey(_ hint: StoredHint) -> [UInt8] {
        let target = Array(hint.target.utf8)
        var bytes = prefix(target: target)
        bytes.reserveCapacity(keyOverheadBytes + target.count + hint.key.count)
        StorageBytes.appendBigEndian(hint.record.version.hlc, to: &bytes)
        StorageBytes.appendBigEndian(hint.record.version.writer, to: &bytes)
        bytes.append(contentsOf: hint.key)
        if hint.keyspace != 0 { StorageBytes.appendBigEndian(hint.keyspace, to: &bytes) }
        return bytes
    }

    /// The bytes one hint takes in the store: its storage key and value (`encodeValue`'s length).
    package static func storedBytes(_ hint: StoredHint) -> Int {
        storedBytes(
            keyBytes: keyOverheadBytes + hint.target.utf8.count + hint.key.count
                + (hint.keyspace != 0 ? keyspaceBytes : 0),
            valueBytes: valueHeaderBytes + hint.record.value.count
                + (hint.record.expiresAtMillis != 0 ? RecordCodec.expiryBytes : 0))
    }

    package static func storedBytes(keyBytes: Int, valueBytes: Int) -> Int {
        keyBytes + valueBytes
    }

    package static func encodeValue(_ hint: StoredHint) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(valueHeaderBytes + hint.record.value.count)
        bytes.append(formatV1)
        StorageBytes.appendBigEndian(hint.storedAtMillis, to: &bytes)
        bytes.append(RecordCodec.flags(hint.record))
        let keyLength = UInt32(hint.key.count)
        for shift in stride(from: 24, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: keyLength >> UInt32(shift)))
        }
        bytes.append(contentsOf: hint.record.value)
        RecordCodec.appendExpiry(hint.record, to: &bytes)
        return bytes
    }

    /// A storage key split into its parts.
    package struct KeyParts {
        package var target: [UInt8]
        package var version: Version
        /// The key, followed by the keyspace's 4 bytes outside the default keyspace (the value's key
        /// length tells which).
        package var key: [UInt8]
    }

    /// Splits a storage key; a malformed one throws `.corruption`.
    package static func decodeKey(_ bytes: UnsafeRawBufferPointer) throws(StorageError) -> KeyParts {
        guard bytes.count >= 2 else {
            throw .corruption("hint key of \(bytes.count) bytes has no target length")
        }
        let targetLength = Int(bytes[0]) << 8 | Int(bytes[1])
        guard targetLength > 0, bytes.count >= 2 + targetLength + 16 else {
            throw .corruption("hint key of \(bytes.count) bytes is too short for its \(targetLength)-byte target")
        }
        let target = Array(bytes[2..<(2 + targetLength)])
        let hlc = StorageBytes.bigEndian(bytes, at: 2 + targetLength, count: 8)
        let writer = StorageBytes.bigEndian(bytes, at: 10 + targetLength, count: 8)
        let key = Array(bytes[(keyOverheadBytes + targetLength)...])
        return KeyParts(target: target, version: Version(hlc: hlc, writer: writer), key: key)
    }

    package static func decodeKey(_ bytes: [UInt8]) throws(StorageError) -> KeyParts {
        let result: Result<KeyParts, StorageError> = bytes.withUnsafeBytes { buffer in
            do throws(StorageError) {
                return .success(try decodeKey(buffer))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Decodes a stored hint from its storage key and value; anything malformed throws `.corruption`.
    package static func decode(
        key storageKey: UnsafeRawBufferPointer,
        value bytes: UnsafeRawBufferPointer
    ) throws(StorageError) -> StoredHint {
        let parts = try decodeKey(storageKey)
        guard let target = String(validating: parts.target, as: UTF8.self) else {
            throw .corruption("hint key has a target that is not UTF-8")
        }
        let (tombstone, expiring) = try RecordCodec.checkHeader(
            bytes, headerBytes: valueHeaderBytes, flagsOffset: 9, what: "hint")
        let keyLength = StorageBytes.bigEndian(bytes, at: 10, count: 4)
        var key = parts.key
        var keyspace: UInt32 = 0
        if keyLength &+ UInt64(keyspaceBytes) == UInt64(key.count) {
            keyspace = key.suffix(keyspaceBytes).reduce(0) { $0 << 8 | UInt32($1) }
            key.removeLast(keyspaceBytes)
            guard keyspace != 0 else { throw .corruption("hint names keyspace 0 in its storage key") }
        }
        guard keyLength == UInt64(key.count) else {
            throw .corruption("hint records a \(keyLength)-byte key but its storage key holds \(parts.key.count)")
        }
        let (value, expiresAtMillis) = RecordCodec.valueAndExpiry(
            bytes, headerBytes: valueHeaderBytes, expiring: expiring)
        let record = StoredRecord(
            version: parts.version, tombstone: tombstone, value: value, expiresAtMillis: expiresAtMillis)
        return StoredHint(
            target: target,
            key: key,
            record: record,
            storedAtMillis: StorageBytes.bigEndian(bytes, at: 1, count: 8),
            keyspace: keyspace
        )
    }

    package static func decode(key: [UInt8], value: [UInt8]) throws(StorageError) -> StoredHint {
        try StorageBytes.withBuffers(key, value) { (key, value) throws(StorageError) in
            try decode(key: key, value: value)
        }
    }

}

/// Checks what every hint store refuses alike, so `RocksDBStore` and `InMemoryStore` agree.
func validate(hint: StoredHint) throws(StorageError) {
    let targetBytes = hint.target.utf8.count
    guard targetBytes > 0, targetBytes <= Limits.nameBytesMax else {
        throw .invalidRecord("hint target of \(targetBytes) bytes is not 1...\(Limits.nameBytesMax) bytes")
    }
    if hint.record.tombstone && !hint.record.value.isEmpty {
        throw .invalidRecord("tombstone hint carries \(hint.record.value.count) value bytes")
    }
    try validate(key: hint.key, record: hint.record)
}

/// Hint counts keyed by the target's UTF-8 bytes (two distinct byte strings can be equal as `String`s),
/// shared by both stores.
struct HintCounts: Sendable {
    private var counts: [[UInt8]: Int] = [:]
    /// The bytes of all targets' hints (`HintCodec.storedBytes`).
    private(set) var bytes = 0

    subscript(target: [UInt8]) -> Int {
        counts[target] ?? 0
    }

    /// `delta` hints more (or fewer) for `target`, taking `bytes` more (or fewer).
    mutating func add(_ delta: Int, bytes: Int = 0, for target: [UInt8]) {
        let count = self[target] + delta
        counts[target] = count > 0 ? count : nil
        self.bytes = max(0, self.bytes + bytes)
    }

    mutating func removeAll() {
        counts.removeAll()
        bytes = 0
    }

    var sizes: [String: Int] {
        Dictionary(counts.map { (String(decoding: $0.key, as: UTF8.self), $0.value) }, uniquingKeysWith: +)
    }
}
