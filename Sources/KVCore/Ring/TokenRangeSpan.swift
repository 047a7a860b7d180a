/// A clockwise span of the ring: the tokens `t` with `start < t <= end`, wrapping past `UInt64.max`.
///
/// Start is exclusive and end inclusive because a vnode token owns the range that ends at it. A span
/// whose `start` equals its `end` is the whole ring (a ring of one token, or a node that replicates
/// everything).
///
/// Not called `TokenRange` because KVWire generates a `TokenRange` (the wire struct, same fields and
/// meaning); a module importing both would find the name ambiguous.
public struct TokenRangeSpan: Sendable, Hashable, CustomStringConvertible {
    /// Exclusive.
    public var start: UInt64
    /// Inclusive.
    public var end: UInt64

    public init(start: UInt64, end: UInt64) {
        self.start = start
        self.end = end
    }

    /// The number of tokens in the span, from 1 to 2^64.
    public var width: UInt128 {
        start == end ? 1 << 64 : UInt128(end &- start)
    }

    public func contains(_ token: Token) -> Bool {
        if start == end { return true }
        let offset = token.value &- start
        return offset != 0 && offset <= end &- start
    }

    /// Whether the two spans share a token: one holds the other's first token.
    public func overlaps(_ other: TokenRangeSpan) -> Bool {
        contains(Token(other.start &+ 1)) || other.contains(Token(start &+ 1))
    }

    /// Whether every token of `other` lies in this span.
    public func contains(_ other: TokenRangeSpan) -> Bool {
        if start == end { return true }
        let offset = UInt128(other.start &- start)
        return offset + other.width <= width
    }

    public var description: String {
        "(\(Token(start)), \(Token(end))]"
    }

    /// The tokens of `spans` that no span of `removed` holds, as spans cut at every boundary of
    /// either list and merged where they touch, ascending by end.
    public static func subtracting(_ removed: [TokenRangeSpan], from spans: [TokenRangeSpan]) -> [TokenRangeSpan] {
        let cuts = Array(Set((spans + removed).flatMap { [$0.start, $0.end] })).sorted()
        guard !cuts.isEmpty else { return [] }
        var result: [TokenRangeSpan] = []
        for (index, end) in cuts.enumerated() {
            let piece = TokenRangeSpan(start: cuts[index == 0 ? cuts.count - 1 : index - 1], end: end)
            guard spans.contains(where: { $0.contains(piece) }), !removed.contains(where: { $0.overlaps(piece) })
            else { continue }
            if let last = result.last, last.end == piece.start, last.start != last.end {
                result[result.count - 1].end = piece.end
            } else {
                result.append(piece)
            }
        }
        if result.count > 1, result[result.count - 1].end == result[0].start {
            result[0].start = result.removeLast().start
        }
        return result
    }
}
