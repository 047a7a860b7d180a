import KVCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What the `data` families hold, by keyspace and key, as the store last read or wrote it: the
/// header of the key's record (version, tombstone, expiry), which a write compares with and takes out
/// of its Merkle segment, or that the key holds no record. A write that finds its key here skips
/// RocksDB's read of the current record, which under writes to keys written lately was the largest
/// part of a node's put: a search of the memtable's skip list, which every overwrite makes longer
/// (docs/benchmarks.md, "The current headers in memory").
///
/// The rule that keeps it true: every write to a `data` family updates the key's entry before its
/// writer lets go of the key's lock stripe (`RocksDBStore.apply`, the tombstone purge, a range's
/// delete), and a dropped keyspace's entries go under every stripe. An entry is only ever what
/// RocksDB holds; a key not here is read from RocksDB as before. Nothing survives a close, so a
/// restart, a restore or a crash starts empty.
///
/// Sets of `ways` entries; the sets of one stripe (`setsPerStripe`, chosen by the token's low bits)
/// are touched only by a holder of that stripe (`LockStripes.index(forSegment:)` of the key's
/// segment), hence no lock of its own and `@unchecked Sendable`. A full set drops the entry used
/// least lately. Keys longer than `keyBytesMax` are never kept. 65,536 entries of 104 bytes: 6.8 MB a
/// node, shared by its keyspaces.
final class HeaderCache: @unchecked Sendable {
    static let keyBytesMax = 64
    static let setsPerStripe = 8
    static let ways = 2

    private struct Entry {
        var filled = false
        /// Whether the key holds a record (else the fields below are unused).
        var present = false
        /// The way of its set used last.
        var recent = false
        var tombstone = false
        var keyLength: UInt8 = 0
        var keyspace: UInt32 = 0
        var hlc: UInt64 = 0
        var writer: UInt64 = 0
        var expiresAtMillis: UInt64 = 0
        var key: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)

        var header: RecordCodec.Header? {
            present
                ? (version: Version(hlc: hlc, writer: writer), tombstone: tombstone, expiresAtMillis: expiresAtMillis)
                : nil
        }
    }

    private static let keyOffset = MemoryLayout<Entry>.offset(of: \Entry.key)!
    private static let count = LockStripes.count * setsPerStripe * ways

    private let entries: UnsafeMutablePointer<Entry>

    init() {
        entries = .allocate(capacity: Self.count)
        entries.initialize(repeating: Entry(), count: Self.count)
    }

    deinit {
        entries.deinitialize(count: Self.count)
        entries.deallocate()
    }

    /// What `key` of `keyspace` holds, if known: `.some(nil)` when it holds no record, nil when not
    /// known. The caller holds the stripe of the key's segment.
    func header(keyspace: UInt32, key: [UInt8], token: Token) -> RecordCodec.Header?? {
        guard let index = find(keyspace: keyspace, key: key, token: token) else { return nil }
        touch(index)
        return .some(entries[index].header)
    }

    /// Records that `key` of `keyspace` holds a record with `header` (nil: no record), as RocksDB now
    /// has it. The caller holds the stripe of the key's segment.
    func remember(_ header: RecordCodec.Header?, keyspace: UInt32, key: [UInt8], token: Token) {
        guard key.count <= Self.keyBytesMax else { return }
        let index = find(keyspace: keyspace, key: key, token: token) ?? replaced(in: set(of: token))
        entries[index].filled = true
        entries[index].keyspace = keyspace
        entries[index].keyLength = UInt8(key.count)
        key.withUnsafeBytes { key in
            guard let base = key.baseAddress else { return }
            (UnsafeMutableRawPointer(entries + index) + Self.keyOffset).copyMemory(from: base, byteCount: key.count)
        }
        entries[index].present = header != nil
        entries[index].tombstone = header?.tombstone ?? false
        entries[index].hlc = header?.version.hlc ?? 0
        entries[index].writer = header?.version.writer ?? 0
        entries[index].expiresAtMillis = header?.expiresAtMillis ?? 0
        touch(index)
    }

    /// Forgets every key of `keyspace` (a dropped keyspace). The caller holds every stripe.
    func forget(keyspace: UInt32) {
        for index in 0..<Self.count where entries[index].filled && entries[index].keyspace == keyspace {
            entries[index] = Entry()
        }
    }

    /// Forgets every key. The caller holds every stripe.
    func forgetAll() {
        for index in 0..<Self.count { entries[index] = Entry() }
    }

    /// The first entry of `token`'s set (internal for tests).
    func set(of token: Token) -> Int {
        let stripe = LockStripes.index(forSegment: MerkleSegments.segment(of: token))
        return (stripe * Self.setsPerStripe + Int(token.value % UInt64(Self.setsPerStripe))) * Self.ways
    }

    private func find(keyspace: UInt32, key: [UInt8], token: Token) -> Int? {
        guard key.count <= Self.keyBytesMax else { return nil }
        let first = set(of: token)
        return key.withUnsafeBytes { key -> Int? in
            for index in first..<first + Self.ways {
                let entry = entries + index
                guard entry.pointee.filled, entry.pointee.keyspace == keyspace,
                    Int(entry.pointee.keyLength) == key.count
                else { continue }
                if key.isEmpty || memcmp(UnsafeRawPointer(entry) + Self.keyOffset, key.baseAddress!, key.count) == 0 {
                    return index
                }
            }
            return nil
        }
    }

    /// The entry of the set starting at `first` to fill: an empty one, else the one used least lately.
    private func replaced(in first: Int) -> Int {
        let ways = first..<first + Self.ways
        return ways.first { !entries[$0].filled } ?? ways.first { !entries[$0].recent } ?? first
    }

    private func touch(_ index: Int) {
        let first = index - index % Self.ways
        for other in first..<first + Self.ways { entries[other].recent = other == index }
    }
}
