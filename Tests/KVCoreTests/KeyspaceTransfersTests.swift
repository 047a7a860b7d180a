import KVCore
import Testing

/// The rule `RangeStreamer` and the simulator share: which keyspaces a receiving node moves, in what
/// order, and when it reports them streamed.
@Suite struct KeyspaceTransfersTests {
    @Test func everyPartIsReceivedDefaultFirstBeforeTheReport() throws {
        var map = RingSplitTests.users
        map = try map.applying(.createKeyspace("cache", KeyspaceSettings()))
        map = try map.applying(.dropKeyspace("cache"))
        var transfers = KeyspaceTransfers(map: map)
        let parts = map.parts(named: "users").map(\.id)
        #expect(transfers.keyspaces.map(\.id) == [Keyspace.defaultID] + parts)
        for id in [Keyspace.defaultID] + parts {
            #expect(transfers.step == .receive(try #require(map.keyspace(id: id))))
            transfers.received(id)
        }
        #expect(transfers.step == .report)
    }

    @Test func theDefaultKeyspaceAloneReportsAtOnceAfterIt() {
        var transfers = KeyspaceTransfers(map: RingSplitTests.twoRings)
        #expect(transfers.step == .receive(RingSplitTests.twoRings.defaultKeyspace))
        transfers.received(Keyspace.defaultID)
        #expect(transfers.step == .report)
    }
}
