import KVCluster
import Testing

/// `MapFollowing`, the rule the SDK, a node and the simulator's clients follow the map by.
struct MapFollowingTests {
    @Test func aReportNoNewerThanTheMapInUseFetchesNothing() {
        var following = MapFollowing()
        #expect(following.notice(5, from: "n1", currentEpoch: 5) == nil)
        #expect(following.notice(4, from: "n1", currentEpoch: 5) == nil)
        #expect(following.fetching == nil)
    }

    @Test func oneFetchAtATimeThenTheHighestReportsNode() {
        var following = MapFollowing()
        #expect(following.notice(6, from: "n1", currentEpoch: 5) == "n1")
        #expect(following.fetching == "n1")
        // Reports while n1's map is fetched: kept, the highest epoch's node wins.
        #expect(following.notice(8, from: "n2", currentEpoch: 5) == nil)
        #expect(following.notice(7, from: "n3", currentEpoch: 5) == nil)
        #expect(following.notice(.max, from: "n4", currentEpoch: 5) == nil)
        #expect(following.fetchEnded(currentEpoch: 6) == "n4")
        #expect(following.fetching == "n4")
        // The follow-up was taken: the next end leaves nothing to fetch.
        #expect(following.fetchEnded(currentEpoch: 9) == nil)
        #expect(following.fetching == nil)
    }

    @Test func aFollowUpTheInstalledMapCoversIsDropped() {
        var following = MapFollowing()
        #expect(following.notice(6, from: "n1", currentEpoch: 5) == "n1")
        #expect(following.notice(8, from: "n2", currentEpoch: 5) == nil)
        // n1 held epoch 8 by the time it answered.
        #expect(following.fetchEnded(currentEpoch: 8) == nil)
        #expect(following.fetching == nil)
        #expect(following.notice(9, from: "n3", currentEpoch: 8) == "n3")
    }

    @Test func aFailedFetchStillEndsAndTheNextReportFetchesAgain() {
        var following = MapFollowing()
        #expect(following.notice(.max, from: "n1", currentEpoch: 5) == "n1")
        #expect(following.fetchEnded(currentEpoch: 5) == nil)
        #expect(following.notice(.max, from: "n1", currentEpoch: 5) == "n1")
    }
}
