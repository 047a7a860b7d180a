/// A token range cut at every segment boundary it crosses: its *slots*, in clockwise order from the
/// range's start. `proto-spec/MERKLE.md` specifies this cut; `MerkleSegments` and `MerkleTree` share it.
///
/// Every slot is a whole segment except, possibly, the first (when the range does not start at a
/// segment's first token) and the last (when it does not end at a segment's last token). A range
/// inside one segment is one slot. A whole ring that does not start on a segment boundary has
/// 2^20 + 1 slots: its first and last are the two ends of the same segment.
///
/// Arithmetic is done on offsets from `range.start` (1 is the first token of the range, `width` the
/// last), in `UInt128` since a whole ring is 2^64 tokens wide.
struct SegmentSlots: Sendable, Hashable {
    static let segmentWidth: UInt128 = 1 << MerkleSegments.tokenShift

    let range: TokenRangeSpan
    /// Tokens in the range.
    let width: UInt128
    /// The segment of the range's first token.
    let firstSegment: Int
    /// Offset of the last token of the first slot.
    let firstSlotEnd: UInt128
    /// Number of slots, 1 to 2^20 + 1.
    let count: Int

    init(_ range: TokenRangeSpan) {
        self.range = range
        width = range.width
        let firstToken = range.start &+ 1
        firstSegment = MerkleSegments.segment(of: Token(firstToken))
        let segmentLast = UInt64(firstSegment) << UInt64(MerkleSegments.tokenShift) | MerkleSegments.tokenMask
        firstSlotEnd = UInt128(segmentLast &- range.start)  // 1 ... 2^44
        if width <= firstSlotEnd {
            count = 1
        } else {
            let rest = width - firstSlotEnd
            count = 1 + Int((rest + Self.segmentWidth - 1) / Self.segmentWidth)
        }
    }

    /// Offset of the token before slot `index` (0 for the first slot).
    func lowerOffset(_ index: Int) -> UInt128 {
        index == 0 ? 0 : firstSlotEnd + UInt128(index - 1) * Self.segmentWidth
    }

    /// Offset of the last token of slot `index`.
    func upperOffset(_ index: Int) -> UInt128 {
        min(firstSlotEnd + UInt128(index) * Self.segmentWidth, width)
    }

    /// The tokens of slots `first ..< end`, as a span.
    func span(_ slots: Range<Int>) -> TokenRangeSpan {
        precondition(!slots.isEmpty && slots.lowerBound >= 0 && slots.upperBound <= count, "slots out of range")
        return TokenRangeSpan(
            start: range.start &+ UInt64(truncatingIfNeeded: lowerOffset(slots.lowerBound)),
            end: range.start &+ UInt64(truncatingIfNeeded: upperOffset(slots.upperBound - 1)))
    }

    /// Whether slot `index` is a whole segment.
    func isWhole(_ index: Int) -> Bool {
        upperOffset(index) - lowerOffset(index) == Self.segmentWidth
    }

    /// The segment slot `index` lies in.
    func segment(_ index: Int) -> Int {
        (firstSegment + index) % MerkleSegments.segmentCount
    }
}
