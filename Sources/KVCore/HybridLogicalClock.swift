/// A hybrid logical clock (Kulkarni et al.): timestamps that follow the wall clock when it moves
/// forward, never go backwards when it does not, and move past every timestamp this process has
/// seen from others.
///
/// The clock holds no time source: callers pass the physical time in, so the simulator can drive it
/// with skewed and jumping clocks and the production code with the system clock.
public struct HybridLogicalClock: Sendable {
    /// The last timestamp issued or observed.
    public private(set) var last: UInt64 = 0

    public init(last: UInt64 = 0) {
        self.last = last
    }

    /// Packs milliseconds and a counter into one timestamp.
    public static func pack(millis: UInt64, counter: UInt16) -> UInt64 {
        (millis << 16) | UInt64(counter)
    }

    /// A new timestamp, greater than every one issued or observed so far.
    ///
    /// Never traps: at the very end of the timestamp space (reachable only by observing a timestamp
    /// no real clock makes, which `isWithin(_:maxOffset:of:)` lets callers refuse) it stays there.
    ///
    /// - Parameter physicalMillis: the wall clock, in milliseconds since the Unix epoch.
    public mutating func now(physicalMillis: UInt64) -> UInt64 {
        let physical = HybridLogicalClock.pack(millis: physicalMillis & 0xFFFF_FFFF_FFFF, counter: 0)
        last = physical > last ? physical : (last < .max ? last + 1 : last)
        return last
    }

    /// Whether a timestamp from another process is at most `maxOffset` ahead of this process's wall
    /// clock (`physicalMillis`, whole milliseconds counted). A timestamp further ahead is not a clock
    /// reading but damage or an attack: observed, it would drag every later timestamp along
    /// (CockroachDB's `--max-offset`).
    public static func isWithin(_ remote: UInt64, maxOffset: Duration, of physicalMillis: UInt64) -> Bool {
        let (limit, overflow) = (physicalMillis & 0xFFFF_FFFF_FFFF).addingReportingOverflow(
            maxOffset.wholeMillisecondsClamped)
        return overflow || remote >> 16 <= limit
    }

    /// Moves the clock past a timestamp seen in a message from another process.
    public mutating func observe(_ remote: UInt64) {
        if remote > last {
            last = remote
        }
    }
}
