import KVCore
import Testing

@Suite struct DurationTests {
    @Test func wholeNanosecondsTruncatesAndSaturates() {
        #expect(Duration.seconds(2).wholeNanoseconds == 2_000_000_000)
        #expect((Duration.milliseconds(1) + .nanoseconds(7)).wholeNanoseconds == 1_000_007)
        #expect(Duration(secondsComponent: 0, attosecondsComponent: 999_999_999).wholeNanoseconds == 0)
        #expect(Duration.seconds(Int64.max / 2).wholeNanoseconds == .max)
    }
}
