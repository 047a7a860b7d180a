/// The wire-protocol versions one side of a connection speaks: every version from `lowest` to
/// `highest` (proto-spec/FRAMES.md, "Version negotiation").
///
/// The compatibility promise is that a release whose highest version is N also speaks N − 1, so a
/// cluster can be upgraded one node at a time. Both sides announce their range in the handshake
/// (`Hello.lowestVersion...protocolVersion`); the accepting side picks the highest version in both
/// (`negotiate(with:)`) and says it in `HelloAck.protocolVersion`. That version then decides what may
/// be sent on the connection, in both directions.
public struct ProtocolRange: Sendable, Hashable, CustomStringConvertible {
    /// The lowest version spoken.
    public let lowest: UInt16
    /// The highest version spoken.
    public let highest: UInt16

    /// A range of versions; nil when it is empty (`lowest > highest`) or names version 0, which no
    /// peer speaks.
    public init?(lowest: UInt16, highest: UInt16) {
        guard lowest > 0, lowest <= highest else { return nil }
        self.lowest = lowest
        self.highest = highest
    }

    /// The range a peer announced in its `Hello`: `highest` is its `protocolVersion`, `lowest` its
    /// `lowestVersion`, absent from a sender that predates version 4 (which speaks one version only).
    ///
    /// A peer's numbers are not trusted: a lowest above the highest, or a zero, is no range (nil), and
    /// the caller refuses the `Hello`.
    public static func announced(highest: UInt16, lowest: UInt16?) -> ProtocolRange? {
        ProtocolRange(lowest: lowest ?? highest, highest: highest)
    }

    /// The highest version both ranges hold; nil when they do not meet.
    public func negotiate(with peer: ProtocolRange) -> UInt16? {
        let top = min(highest, peer.highest)
        guard top >= max(lowest, peer.lowest) else { return nil }
        return top
    }

    /// Whether `version` is in the range.
    public func speaks(_ version: UInt16) -> Bool {
        lowest <= version && version <= highest
    }

    /// The range to announce on a second attempt after a peer refused this one with
    /// `unsupportedVersion`: the same without its highest version; nil when nothing is left.
    ///
    /// A peer of version 3 refuses any `Hello` whose `protocolVersion` is not 3, even one whose
    /// range holds 3 (it reads only the highest), so a version-4 side that is refused retries once,
    /// announcing `lowest...highest − 1`.
    public var withoutHighest: ProtocolRange? {
        guard highest > lowest else { return nil }
        return ProtocolRange(lowest: lowest, highest: highest - 1)
    }

    /// The range capped at `highestMax` (a `--protocol-max` setting); nil when that leaves nothing.
    public func capped(at highestMax: UInt16) -> ProtocolRange? {
        ProtocolRange(lowest: lowest, highest: min(highest, highestMax))
    }

    /// "3...4", or "3" for a single version.
    public var description: String {
        lowest == highest ? "\(highest)" : "\(lowest)...\(highest)"
    }
}
