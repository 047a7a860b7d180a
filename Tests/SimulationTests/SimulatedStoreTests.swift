import KVCore
import KVSimulation
import KVStorage
import Testing

@Suite struct SimulatedStoreTests {
    let older = StoredRecord(version: Version(hlc: 1, writer: 1), tombstone: false, value: [1])
    let newer = StoredRecord(version: Version(hlc: 2, writer: 1), tombstone: false, value: [2])

    @Test func keepsTheGreaterVersionLikeRocksDBStore() throws {
        let store = SimulatedStore()
        #expect(try store.apply(key: [9], record: newer) == .applied)
        #expect(try store.apply(key: [9], record: older) == .superseded(current: newer.version))
        #expect(try store.apply(key: [9], record: newer) == .applied)
        #expect(try store.get(key: [9]) == newer)
    }

    @Test func syncModeLosesNothingInACrash() throws {
        let store = SimulatedStore(durability: .sync)
        _ = try store.apply(key: [9], record: newer)
        store.crash()
        #expect(try store.get(key: [9]) == newer)
    }

    @Test func crashLosesWhatWasNotSynced() throws {
        let store = SimulatedStore(durability: .none)
        _ = try store.apply(key: [1], record: older)
        store.sync()
        _ = try store.apply(key: [1], record: newer)
        _ = try store.apply(key: [2], record: newer)
        #expect(try store.get(key: [1]) == newer)
        store.crash()
        #expect(try store.get(key: [1]) == older)
        #expect(try store.get(key: [2]) == nil)
    }
}
