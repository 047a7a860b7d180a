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
}
