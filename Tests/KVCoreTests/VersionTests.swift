import KVCore
import Testing

@Test func versionsOrderByTimestampThenWriter() {
    let a = Version(hlc: HybridLogicalClock.pack(millis: 10, counter: 0), writer: 9)
    let b = Version(hlc: HybridLogicalClock.pack(millis: 10, counter: 1), writer: 1)
    let c = Version(hlc: HybridLogicalClock.pack(millis: 10, counter: 1), writer: 2)
    #expect(a < b)
    #expect(b < c)
    #expect(Version.zero < a)
    #expect(b.millis == 10 && b.counter == 1)
}

@Test func clockFollowsWallTimeWhenItMovesForward() {
    var clock = HybridLogicalClock()
    let first = clock.now(physicalMillis: 1000)
    let second = clock.now(physicalMillis: 2000)
    #expect(first == HybridLogicalClock.pack(millis: 1000, counter: 0))
    #expect(second == HybridLogicalClock.pack(millis: 2000, counter: 0))
}

@Test func clockNeverGoesBackwardsWhenWallTimeDoes() {
    var clock = HybridLogicalClock()
    var previous = clock.now(physicalMillis: 5000)
    for physical: UInt64 in [4000, 5000, 100, 5000, 4999] {
        let next = clock.now(physicalMillis: physical)
        #expect(next > previous)
        previous = next
    }
}

@Test func clockMovesPastObservedTimestamps() {
    var clock = HybridLogicalClock()
    _ = clock.now(physicalMillis: 1000)
    let remote = HybridLogicalClock.pack(millis: 9000, counter: 7)
    clock.observe(remote)
    #expect(clock.now(physicalMillis: 1001) > remote)
    clock.observe(HybridLogicalClock.pack(millis: 1, counter: 0))
    #expect(clock.last > remote)
}

@Test(arguments: Role.allCases)
func roleNamesRoundTrip(_ role: Role) {
    #expect(Role(name: role.name) == role)
    #expect(role.uri == "urn:quorumkv:role:\(role.name)")
}
