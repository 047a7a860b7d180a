import KVCore
import Testing

/// Issue 21: a read asks the clearly faster replicas first (the seed's "R=2 waits for the second
/// fastest"), keeps the preference order among replicas of one speed, and measures a forgotten
/// replica again.
@Suite struct ReplicaResponseTimesTests {
    static let start = ContinuousClock.now

    static func times(_ latencies: [String: Duration], at now: ContinuousClock.Instant = start) -> ReplicaResponseTimes
    {
        var times = ReplicaResponseTimes()
        for (node, latency) in latencies { times.record(node, latency, at: now) }
        return times
    }

    @Test func clearlyFasterReplicasGoFirst() {
        // The delays of scripts/bench.sh delays: n1 5 ms, n2 10 ms, n3 20 ms.
        let times = Self.times(["n1": .milliseconds(5), "n2": .milliseconds(10), "n3": .milliseconds(20)])
        #expect(times.fastestFirst(["n3", "n2", "n1"], at: Self.start) == ["n1", "n2", "n3"])
        #expect(times.fastestFirst(["n2", "n3", "n1"], at: Self.start) == ["n1", "n2", "n3"])
    }

    @Test func replicasOfOneSpeedKeepThePreferenceOrder() {
        // 1.10, 1.15 and 1.12 ms: one quarter octave (two averages either side of a band's edge can
        // still fall in two bands: the ordering is by band, not by a tolerance around each pair).
        let times = Self.times(["n1": .microseconds(1_100), "n2": .microseconds(1_150), "n3": .microseconds(1_120)])
        #expect(times.fastestFirst(["n2", "n3", "n1"], at: Self.start) == ["n2", "n3", "n1"])
        #expect(times.fastestFirst(["n3", "n1", "n2"], at: Self.start) == ["n3", "n1", "n2"])
    }

    @Test func anUnmeasuredOrForgottenReplicaGoesFirstToBeMeasured() {
        var times = Self.times(["n1": .milliseconds(5), "n2": .milliseconds(20)])
        #expect(times.fastestFirst(["n2", "n1", "n3"], at: Self.start) == ["n3", "n1", "n2"])
        // n1 answered again 9 s later, n2 not: after 11 s n2 is forgotten and measured anew.
        times.record("n1", .milliseconds(5), at: Self.start + .seconds(9))
        let later = Self.start + .seconds(11)
        #expect(times.average(of: "n2", at: later) == nil)
        #expect(times.fastestFirst(["n1", "n2"], at: later) == ["n2", "n1"])
        times.record("n2", .milliseconds(20), at: later)
        #expect(times.fastestFirst(["n2", "n1"], at: later) == ["n1", "n2"])
    }

    @Test func theAverageFollowsNewAnswers() {
        var times = Self.times(["n1": .milliseconds(1), "n2": .milliseconds(8)])
        #expect(times.fastestFirst(["n2", "n1"], at: Self.start) == ["n1", "n2"])
        // n1 slows down to 40 ms: after a few dozen answers it is behind n2.
        for step in 1...40 { times.record("n1", .milliseconds(40), at: Self.start + .milliseconds(step)) }
        #expect(times.fastestFirst(["n1", "n2"], at: Self.start + .milliseconds(40)) == ["n2", "n1"])
        let average = times.average(of: "n1", at: Self.start + .milliseconds(40))!
        #expect(average > .milliseconds(30) && average < .milliseconds(40))
    }

    @Test func bandsAreQuarterOctaves() {
        #expect(ReplicaResponseTimes.band(1) == 0)
        #expect(ReplicaResponseTimes.band(1_024) == 40)
        #expect(ReplicaResponseTimes.band(1_024 * 1.2) == 41)
        #expect(ReplicaResponseTimes.band(1_024 * 1.5) == 42)
        #expect(ReplicaResponseTimes.band(1_024 * 1.9) == 43)
        #expect(ReplicaResponseTimes.band(2_048) == 44)
        // Hostile or absurd latencies (a clock jump): no trap.
        #expect(ReplicaResponseTimes.band(Double(Int64.max)) == 252)
    }

    /// The order agrees with a stable sort by band (the list's order within a band) for random lists
    /// and averages, forgotten ones included.
    @Test func theOrderIsAStableSortByBand() {
        var random = SystemRandomNumberGenerator()
        let start = ContinuousClock.now
        for _ in 0..<500 {
            var times = ReplicaResponseTimes()
            let replicas = (0..<Int.random(in: 0...9, using: &random)).map { "n\($0)" }.shuffled(using: &random)
            for replica in replicas where Bool.random(using: &random) {
                let age = Duration.seconds(Int.random(in: 0...12, using: &random))
                times.record(replica, .microseconds(Int.random(in: 1...4000, using: &random)), at: start - age)
            }
            let expected = replicas.enumerated().sorted { left, right in
                func band(_ replica: String) -> Int {
                    guard let average = times.average(of: replica, at: start) else { return .min }
                    return ReplicaResponseTimes.band(Double(average.wholeNanoseconds))
                }
                return (band(left.element), left.offset) < (band(right.element), right.offset)
            }.map(\.element)
            #expect(times.fastestFirst(replicas, at: start) == expected, "\(replicas)")
        }
    }
}
