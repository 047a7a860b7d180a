/// How far a node is in receiving the ranges of a membership change, when it should be done, and,
/// when it does not move, why: the node reports the figures (`Admin` stats), `kvctl status` shows
/// them, and both read them through this one value.
///
/// Progress is measured in tokens, not records: keys hash uniformly over the token space and a range
/// streams in token order, so the share of its tokens up to the last key received is the share of
/// its records received, although nobody knows how many records there are.
public struct TransferProgress: Sendable, Hashable {
    /// Ranges received whole, and all the ranges the node receives.
    public var rangesDone: Int
    public var rangesTotal: Int
    /// Records received so far, over all ranges.
    public var keys: UInt64
    /// The share of the ranges' tokens received (0...1).
    public var share: Double
    /// `share` when the node began (or, after a restart, resumed) receiving, and the time since.
    public var shareAtStart: Double
    public var elapsed: Duration
    /// The last failure of a range still being retried (`START:END: reason`), if any.
    public var failure: String?

    /// How long a transfer may receive nothing before it counts as stalled.
    public static let stallAfter: Duration = .seconds(10)

    /// Shares and counts are bounded here (a node's figures are a peer's numbers): shares to 0...1,
    /// counts to ≥ 0, the elapsed time to ≥ 0.
    public init(
        rangesDone: Int, rangesTotal: Int, keys: UInt64, share: Double, shareAtStart: Double, elapsed: Duration,
        failure: String? = nil
    ) {
        self.rangesTotal = max(0, rangesTotal)
        self.rangesDone = min(max(0, rangesDone), self.rangesTotal)
        self.keys = keys
        self.share = Self.bounded(share)
        self.shareAtStart = min(Self.bounded(shareAtStart), self.share)
        self.elapsed = max(.zero, elapsed)
        self.failure = failure
    }

    /// Whether every range arrived (what is left is verifying them and reporting).
    public var isReceived: Bool { rangesTotal > 0 && rangesDone == rangesTotal }

    /// The share received per second since the start; nil before anything arrived.
    public var sharePerSecond: Double? {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let gained = share - shareAtStart
        guard seconds > 0, gained > 0 else { return nil }
        return gained / seconds
    }

    /// The time left at the rate observed since the start: zero once every range arrived, nil while
    /// there is no rate to go by (see ``stalled``).
    public var remaining: Duration? {
        if isReceived { return .zero }
        guard let rate = sharePerSecond else { return nil }
        let seconds = min((1 - share) / rate, 1e9)
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }

    /// Why there is no ETA, in words, when there is none: a range whose pull keeps failing, or nothing
    /// received for ``stallAfter``; nil while it moves (or was just started).
    public var stalled: String? {
        if isReceived { return nil }
        if let failure { return "retrying \(failure)" }
        guard sharePerSecond == nil, elapsed >= Self.stallAfter else { return nil }
        return "nothing received in \(elapsed.components.seconds) s"
    }

    /// The share of the tokens of `ranges` received: a whole range when it is done, else up to the
    /// token of the last key it applied.
    public static func share(of ranges: [RangeTransfer.Progress]) -> Double {
        var total = 0.0
        var received = 0.0
        for progress in ranges {
            let span = progress.range
            let width = Double(span.width)
            total += width
            if progress.done {
                received += width
            } else if let after = progress.after {
                // Offsets past the start, wrapping as the span does; the last key's token is in it.
                let offset = Token(key: after).value &- span.start
                received += min(Double(offset), width)
            }
        }
        return total > 0 ? received / total : 0
    }

    private static func bounded(_ share: Double) -> Double {
        share.isFinite ? min(max(share, 0), 1) : 0
    }
}

/// `kvctl status --json`'s `transfer` object: the figures, the share as a fraction (0...1), the
/// seconds since the node began receiving, `etaSeconds` (absent while there is no rate) and
/// `stalled` (absent while it moves).
extension TransferProgress: Encodable {
    private enum CodingKeys: String, CodingKey {
        case rangesDone, rangesTotal, keys, share, shareAtStart, elapsedSeconds, etaSeconds, stalled, failure
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(rangesDone, forKey: .rangesDone)
        try container.encode(rangesTotal, forKey: .rangesTotal)
        try container.encode(keys, forKey: .keys)
        try container.encode(share, forKey: .share)
        try container.encode(shareAtStart, forKey: .shareAtStart)
        try container.encode(Self.seconds(elapsed), forKey: .elapsedSeconds)
        try container.encodeIfPresent(remaining.map(Self.seconds), forKey: .etaSeconds)
        try container.encodeIfPresent(stalled, forKey: .stalled)
        try container.encodeIfPresent(failure, forKey: .failure)
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
