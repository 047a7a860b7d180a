import KVCore

extension TokenRangeSpan {
    /// The span's tokens as closed intervals, in the order a scan clockwise from `start` meets them:
    /// `start+1 … end`, or, when the span wraps past zero (the whole ring too), `start+1 … 2^64-1`
    /// then `0 … end`. An ordered scan of `data` reads one interval at a time, since `data` keys begin
    /// with the token.
    var tokenIntervals: [ClosedRange<UInt64>] {
        let first = start &+ 1
        if start == end && first == 0 { return [0 ... .max] }
        if start != end && first <= end { return [first...end] }
        return [first ... .max, 0...end]
    }
}
