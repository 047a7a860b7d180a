import KVCore
import Testing

/// `TransferProgress`: the share of a transfer's tokens received, its ETA, and why it has none.
struct TransferProgressTests {
    /// A key whose token is as close as can be found to `fraction` of the way through `span`.
    static func key(at fraction: Double, of span: TokenRangeSpan) -> [UInt8] {
        var best: (key: [UInt8], error: Double) = ([], 2)
        for index in 0..<4096 {
            let key = Array("k\(index)".utf8)
            let offset = Double(Token(key: key).value &- span.start) / Double(span.width)
            if span.contains(Token(key: key)), abs(offset - fraction) < best.error {
                best = (key, abs(offset - fraction))
            }
        }
        return best.key
    }

    @Test func shareCountsDoneRangesWholeAndOthersUpToTheirLastKey() {
        let half = UInt64(1) << 63
        // Two halves of the ring, the second wrapping past 0 (start > end).
        let first = TokenRangeSpan(start: 0, end: half)
        let second = TokenRangeSpan(start: half, end: 0)
        var done = RangeTransfer.Progress(range: first)
        done.done = true
        var partial = RangeTransfer.Progress(range: second)
        partial.after = Self.key(at: 0.5, of: second)
        let share = TransferProgress.share(of: [done, partial])
        #expect(abs(share - 0.75) < 0.01, "\(share)")
        #expect(TransferProgress.share(of: [RangeTransfer.Progress(range: first)]) == 0)
        #expect(TransferProgress.share(of: []) == 0)
    }

    @Test func remainingTimeFollowsTheRateSinceTheStart() throws {
        let progress = TransferProgress(
            rangesDone: 3, rangesTotal: 10, keys: 500, share: 0.5, shareAtStart: 0.25, elapsed: .seconds(30))
        #expect(progress.remaining == .seconds(60))
        #expect(progress.stalled == nil)
        let received = TransferProgress(
            rangesDone: 10, rangesTotal: 10, keys: 900, share: 1, shareAtStart: 0, elapsed: .seconds(30))
        #expect(received.remaining == .zero && received.isReceived)
    }

    @Test func noRateGivesTheReasonNotAGuess() {
        let starting = TransferProgress(
            rangesDone: 0, rangesTotal: 4, keys: 0, share: 0, shareAtStart: 0, elapsed: .seconds(2))
        #expect(starting.remaining == nil && starting.stalled == nil)
        let idle = TransferProgress(
            rangesDone: 0, rangesTotal: 4, keys: 0, share: 0.1, shareAtStart: 0.1, elapsed: .seconds(45))
        #expect(idle.remaining == nil)
        #expect(idle.stalled == "nothing received in 45 s")
        let failing = TransferProgress(
            rangesDone: 1, rangesTotal: 4, keys: 10, share: 0.3, shareAtStart: 0.1, elapsed: .seconds(5),
            failure: "1:2 from n3: timed out")
        #expect(failing.stalled == "retrying 1:2 from n3: timed out")
    }

    /// A node's figures are bounded: shares beyond 0...1 or NaN, a start past the share, counts out
    /// of range, a negative time.
    @Test func hostileFiguresAreBounded() {
        let progress = TransferProgress(
            rangesDone: 99, rangesTotal: -1, keys: .max, share: .nan, shareAtStart: 7, elapsed: .seconds(-3))
        #expect(progress.rangesTotal == 0 && progress.rangesDone == 0)
        #expect(progress.share == 0 && progress.shareAtStart == 0 && progress.elapsed == .zero)
        #expect(progress.remaining == nil)
        let tiny = TransferProgress(
            rangesDone: 0, rangesTotal: 1, keys: 0, share: 1e-12, shareAtStart: 0, elapsed: .seconds(1_000_000))
        #expect(tiny.remaining == .seconds(1_000_000_000), "capped")
    }
}
