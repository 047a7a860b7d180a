import KVCore
import Testing

struct LatencyTrackerTests {
    @Test func answersNothingUntilEnoughSamples() {
        var tracker = LatencyTracker()
        for _ in 1..<LatencyTracker.samplesMinDefault {
            tracker.record(.milliseconds(5))
            #expect(tracker.percentile(0.99) == nil)
        }
        tracker.record(.milliseconds(5))
        #expect(tracker.percentile(0.99) == .milliseconds(5))
    }

    @Test func percentilesUseNearestRank() {
        var tracker = LatencyTracker()
        for millis in (1...100).reversed() {
            tracker.record(.milliseconds(millis))
        }
        #expect(tracker.count == 100)
        #expect(tracker.percentile(0.99) == .milliseconds(99))
        #expect(tracker.percentile(0.5) == .milliseconds(50))
        #expect(tracker.percentile(1) == .milliseconds(100))
        #expect(tracker.percentile(0) == .milliseconds(1))
    }

    @Test func keepsOnlyTheLastCapacitySamples() {
        var tracker = LatencyTracker(capacity: 4, samplesMin: 2)
        for millis in [900, 800, 1, 2, 3, 4] {
            tracker.record(.milliseconds(millis))
        }
        #expect(tracker.count == 4)
        #expect(tracker.percentile(1) == .milliseconds(4))
        #expect(tracker.percentile(0) == .milliseconds(1))
    }

    /// High quantiles are selected in one pass, the others sorted: both give the nearest rank of the
    /// sorted window, with repeated samples too.
    @Test func selectionAgreesWithSorting() {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<200 {
            let capacity = [1, 2, 7, 128, 300][round % 5]
            var tracker = LatencyTracker(capacity: capacity, samplesMin: 1)
            var recorded: [Duration] = []
            for _ in 0..<Int.random(in: 1...(2 * capacity), using: &generator) {
                let sample = Duration.microseconds(Int.random(in: 0...50, using: &generator))
                tracker.record(sample)
                recorded.append(sample)
            }
            let window = recorded.suffix(capacity).sorted()
            for p in [0, 0.5, 0.9, 0.95, 0.99, 0.999, 1] {
                let rank = max(Int((p * Double(window.count)).rounded(.up)), 1)
                #expect(tracker.percentile(p) == window[rank - 1], "p\(p) of \(window)")
            }
        }
    }
}
