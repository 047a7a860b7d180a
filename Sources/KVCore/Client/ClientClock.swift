/// The client's version source: a hybrid logical clock plus the writer id. Shared by all operations
/// of one client.
///
/// Rules:
/// - ``stamp(wallMillis:)`` returns a version whose `hlc` is strictly greater than every stamp this
///   clock issued and every clock it observed, whatever the wall clock does: when the wall clock runs
///   behind (skew) or jumps backwards, the logical counter advances instead. Versions are therefore
///   strictly increasing per client, and a write stamped after a reply was observed is ordered after
///   every version that replica reported.
/// - ``observe(_:)`` moves the clock up to a remote clock (a replica's `clock`, or the `hlc` of a
///   version it holds); it never moves the clock backwards.
/// - Every version carries ``writer``, so two clients never stamp equal versions.
/// - With a ``Bound``, a remote clock further ahead of the client's wall clock than the bound's
///   offset is not observed (counted in ``refusedAhead``): a node that answers with a clock near 2^64
///   cannot exhaust the client's clock, nor push its versions into a future the other nodes refuse.
///
/// No clock is read inside: the driver passes the wall clock in (the bound's too), so the simulator
/// can skew it.
public struct ClientClock: Sendable {
    /// How far ahead of the client's wall clock an observed clock may be.
    public struct Bound: Sendable {
        /// The largest offset accepted; compared in whole milliseconds (saturating, so that a huge
        /// offset means "any clock" rather than a trap).
        public var maxOffset: Duration
        /// The client's wall clock, in milliseconds since the Unix epoch.
        public var wallMillis: @Sendable () -> UInt64

        public init(maxOffset: Duration, wallMillis: @escaping @Sendable () -> UInt64) {
            self.maxOffset = maxOffset
            self.wallMillis = wallMillis
        }
    }

    /// The id that breaks ties between equal timestamps of different writers.
    public let writer: UInt64
    private var clock: HybridLogicalClock
    private let bound: Bound?
    /// Remote clocks not observed because they were too far ahead (with a bound).
    public private(set) var refusedAhead = 0

    /// - Parameters:
    ///   - writer: this client's writer id (the SDK draws it at random, never 0).
    ///   - last: the greatest timestamp already issued or observed, e.g. from a previous run.
    ///   - bound: how far ahead a remote clock may be to be observed; nil: any clock is.
    public init(writer: UInt64, last: UInt64 = 0, bound: Bound? = nil) {
        self.writer = writer
        self.clock = HybridLogicalClock(last: last)
        self.bound = bound
    }

    /// The greatest timestamp issued or observed so far; every later stamp is greater.
    public var last: UInt64 { clock.last }

    /// A new version, strictly greater than every stamp issued and every clock observed.
    ///
    /// - Parameter wallMillis: the wall clock, in milliseconds since the Unix epoch. It may run
    ///   behind, ahead, or backwards; only the logical part of the stamp moves then.
    /// - Precondition: the clock has not reached the end of the 64-bit timestamp space.
    public mutating func stamp(wallMillis: UInt64) -> Version {
        let previous = clock.last
        precondition(previous < UInt64.max, "the hybrid logical clock is exhausted")
        let hlc = clock.now(physicalMillis: wallMillis)
        assert(hlc > previous, "stamp \(hlc) is not greater than \(previous)")
        assert(hlc == clock.last)
        return Version(hlc: hlc, writer: writer)
    }

    /// Moves the clock past a timestamp seen from another process: a reply's `clock`, or the `hlc`
    /// of a version a replica holds. An older timestamp changes nothing; one beyond the bound is not
    /// observed.
    public mutating func observe(_ remoteClock: UInt64) {
        if let bound, remoteClock > clock.last,
            !HybridLogicalClock.isWithin(remoteClock, maxOffset: bound.maxOffset, of: bound.wallMillis())
        {
            refusedAhead += 1
            return
        }
        let previous = clock.last
        clock.observe(remoteClock)
        assert(clock.last >= previous && clock.last >= remoteClock)
    }
}
