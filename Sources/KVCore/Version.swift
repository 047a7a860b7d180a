/// The version of one write: a hybrid-logical-clock timestamp plus the writer's id.
///
/// `hlc` packs 48 bits of milliseconds since the Unix epoch above a 16-bit logical counter, so
/// comparing two `hlc` values compares (milliseconds, counter). Versions are totally ordered by
/// (`hlc`, `writer`): two writers never produce equal versions, so every replica keeps the same
/// winner whatever order writes arrive in (last writer wins).
public struct Version: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Milliseconds (high 48 bits) and logical counter (low 16 bits).
    public var hlc: UInt64
    /// The id of the writer that stamped this version; breaks ties between equal `hlc`s.
    public var writer: UInt64

    public init(hlc: UInt64, writer: UInt64) {
        self.hlc = hlc
        self.writer = writer
    }

    /// The smallest version: older than every version a writer can produce.
    public static let zero = Version(hlc: 0, writer: 0)

    /// Wall-clock milliseconds part of the timestamp.
    public var millis: UInt64 { hlc >> 16 }
    /// Logical counter part of the timestamp.
    public var counter: UInt16 { UInt16(truncatingIfNeeded: hlc) }

    public static func < (lhs: Version, rhs: Version) -> Bool {
        (lhs.hlc, lhs.writer) < (rhs.hlc, rhs.writer)
    }

    /// `millis.counter@writer`, the form logs and `kvctl get --node` print.
    public var description: String {
        "\(millis).\(counter)@\(String(writer, radix: 16))"
    }
}
