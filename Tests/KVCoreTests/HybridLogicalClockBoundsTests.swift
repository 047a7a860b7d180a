import KVCore
import Testing

/// Clocks from peers are hostile until bounded: no arithmetic on them may trap (issue 16).
struct HybridLogicalClockBoundsTests {
    @Test func aClockReadingFurtherAheadThanTheOffsetIsNotWithinIt() {
        let now: UInt64 = 1_700_000_000_000
        let justWithin = HybridLogicalClock.pack(millis: now + 500, counter: 9)
        let justBeyond = HybridLogicalClock.pack(millis: now + 501, counter: 0)
        #expect(HybridLogicalClock.isWithin(justWithin, maxOffsetMillis: 500, of: now))
        #expect(!HybridLogicalClock.isWithin(justBeyond, maxOffsetMillis: 500, of: now))
        #expect(!HybridLogicalClock.isWithin(.max, maxOffsetMillis: 500, of: now))
        #expect(HybridLogicalClock.isWithin(.max, maxOffsetMillis: .max, of: now), "no arithmetic traps")
    }

    @Test func theClockNeverTrapsAtTheEndOfItsSpace() {
        var clock = HybridLogicalClock(last: .max - 1)
        #expect(clock.now(physicalMillis: 0) == .max)
        #expect(clock.now(physicalMillis: 0) == .max)
        clock.observe(.max)
        #expect(clock.now(physicalMillis: .max) == .max)
    }
}
