public import KVCore

/// A store that keeps its Merkle segments (`MerkleSegments`) up to date with every write, so that
/// anti-entropy digests a range without reading its records (`proto-spec/MERKLE.md`).
///
/// Calls block like `ReplicaStore`'s; implementations are thread-safe. Digests and listings are not
/// snapshots: a write that lands during a call may or may not be counted, which a comparison
/// tolerates (it only descends needlessly, or lists a key whose versions have since converged).
public protocol MerkleStore: AnyObject, Sendable {
    /// The XOR of the entry hashes (`MerkleEntry.hash`) of every record in `range`, tombstones included.
    ///
    /// Whole segments come from memory in O(log 2^20); the at most two segments the range cuts are
    /// read (about keys / 2^20 records each).
    func merkleDigest(of range: TokenRangeSpan) throws(StorageError) -> UInt64

    /// The entries of every record in `range`, tombstones included, clockwise from the range's start
    /// (`MerkleEntry.clockwiseOrder(from:)`), as one ordered scan of `data` reads them. Unbounded:
    /// ask for a leaf of a `MerkleTree` (one segment at most), not a whole range.
    func merkleListing(of range: TokenRangeSpan) throws(StorageError) -> [MerkleEntry]

    /// A copy of the segment hashes, for tests and diagnostics.
    func merkleSegments() throws(StorageError) -> MerkleSegments

    /// Recomputes every segment hash from a full scan of the records and stores the result, replacing
    /// the incremental one: recovery, for segments found missing or damaged. Writes wait meanwhile.
    @discardableResult
    func rebuildMerkleSegments() throws(StorageError) -> MerkleRebuild
}

extension MerkleStore {
    /// This store's answer to `query` about `tree` (the co-replica's side of a `MerkleComparison`);
    /// nil if the query addresses no node of the tree (see `MerkleTree.isValid(_:)`).
    public func merkleAnswer(to query: MerkleQuery, in tree: MerkleTree) throws(StorageError) -> MerkleAnswer? {
        try tree.answer(
            query,
            digest: { (span) throws(StorageError) -> UInt64 in try merkleDigest(of: span) },
            listing: { (span) throws(StorageError) -> [MerkleEntry] in try merkleListing(of: span) })
    }
}

/// What a rebuild of the Merkle segments did.
public struct MerkleRebuild: Sendable, Hashable, CustomStringConvertible {
    /// Why it ran, in words (segments missing, damaged, or asked for).
    public var reason: String
    /// Records scanned.
    public var records: Int
    /// Segments with a non-zero hash afterwards.
    public var segments: Int
    /// Wall time taken.
    public var duration: Duration

    public init(reason: String, records: Int, segments: Int, duration: Duration) {
        self.reason = reason
        self.records = records
        self.segments = segments
        self.duration = duration
    }

    public var description: String {
        "rebuilt Merkle segments (\(reason)): \(records) records, \(segments) segments in \(duration)"
    }
}

/// The bytes of the Merkle segments in the `meta` column family (`docs/storage.md`).
///
/// - `merkle.segment/` (15 ASCII bytes) · segment (u32 big-endian) → hash (u64 big-endian). A segment
///   whose hash is zero has no key.
/// - `merkle.state` → `0x01`: the segment keys are complete and consistent with `data`. Written by a
///   rebuild, in the same batch as the segments; a folder without it (new, or written before Merkle
///   segments existed) or with another value is rebuilt at open.
///
/// Metadata names starting with `merkle.` are reserved: `setMetadata` refuses them.
package enum MerkleCodec {
    package static let reservedPrefix = "merkle."
    package static let segmentPrefix = Array("merkle.segment/".utf8)
    package static let stateKey = Array("merkle.state".utf8)
    package static let stateValid: [UInt8] = [1]

    package static func segmentKey(_ segment: Int) -> [UInt8] {
        withSegmentKey(segment, after: []) { Array($0) }
    }

    /// `prefix` (a keyspace's), then the key of `segment`, handed to `body` without an allocation of
    /// its own for a short prefix (this runs for every segment every write touches).
    package static func withSegmentKey<Result>(
        _ segment: Int, after prefix: [UInt8], _ body: (UnsafeRawBufferPointer) -> Result
    ) -> Result {
        withUnsafeTemporaryAllocation(byteCount: prefix.count + segmentPrefix.count + 4, alignment: 1) { buffer in
            buffer.copyBytes(from: prefix)
            UnsafeMutableRawBufferPointer(rebasing: buffer[prefix.count...]).copyBytes(from: segmentPrefix)
            buffer.storeBytes(
                of: UInt32(truncatingIfNeeded: segment).bigEndian, toByteOffset: prefix.count + segmentPrefix.count,
                as: UInt32.self)
            return body(UnsafeRawBufferPointer(buffer))
        }
    }

    package static func encodeHash(_ hash: UInt64) -> [UInt8] {
        withEncodedHash(hash) { Array($0) }
    }

    /// The stored value of a segment's `hash`, handed to `body` without an allocation.
    package static func withEncodedHash<Result>(_ hash: UInt64, _ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        withUnsafeBytes(of: hash.bigEndian, body)
    }

    /// The segment and hash of a stored segment key; nil if either does not decode.
    package static func decode(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> (Int, UInt64)? {
        guard key.count == segmentPrefix.count + 4, key.starts(with: segmentPrefix), value.count == 8 else {
            return nil
        }
        let segment = key[segmentPrefix.count...].reduce(0) { $0 << 8 | Int($1) }
        guard segment < MerkleSegments.segmentCount else { return nil }
        return (segment, value.reduce(0) { $0 << 8 | UInt64($1) })
    }
}
