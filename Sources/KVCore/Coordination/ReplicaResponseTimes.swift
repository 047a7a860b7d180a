/// How fast each replica has answered lately, and the order in which a read asks a key's replicas:
/// the clearly faster ones first, as Cassandra's dynamic snitch does, so that a read at R waits for
/// the R fastest replicas rather than the first R of the preference list.
///
/// Each replica's response time is a moving average (each answer weighs `weight`). Averages are
/// grouped in speed bands a quarter octave wide (a factor about 1.19); replicas of one band keep their preference-list
/// order, so noise between equally fast replicas does not pull every read to one of them. An average
/// not refreshed for `memory` is forgotten: that replica goes first again, once, and is measured anew
/// (a replica that was slow, then left alone by reads, would otherwise never be asked again).
public struct ReplicaResponseTimes: Sendable {
    /// The weight of a new answer in a replica's average.
    public static let weight = 0.1
    /// Bands are quarter octaves: averages within a factor 2^(1/4) ≈ 1.19 of each other can share one.
    static let bandsPerOctave = 4
    /// 2^(1/4), 2^(2/4), 2^(3/4): where a band's significand crosses into the next quarter.
    private static let quarterOctaves = [1.189_207_115, 1.414_213_562, 1.681_792_831]
    /// How long an average is kept without a new answer.
    public static let memory: Duration = .seconds(10)

    private struct Average: Sendable {
        var nanoseconds: Double
        var updated: ContinuousClock.Instant
    }

    private var averages: [String: Average] = [:]

    public init() {}

    /// Counts one answer of `node` that took `latency`, received at `now`.
    public mutating func record(_ node: String, _ latency: Duration, at now: ContinuousClock.Instant) {
        let nanoseconds = Double(max(1, latency.wholeNanoseconds))
        if let old = kept(node, at: now) {
            averages[node] = Average(
                nanoseconds: old.nanoseconds + Self.weight * (nanoseconds - old.nanoseconds), updated: now)
        } else {
            averages[node] = Average(nanoseconds: nanoseconds, updated: now)
        }
    }

    /// `node`'s average response time at `now`; nil when it has none or it is forgotten.
    public func average(of node: String, at now: ContinuousClock.Instant) -> Duration? {
        kept(node, at: now).map { .nanoseconds(Int64($0.nanoseconds)) }
    }

    /// `node`'s average unless it is forgotten (not refreshed for `memory`).
    private func kept(_ node: String, at now: ContinuousClock.Instant) -> Average? {
        guard let average = averages[node], now - average.updated < Self.memory else { return nil }
        return average
    }

    /// `replicas` (a preference list) with the faster bands first, each band in the list's order;
    /// a replica without an average (never measured, or forgotten) ahead of all, to be measured.
    public func fastestFirst(_ replicas: [String], at now: ContinuousClock.Instant) -> [String] {
        // Run for every read, so it allocates only the answer: an insertion sort (bands on the
        // stack) moves a replica only past slower bands, so equal bands keep the list's order. A
        // preference list holds N replicas, a handful.
        var ordered: [String] = []
        ordered.reserveCapacity(replicas.count)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: replicas.count) { bands in
            for (count, replica) in replicas.enumerated() {
                let band = kept(replica, at: now).map { Self.band($0.nanoseconds) } ?? .min
                var index = count
                while index > 0, bands[index - 1] > band {
                    bands[index] = bands[index - 1]
                    index -= 1
                }
                bands[index] = band
                ordered.insert(replica, at: index)
            }
        }
        return ordered
    }

    /// The quarter octave `nanoseconds` (at least 1) falls in: floor(4 × log2), from its binary
    /// exponent and significand.
    package static func band(_ nanoseconds: Double) -> Int {
        let significand = nanoseconds.significand
        var quarters = 0
        for threshold in quarterOctaves where significand >= threshold { quarters += 1 }
        return Int(nanoseconds.exponent) * bandsPerOctave + quarters
    }
}
