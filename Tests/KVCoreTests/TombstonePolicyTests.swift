import KVCore
import Testing

/// `TombstonePolicy`: when a tombstone may be purged, for `kvd`'s anti-entropy and the simulator alike.
@Suite struct TombstonePolicyTests {
    @Test func theHorizonIsTheGracePeriodAgo() {
        let policy = TombstonePolicy(grace: .seconds(2))
        #expect(policy.horizon(nowMillis: 10_000, rangesMoving: false) == Version(hlc: 8_000 << 16, writer: 0))
        // A clock younger than the grace period, a policy without one, and a change in progress: no purge.
        #expect(policy.horizon(nowMillis: 2_000, rangesMoving: false) == nil)
        #expect(TombstonePolicy(grace: nil).horizon(nowMillis: 10_000, rangesMoving: false) == nil)
        #expect(policy.horizon(nowMillis: 10_000, rangesMoving: true) == nil)
    }

    @Test func hostileDurationsNeverTrap() {
        #expect(TombstonePolicy(grace: .seconds(-5)).horizon(nowMillis: 1, rangesMoving: false) != nil)
        #expect(TombstonePolicy(grace: .seconds(Int64.max)).horizon(nowMillis: .max, rangesMoving: false) == nil)
        #expect(Duration.seconds(Int64.max).wholeMillisecondsClamped == .max)
        #expect(Duration.milliseconds(1_500).wholeMillisecondsClamped == 1_500)
    }

    @Test func onlyAConfirmedPassPurges() {
        var policy = TombstonePolicy(grace: .seconds(2))
        #expect(policy.mayPurge(confirmed: true))
        #expect(!policy.mayPurge(confirmed: false))
        // The simulator's planted bug lives in the production value.
        policy.purgesWithoutConfirmation = true
        #expect(policy.mayPurge(confirmed: false))
    }
}
