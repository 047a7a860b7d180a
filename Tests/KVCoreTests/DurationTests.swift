import KVCore
import Testing

@Suite struct DurationTests {
    @Test func wholeNanosecondsTruncatesAndSaturates() {
        #expect(Duration.seconds(2).wholeNanoseconds == 2_000_000_000)
        #expect((Duration.milliseconds(1) + .nanoseconds(7)).wholeNanoseconds == 1_000_007)
        #expect(Duration(secondsComponent: 0, attosecondsComponent: 999_999_999).wholeNanoseconds == 0)
        #expect(Duration.seconds(Int64.max / 2).wholeNanoseconds == .max)
    }

    /// Just under the limit, the sub-second part must saturate, not wrap to a small number.
    @Test func wholeNanosecondsSaturatesAtTheEdges() {
        let maxSeconds = Int64.max / 1_000_000_000
        let edge = Duration(secondsComponent: maxSeconds, attosecondsComponent: 999_999_999_999_999_999)
        #expect(edge.wholeNanoseconds == .max)
        #expect(Duration.seconds(-Int64.max / 2).wholeNanoseconds == .min)
    }

    @Test func wholeMillisecondsClampedTruncatesSaturatesAndFloorsAtZero() {
        #expect(Duration.milliseconds(1500).wholeMillisecondsClamped == 1500)
        #expect(Duration.seconds(-3).wholeMillisecondsClamped == 0)
        #expect(Duration.seconds(Int64.max).wholeMillisecondsClamped == .max)
        let maxSeconds = Int64(UInt64.max / 1000)
        let edge = Duration(secondsComponent: maxSeconds, attosecondsComponent: 999_999_999_999_999_999)
        #expect(edge.wholeMillisecondsClamped == .max)
    }
}
