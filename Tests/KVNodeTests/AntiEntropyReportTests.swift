import Testing

@testable import KVNode

/// A repair over several keyspaces sums their reports: each keyspace's figures, and its time (the
/// passes run one after another), which was left out: `kvctl repair` said "in 0 ms".
@Suite struct AntiEntropyReportTests {
    @Test func summedReportsAddTheirDurations() {
        var first = AntiEntropyReport()
        first.rangesCompared = 3
        first.duration = .milliseconds(120)
        var second = AntiEntropyReport()
        second.rangesCompared = 2
        second.keysReceived = 7
        second.duration = .milliseconds(80)
        var whole = AntiEntropyReport()
        whole.add(first)
        whole.add(second)
        #expect(whole.rangesCompared == 5 && whole.keysReceived == 7)
        #expect(whole.duration == .milliseconds(200))
    }
}
