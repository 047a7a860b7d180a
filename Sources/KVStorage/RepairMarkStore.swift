public import KVCore

/// A token range that one replica is known to have missed writes of, and that anti-entropy must
/// therefore compare and repair.
public struct RepairMark: Sendable, Hashable, CustomStringConvertible {
    /// The node id of the replica that missed writes.
    public var replica: String
    /// The token range (a ring vnode range, see `Ring.range(containing:)`).
    public var range: TokenRangeSpan
    /// Wall clock, in milliseconds since the Unix epoch, when the range was first marked (marking it
    /// again does not move it): how long the replica has been known to lag.
    public var firstMarkedMillis: UInt64

    public init(replica: String, range: TokenRangeSpan, firstMarkedMillis: UInt64) {
        self.replica = replica
        self.range = range
        self.firstMarkedMillis = firstMarkedMillis
    }

    public var description: String {
        "\(replica) \(range) since \(firstMarkedMillis) ms"
    }
}

/// The durable list of token ranges due for anti-entropy, per replica.
///
/// A node marks a range when it knows a replica missed a write there and no hint will carry it: the
/// hint was refused because the target's queue was full, or it expired before the target came back.
/// Anti-entropy reads the marks, repairs those ranges first, and clears them. Marks survive a restart
/// (`RocksDBStore` keeps them in its `meta` column family).
///
/// Calls that write block, like `ReplicaStore`: run them on a thread pool. Implementations are
/// thread-safe, and keep the marks in memory as well, so `rangesDue()` does no I/O.
///
/// The number of marks is bounded by the ring: one per (replica, vnode range) at most.
public protocol RepairMarkStore: AnyObject, Sendable {
    /// Marks `range` due for anti-entropy on `replica`, with the store's durability. Idempotent: a
    /// range already marked for that replica keeps its one mark and its first time.
    ///
    /// - Returns: true when the mark is new, false when the range was already due.
    /// - Throws: `.invalidRecord` for an empty replica id or one longer than `Limits.nameBytesMax`
    ///   UTF-8 bytes; `.closed` once closed; what the engine reports.
    @discardableResult
    func markDue(replica: String, range: TokenRangeSpan, atMillis: UInt64) throws(StorageError) -> Bool

    /// Every mark, ordered by replica id (UTF-8 bytes), then range start, then range end. Empty once
    /// closed.
    func rangesDue() -> [RepairMark]

    /// Removes the mark of `range` on `replica` (after anti-entropy repaired it), with the store's
    /// durability. Clearing a range that is not marked is not an error.
    func clearDue(replica: String, range: TokenRangeSpan) throws(StorageError)
}

/// The bytes of repair marks in the `meta` column family.
///
/// Key, all integers big-endian: `"antientropy.due/" (16 ASCII bytes) · replica length (u16) ·
/// replica (UTF-8) · range start (u64) · range end (u64)`. The prefix keeps marks apart from the
/// named metadata values (`setMetadata` refuses names that start with it); the length prefix keeps
/// `n1` apart from `n10`.
///
/// Value (format 1): `format (u8, 1) · firstMarkedMillis (u64)`, 9 bytes.
///
/// Anything that does not decode is `StorageError.corruption`. `docs/storage.md` repeats this.
package enum RepairMarkCodec {
    /// The key prefix of every mark, in ASCII.
    package static let prefixName = "antientropy.due/"
    package static let prefix = Array(prefixName.utf8)
    package static let formatV1: UInt8 = 1
    package static let valueBytes = 9

    package static func storageKey(replica: [UInt8], range: TokenRangeSpan) -> [UInt8] {
        var bytes = prefix
        bytes.reserveCapacity(prefix.count + 2 + replica.count + 16)
        bytes.append(UInt8(truncatingIfNeeded: replica.count >> 8))
        bytes.append(UInt8(truncatingIfNeeded: replica.count))
        bytes.append(contentsOf: replica)
        StorageBytes.appendBigEndian(range.start, to: &bytes)
        StorageBytes.appendBigEndian(range.end, to: &bytes)
        return bytes
    }

    package static func encodeValue(firstMarkedMillis: UInt64) -> [UInt8] {
        var bytes = [formatV1]
        StorageBytes.appendBigEndian(firstMarkedMillis, to: &bytes)
        return bytes
    }

    /// Decodes a stored mark; a malformed key or value throws `.corruption`.
    package static func decode(
        key: UnsafeRawBufferPointer,
        value: UnsafeRawBufferPointer
    ) throws(StorageError) -> RepairMark {
        guard key.starts(with: prefix), key.count >= prefix.count + 2 else {
            throw .corruption("repair mark key of \(key.count) bytes has no replica length")
        }
        let lengthOffset = prefix.count
        let replicaLength = Int(key[lengthOffset]) << 8 | Int(key[lengthOffset + 1])
        let replicaOffset = lengthOffset + 2
        guard replicaLength > 0, key.count == replicaOffset + replicaLength + 16 else {
            throw .corruption("repair mark key of \(key.count) bytes does not fit its \(replicaLength)-byte replica")
        }
        guard let replica = String(validating: key[replicaOffset..<(replicaOffset + replicaLength)], as: UTF8.self)
        else {
            throw .corruption("repair mark key has a replica that is not UTF-8")
        }
        guard value.count == valueBytes, value[0] == formatV1 else {
            throw .corruption("repair mark value of \(value.count) bytes is not format \(formatV1)")
        }
        let rangeOffset = replicaOffset + replicaLength
        return RepairMark(
            replica: replica,
            range: TokenRangeSpan(
                start: StorageBytes.bigEndian(key, at: rangeOffset),
                end: StorageBytes.bigEndian(key, at: rangeOffset + 8)),
            firstMarkedMillis: StorageBytes.bigEndian(value, at: 1))
    }

    package static func decode(key: [UInt8], value: [UInt8]) throws(StorageError) -> RepairMark {
        try StorageBytes.withBuffers(key, value) { (key, value) throws(StorageError) in
            try decode(key: key, value: value)
        }
    }

}

/// Checks the replica id of a mark, alike for both stores; returns its UTF-8 bytes.
func validateMark(replica: String) throws(StorageError) -> [UInt8] {
    let bytes = Array(replica.utf8)
    guard !bytes.isEmpty, bytes.count <= Limits.nameBytesMax else {
        throw .invalidRecord("repair mark replica of \(bytes.count) bytes is not 1...\(Limits.nameBytesMax) bytes")
    }
    return bytes
}

/// Refuses metadata names that would land among the repair marks, alike for both stores.
func validateMetadata(name: String) throws(StorageError) {
    if name.utf8.starts(with: RepairMarkCodec.prefix) {
        throw .invalidRecord(
            "metadata names starting with '\(RepairMarkCodec.prefixName)' are reserved for repair marks")
    }
    if name.hasPrefix(KeyspaceMetadata.prefix) {
        throw .invalidRecord(
            "metadata names starting with '\(KeyspaceMetadata.prefix)' are reserved for keyspaces' own names")
    }
    if name.hasPrefix(MerkleCodec.reservedPrefix) {
        throw .invalidRecord(
            "metadata names starting with '\(MerkleCodec.reservedPrefix)' are reserved for Merkle segments")
    }
}

/// The marks of a store in memory, keyed by storage key, shared by both stores.
struct RepairMarks: Sendable {
    private var marks: [[UInt8]: RepairMark] = [:]

    func contains(_ storageKey: [UInt8]) -> Bool {
        marks[storageKey] != nil
    }

    mutating func insert(_ mark: RepairMark, storageKey: [UInt8]) {
        marks[storageKey] = mark
    }

    mutating func remove(_ storageKey: [UInt8]) {
        marks[storageKey] = nil
    }

    mutating func removeAll() {
        marks.removeAll()
    }

    /// Ordered by replica bytes, then start, then end.
    var sorted: [RepairMark] {
        marks.values.sorted { lhs, rhs in
            if !lhs.replica.utf8.elementsEqual(rhs.replica.utf8) {
                return lhs.replica.utf8.lexicographicallyPrecedes(rhs.replica.utf8)
            }
            return (lhs.range.start, lhs.range.end) < (rhs.range.start, rhs.range.end)
        }
    }
}
