import KVCore
import KVStorage
import Testing

@Suite struct InMemoryStoreCrashTests {
    let older = StoredRecord(version: Version(hlc: 1, writer: 1), tombstone: false, value: [1])
    let newer = StoredRecord(version: Version(hlc: 2, writer: 1), tombstone: false, value: [2])

    @Test func keepsTheGreaterVersionAndAnEqualOneIsARetry() throws {
        let store = InMemoryStore()
        #expect(try store.apply(key: [9], record: newer) == .applied)
        #expect(try store.apply(key: [9], record: older) == .superseded(current: newer.version))
        #expect(try store.apply(key: [9], record: newer) == .applied)
        #expect(try store.get(key: [9]) == newer)
    }

    @Test func syncModeLosesNothingInACrash() throws {
        let store = InMemoryStore(durability: .sync)
        _ = try store.apply(key: [9], record: newer)
        store.crash()
        #expect(try store.get(key: [9]) == newer)
    }

    @Test func crashLosesWhatWasNotSynced() throws {
        let store = InMemoryStore(durability: .none)
        _ = try store.apply(key: [1], record: older)
        store.sync()
        _ = try store.apply(key: [1], record: newer)
        _ = try store.apply(key: [2], record: newer)
        #expect(try store.get(key: [1]) == newer)
        store.crash()
        #expect(try store.get(key: [1]) == older)
        #expect(try store.get(key: [2]) == nil)
    }

    /// The segments follow what `get` sees through applies, syncs and crashes: after each step they
    /// equal segments rebuilt from the records, and a range digest equals the XOR of its listing.
    @Test func merkleSegmentsFollowWritesAndCrashes() throws {
        let store = InMemoryStore(durability: .none)
        var rng = SplitMix64(seed: 3)
        let keys = (0..<60).map { [UInt8]("s\($0)".utf8) }
        let ring = TokenRangeSpan(start: 77, end: 77)
        for round in 0..<6 {
            for index in 0..<80 {
                let version = Version(hlc: UInt64.random(in: 1...40, using: &rng), writer: UInt64(round * 100 + index))
                let written = StoredRecord(version: version, tombstone: rng.chance(0.2), value: [])
                _ = try store.apply(key: keys.randomElement(using: &rng)!, record: written)
            }
            switch round % 3 {
            case 0: store.sync()
            case 1: store.crash()
            default: break
            }
            let listing = try store.merkleListing(of: ring)
            #expect(try store.merkleSegments() == MerkleSegments(entries: listing), "round \(round)")
            let half = TokenRangeSpan(start: 1 << 63, end: 1 << 62)
            #expect(
                try store.merkleDigest(of: half) == store.merkleListing(of: half).reduce(0) { $0 ^ $1.hash },
                "round \(round)")
        }
    }
}
