import Foundation
import KVCore
import KVStorage
import Testing

/// `TombstonePurging`: only old tombstones inside the range go, with their Merkle entries.
@Suite struct TombstonePurgeTests {
    @Test(arguments: StoreKind.allCases)
    func purgesOnlyOldTombstonesOfTheRangeAndKeepsSegmentsExact(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            var random = SplitMix64(seed: 77)
            var expected: [[UInt8]: StoredRecord] = [:]
            for index in 0..<400 {
                let key = Array("purge-\(index)".utf8)
                let hlc = UInt64.random(in: 1...1_000, using: &random)
                let record = Bool.random(using: &random) ? tombstone(hlc) : record(hlc, "v\(index)")
                _ = try store.apply(key: key, record: record)
                expected[key] = record
            }
            let range = TokenRangeSpan(start: UInt64.max / 4, end: UInt64.max / 4 * 3)
            let cutoff = Version(hlc: 500, writer: 0)
            let purged = try store.purgeTombstones(in: range, before: cutoff)

            var gone = 0
            for (key, record) in expected {
                let purgeable = record.tombstone && record.version < cutoff && range.contains(Token(key: key))
                let found = try store.get(key: key)
                #expect((found == nil) == purgeable, "\(String(decoding: key, as: UTF8.self)): \(record)")
                if purgeable { gone += 1 } else { #expect(found == record) }
            }
            #expect(purged == gone && gone > 10, "purged \(purged), expected \(gone)")
            // The segments match a rebuild from what is left, so anti-entropy sees the purge exactly.
            let incremental = try store.merkleSegments()
            try store.rebuildMerkleSegments()
            #expect(try store.merkleSegments() == incremental)
            // Nothing left to purge.
            #expect(try store.purgeTombstones(in: range, before: cutoff) == 0)
        }
    }

    /// Values that expired before the cutoff go as tombstones do, with their Merkle entries; values
    /// expiring later, and values without a time to live, stay.
    @Test(arguments: StoreKind.allCases)
    func expiredValuesArePurgedAsTombstonesWithoutOne(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            let cutoff = Version(hlc: 5_000 << 16, writer: 0)  // 5,000 ms
            let kept = [
                ("lives", StoredRecord(version: Version(hlc: 1_000 << 16, writer: 1), tombstone: false, value: [1])),
                (
                    "expires-later",
                    StoredRecord(
                        version: Version(hlc: 1_000 << 16, writer: 1), tombstone: false, value: [2],
                        expiresAtMillis: 5_001)
                ),
                (
                    "written-late",
                    StoredRecord(
                        version: Version(hlc: 6_000 << 16, writer: 1), tombstone: false, value: [3],
                        expiresAtMillis: 4_000)
                ),
            ]
            let expired = StoredRecord(
                version: Version(hlc: 1_000 << 16, writer: 1), tombstone: false, value: [4], expiresAtMillis: 5_000)
            for (key, record) in kept { _ = try store.apply(key: Array(key.utf8), record: record) }
            _ = try store.apply(key: Array("expired".utf8), record: expired)
            let whole = TokenRangeSpan(start: 0, end: 0)
            #expect(try store.purgeTombstones(in: whole, before: cutoff) == 1)
            #expect(try store.get(key: Array("expired".utf8)) == nil)
            for (key, record) in kept { #expect(try store.get(key: Array(key.utf8)) == record) }
            let incremental = try store.merkleSegments()
            try store.rebuildMerkleSegments()
            #expect(try store.merkleSegments() == incremental)
        }
    }

    @Test func aPurgeSurvivesAReopenWithoutARebuild() throws {
        try withTemporaryDirectory { path in
            let range = TokenRangeSpan(start: 0, end: 0)
            do {
                let store = try RocksDBStore(directory: path, durability: .sync)
                defer { store.close() }
                for index in 0..<50 {
                    _ = try store.apply(
                        key: Array("k\(index)".utf8), record: index % 2 == 0 ? tombstone(10) : record(10, "v"))
                }
                #expect(try store.purgeTombstones(in: range, before: Version(hlc: 11, writer: 0)) == 25)
            }
            let reopened = try RocksDBStore(directory: path, durability: .sync)
            defer { reopened.close() }
            #expect(reopened.merkleRebuildAtOpen == nil)
            let loaded = try reopened.merkleSegments()
            try reopened.rebuildMerkleSegments()
            #expect(try reopened.merkleSegments() == loaded)
            #expect(try reopened.get(key: Array("k0".utf8)) == nil)
            #expect(try reopened.get(key: Array("k1".utf8)) == record(10, "v"))
        }
    }
}
