import KVCore
import Testing

/// Clocks from peers are hostile until bounded: no arithmetic on them may trap (issue 16).
struct HybridLogicalClockBoundsTests {
    @Test func aClockReadingFurtherAheadThanTheOffsetIsNotWithinIt() {
        let now: UInt64 = 1_700_000_000_000
        let justWithin = HybridLogicalClock.pack(millis: now + 500, counter: 9)
        let justBeyond = HybridLogicalClock.pack(millis: now + 501, counter: 0)
        #expect(HybridLogicalClock.isWithin(justWithin, maxOffset: .milliseconds(500), of: now))
        #expect(!HybridLogicalClock.isWithin(justBeyond, maxOffset: .milliseconds(500), of: now))
        #expect(!HybridLogicalClock.isWithin(.max, maxOffset: .milliseconds(500), of: now))
        #expect(HybridLogicalClock.isWithin(.max, maxOffset: .seconds(Int64.max), of: now), "no arithmetic traps")
    }

    @Test func theClockNeverTrapsAtTheEndOfItsSpace() {
        var clock = HybridLogicalClock(last: .max - 1)
        #expect(clock.now(physicalMillis: 0) == .max)
        #expect(clock.now(physicalMillis: 0) == .max)
        clock.observe(.max)
        #expect(clock.now(physicalMillis: .max) == .max)
    }

    /// A node answering a client with clock 2^64−1 used to exhaust the client's clock: its next stamp
    /// trapped. With the SDK's bound, such a clock is not observed; one within the offset is.
    @Test func aClientIgnoresNodeClocksBeyondItsBound() {
        let now: UInt64 = 1_700_000_000_000
        var clock = ClientClock(
            writer: 1, bound: ClientClock.Bound(maxOffset: .milliseconds(500), wallMillis: { now }))
        clock.observe(.max)
        clock.observe(HybridLogicalClock.pack(millis: now + 501, counter: 0))
        #expect(clock.refusedAhead == 2)
        let near = HybridLogicalClock.pack(millis: now + 400, counter: 3)
        clock.observe(near)
        #expect(clock.refusedAhead == 2)
        let stamp = clock.stamp(wallMillis: now)
        #expect(stamp.hlc > near && stamp.hlc >> 16 == now + 400)
    }

    /// The bound is a `Duration`; one too long for 64-bit milliseconds saturates instead of trapping,
    /// and then bounds nothing.
    @Test func aHugeClientBoundAcceptsAnyClockWithoutTrapping() {
        var clock = ClientClock(writer: 1, bound: ClientClock.Bound(maxOffset: .seconds(Int64.max), wallMillis: { 0 }))
        clock.observe(.max - 1)
        #expect(clock.refusedAhead == 0 && clock.last == .max - 1)
    }
}
