/// What anti-entropy knows of one record: its key, version and whether it is a tombstone (never the
/// value: two records with the same key and version hold the same write).
///
/// `hash` is the record's contribution to the Merkle digests: both replicas of a range must compute
/// it identically, so its byte layout is specified in `proto-spec/MERKLE.md`.
public struct MerkleEntry: Sendable, Hashable, CustomStringConvertible {
    public var key: [UInt8]
    public var version: Version
    public var tombstone: Bool

    public init(key: [UInt8], version: Version, tombstone: Bool) {
        self.key = key
        self.version = version
        self.tombstone = tombstone
    }

    /// The entry of `record`, stored under `key`.
    public init(key: [UInt8], record: StoredRecord) {
        self.init(key: key, version: record.version, tombstone: record.tombstone)
    }

    /// The key's ring position.
    public var token: Token { Token(key: key) }

    /// The entry's hash, `MerkleEntry.hash(key:version:tombstone:)`.
    public var hash: UInt64 { Self.hash(key: key, version: version, tombstone: tombstone) }

    /// `XXH64(key · hlc · writer · flags, seed: 0)`: the key bytes, then the version's `hlc` and
    /// `writer` as big-endian `u64`s, then one flags byte (bit 0: tombstone). The key is everything
    /// but the last 17 bytes, so no two entries share an input.
    ///
    /// A digest is the XOR of its entries' hashes: an entry's hash is XORed in when the record is
    /// stored and out when it is replaced or purged, in any order.
    public static func hash(key: some Collection<UInt8>, version: Version, tombstone: Bool) -> UInt64 {
        // Hashed from a temporary buffer (on the stack for a short key): this runs twice per write
        // on every replica.
        let count = key.count
        return withUnsafeTemporaryAllocation(byteCount: count + 17, alignment: 1) { buffer in
            _ = buffer.initializeMemory(as: UInt8.self, from: key)
            buffer.storeBytes(of: version.hlc.bigEndian, toByteOffset: count, as: UInt64.self)
            buffer.storeBytes(of: version.writer.bigEndian, toByteOffset: count + 8, as: UInt64.self)
            buffer[count + 16] = tombstone ? 1 : 0
            return XXH64.hash(UnsafeRawBufferPointer(buffer), seed: 0)
        }
    }

    /// Orders entries as a `data` scan lists them: by token, then by key bytes.
    public static func tokenOrder(_ lhs: MerkleEntry, _ rhs: MerkleEntry) -> Bool {
        let (left, right) = (lhs.token, rhs.token)
        if left != right { return left < right }
        return lhs.key.lexicographicallyPrecedes(rhs.key)
    }

    /// Orders entries as a scan of `range` lists them: clockwise from the range's start (by token,
    /// wrapping past zero), then by key bytes.
    public static func clockwiseOrder(from range: TokenRangeSpan) -> @Sendable (MerkleEntry, MerkleEntry) -> Bool {
        let first = range.start &+ 1
        return { lhs, rhs in
            let (left, right) = (lhs.token.value &- first, rhs.token.value &- first)
            if left != right { return left < right }
            return lhs.key.lexicographicallyPrecedes(rhs.key)
        }
    }

    /// `key-as-hex@version`, plus `(tombstone)`.
    public var description: String {
        let hex = key.prefix(16).map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined()
        return "\(hex)\(key.count > 16 ? "…" : "")@\(version)\(tombstone ? " (tombstone)" : "")"
    }
}
