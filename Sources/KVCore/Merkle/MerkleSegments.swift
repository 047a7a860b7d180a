/// The Merkle leaves of one replica: for each of the 2^20 fixed segments of the token space, the XOR
/// of the entry hashes (`MerkleEntry.hash`) of every record the replica stores in that segment.
///
/// A segment is the 2^44 tokens sharing the top 20 bits (`segment = token >> 44`), so segments do not
/// depend on the ring: a membership change never invalidates them. The hashes sit in an XOR Fenwick
/// tree, so that both updating one segment and digesting any run of consecutive segments cost
/// O(log 2^20) = 20 steps. See `proto-spec/MERKLE.md`.
///
/// The tree (8 MiB) is allocated by the first update that changes a hash: an empty store costs
/// nothing. A value type: copies are independent (copy-on-write).
public struct MerkleSegments: Sendable, Equatable, CustomStringConvertible {
    /// Bits of a token that choose its segment.
    public static let segmentBits = 20
    /// Number of segments, 2^20.
    public static let segmentCount = 1 << segmentBits
    /// A token's segment is `token >> tokenShift`.
    public static let tokenShift = 64 - segmentBits
    /// The low bits of a token: its place within its segment.
    static let tokenMask: UInt64 = (1 << UInt64(tokenShift)) - 1

    /// 1-based XOR Fenwick tree over the segment hashes, `segmentCount + 1` long; empty while every
    /// hash is zero.
    private var fenwick: [UInt64] = []

    /// Every segment hash zero: a replica with no records.
    public init() {}

    /// The segments with the given hashes, one per segment (`segmentCount` of them), built in O(2^20).
    public init(segmentHashes: [UInt64]) {
        precondition(segmentHashes.count == Self.segmentCount, "one hash per segment")
        guard segmentHashes.contains(where: { $0 != 0 }) else { return }
        var tree = [UInt64](repeating: 0, count: Self.segmentCount + 1)
        for index in 1...Self.segmentCount {
            tree[index] ^= segmentHashes[index - 1]
            let parent = index + (index & -index)
            if parent <= Self.segmentCount {
                tree[parent] ^= tree[index]
            }
        }
        fenwick = tree
    }

    /// The segments with the given hashes, by segment; absent segments are zero. O(k·log 2^20) for `k`
    /// segments when few are given, O(2^20) otherwise.
    public init(sparseHashes: [Int: UInt64]) {
        guard sparseHashes.count < Self.segmentCount / 32 else {
            var hashes = [UInt64](repeating: 0, count: Self.segmentCount)
            for (segment, hash) in sparseHashes { hashes[segment] = hash }
            self.init(segmentHashes: hashes)
            return
        }
        self.init()
        for (segment, hash) in sparseHashes { xor(hash, intoSegment: segment) }
    }

    /// The segments of a replica holding exactly `entries` (a rebuild from scratch).
    public init(entries: some Sequence<MerkleEntry>) {
        var hashes = [UInt64](repeating: 0, count: Self.segmentCount)
        for entry in entries {
            hashes[Self.segment(of: entry.token)] ^= entry.hash
        }
        self.init(segmentHashes: hashes)
    }

    /// The segment of `token`: its top 20 bits.
    public static func segment(of token: Token) -> Int {
        Int(token.value >> UInt64(tokenShift))
    }

    /// The tokens of `segment`, as a span (start exclusive).
    public static func span(ofSegment segment: Int) -> TokenRangeSpan {
        precondition(segment >= 0 && segment < segmentCount, "no segment \(segment)")
        let first = UInt64(segment) << UInt64(tokenShift)
        return TokenRangeSpan(start: first &- 1, end: first | tokenMask)
    }

    /// The hash of one segment, in O(log 2^20) and about two steps on average (a write reads one
    /// before each update). `fenwick[i]` holds the XOR of the hashes from index `i - lowbit(i) + 1` to
    /// `i`, so the hash at `i` is `fenwick[i]` XOR the nodes that cover `i - lowbit(i) + 1 ..< i`:
    /// the path from `i - 1` down to `i - lowbit(i)`, which a prefix walk from `i - 1` takes and stops
    /// at, instead of two whole prefix walks from the top.
    public subscript(segment: Int) -> UInt64 {
        precondition(segment >= 0 && segment < Self.segmentCount, "no segment \(segment)")
        guard !fenwick.isEmpty else { return 0 }
        let index = segment + 1
        let stop = index - (index & -index)
        var result = fenwick[index]
        var covered = index - 1
        while covered > stop {
            result ^= fenwick[covered]
            covered -= covered & -covered
        }
        return result
    }

    /// Whether every segment hash is zero.
    public var isZero: Bool {
        !fenwick.contains { $0 != 0 }
    }

    /// Every segment hash, in segment order (2^20 of them): for persisting and for tests.
    public var segmentHashes: [UInt64] {
        var hashes = [UInt64](repeating: 0, count: Self.segmentCount)
        guard !fenwick.isEmpty else { return hashes }
        // Undo the construction in `init(segmentHashes:)`, from the top down.
        var tree = fenwick
        for index in stride(from: Self.segmentCount, through: 1, by: -1) {
            let parent = index + (index & -index)
            if parent <= Self.segmentCount {
                tree[parent] ^= tree[index]
            }
        }
        for index in 1...Self.segmentCount {
            hashes[index - 1] = tree[index]
        }
        return hashes
    }

    /// XORs `delta` into the hash of `segment`.
    public mutating func xor(_ delta: UInt64, intoSegment segment: Int) {
        precondition(segment >= 0 && segment < Self.segmentCount, "no segment \(segment)")
        guard delta != 0 else { return }
        if fenwick.isEmpty {
            fenwick = [UInt64](repeating: 0, count: Self.segmentCount + 1)
        }
        var index = segment + 1
        while index <= Self.segmentCount {
            fenwick[index] ^= delta
            index += index & -index
        }
    }

    /// Replaces `old` (nil: the key was absent) by `new` (nil: the record is purged) in their segment.
    ///
    /// Both must be entries of the same key. Replacing an entry by itself changes nothing.
    public mutating func update(old: MerkleEntry?, new: MerkleEntry?) {
        guard let key = new?.key ?? old?.key else { return }
        precondition(old == nil || new == nil || old!.key == new!.key, "old and new entries of different keys")
        xor(Self.delta(old: old, new: new), intoSegment: Self.segment(of: Token(key: key)))
    }

    /// What replacing `old` by `new` XORs into their segment's hash.
    public static func delta(old: MerkleEntry?, new: MerkleEntry?) -> UInt64 {
        (old?.hash ?? 0) ^ (new?.hash ?? 0)
    }

    /// The XOR of the hashes of `count` consecutive segments from `first`, wrapping past the last
    /// segment, in O(log 2^20).
    public func xor(segmentsFrom first: Int, count: Int) -> UInt64 {
        precondition(first >= 0 && first < Self.segmentCount, "no segment \(first)")
        precondition(count >= 0 && count <= Self.segmentCount, "bad segment count \(count)")
        let end = first + count
        if end <= Self.segmentCount {
            return prefix(end) ^ prefix(first)
        }
        return prefix(Self.segmentCount) ^ prefix(first) ^ prefix(end - Self.segmentCount)
    }

    /// The digest of `range`: the XOR of the entry hashes of every record in it.
    ///
    /// Whole segments come from the tree; `partial` is called for the (at most two) pieces of the
    /// range that cover only part of a segment, and must answer the XOR of the entry hashes of the
    /// records in that piece, which only a scan of the records can tell. See `MerkleRangeSplit`.
    public func digest<Failure: Error>(
        of range: TokenRangeSpan,
        partial: (TokenRangeSpan) throws(Failure) -> UInt64
    ) throws(Failure) -> UInt64 {
        let split = MerkleRangeSplit(range)
        var result = xor(segmentsFrom: split.wholeSegmentsStart, count: split.wholeSegmentCount)
        for piece in split.partialPieces {
            result ^= try partial(piece)
        }
        return result
    }

    /// XOR of the hashes of segments `0 ..< count`.
    private func prefix(_ count: Int) -> UInt64 {
        guard !fenwick.isEmpty else { return 0 }
        var result: UInt64 = 0
        var index = count
        while index > 0 {
            result ^= fenwick[index]
            index -= index & -index
        }
        return result
    }

    /// How many segments are non-zero (not the 2^20 hashes: test failures print this).
    public var description: String {
        "MerkleSegments(\(segmentHashes.lazy.filter { $0 != 0 }.count) non-zero of \(Self.segmentCount))"
    }

    public static func == (lhs: MerkleSegments, rhs: MerkleSegments) -> Bool {
        switch (lhs.fenwick.isEmpty, rhs.fenwick.isEmpty) {
        case (true, true): true
        case (true, false): rhs.isZero
        case (false, true): lhs.isZero
        case (false, false): lhs.fenwick == rhs.fenwick
        }
    }
}

/// A token range as its digest is computed: a run of whole segments, plus at most two pieces that
/// cover part of a segment (the range's first and last slots, see `proto-spec/MERKLE.md`).
public struct MerkleRangeSplit: Sendable, Hashable {
    /// The first whole segment (meaningless when `wholeSegmentCount` is zero).
    public var wholeSegmentsStart: Int
    /// Number of whole segments, consecutive from `wholeSegmentsStart`, wrapping past the last.
    public var wholeSegmentCount: Int
    /// The pieces covering part of a segment, in clockwise order: 0, 1 or 2.
    public var partialPieces: [TokenRangeSpan]

    public init(_ range: TokenRangeSpan) {
        let slots = SegmentSlots(range)
        var first = 0
        var end = slots.count
        var pieces: [TokenRangeSpan] = []
        if !slots.isWhole(0) {
            pieces.append(slots.span(0..<1))
            first = 1
        }
        if slots.count > 1 && !slots.isWhole(slots.count - 1) {
            pieces.append(slots.span((slots.count - 1)..<slots.count))
            end = slots.count - 1
        }
        wholeSegmentsStart = slots.segment(first)
        wholeSegmentCount = max(0, end - first)
        partialPieces = pieces
    }
}
