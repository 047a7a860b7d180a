import Foundation
import KVCore
import KVStorage
import Testing

/// Merkle segments kept by the stores: incremental equals rebuilt, persistence, recovery, and a
/// comparison between two real stores.
@Suite struct MerkleStoreTests {
    typealias Store = any ReplicaStore & MerkleStore

    /// The bytes a segment is kept under and as (docs/storage.md): a keyspace's prefix, then
    /// `merkle.segment/` and the segment as a big-endian u32; the hash as a big-endian u64. Written
    /// from temporary buffers on the write path, so pinned here byte for byte.
    @Test func segmentKeysAndHashesHaveTheirDocumentedBytes() {
        let name = Array("merkle.segment/".utf8)
        #expect(MerkleCodec.segmentKey(0x0102_0304) == name + [1, 2, 3, 4])
        #expect(MerkleCodec.segmentKey(258) == name + [0, 0, 1, 2])
        #expect(
            MerkleCodec.withSegmentKey(7, after: [0xAA, 0xBB]) { Array($0) } == [0xAA, 0xBB] + name + [0, 0, 0, 7])
        #expect(MerkleCodec.encodeHash(0x0102_0304_0506_0708) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(
            MerkleCodec.decode(key: UnsafeRawBufferPointer(start: nil, count: 0), value: .init(start: nil, count: 0))
                == nil)
        let key = MerkleCodec.segmentKey(4095)
        let value = MerkleCodec.encodeHash(0xDEAD_BEEF)
        let decoded = key.withUnsafeBytes { key in value.withUnsafeBytes { MerkleCodec.decode(key: key, value: $0) } }
        #expect(decoded?.0 == 4095 && decoded?.1 == 0xDEAD_BEEF)
    }

    /// Random writes, overwrites, stale writes and tombstones: the incremental segments equal a
    /// rebuild from a full scan, and every range digest equals the XOR of its listing.
    @Test(arguments: StoreKind.allCases)
    func incrementalSegmentsEqualRebuiltOnes(_ kind: StoreKind) throws {
        try withMerkleStore(kind) { store throws in
            var rng = SplitMix64(seed: 5)
            let keys = (0..<300).map { key("m-\($0)") }
            for key in keys { _ = try store.apply(key: key, record: record(1, writer: 0, "first")) }
            for index in 0..<1200 {
                let version = UInt64.random(in: 1...100, using: &rng)
                let written =
                    rng.chance(0.2)
                    ? tombstone(version, writer: UInt64(index)) : record(version, writer: UInt64(index), "v\(index)")
                _ = try store.apply(key: keys.randomElement(using: &rng)!, record: written)
            }
            let incremental = try store.merkleSegments()
            let whole = try store.merkleListing(of: TokenRangeSpan(start: 0, end: 0))
            #expect(whole.count == keys.count)
            #expect(incremental == MerkleSegments(entries: whole))
            let rebuild = try store.rebuildMerkleSegments()
            #expect(rebuild.records == keys.count)
            #expect(try store.merkleSegments() == incremental)

            let tokens = keys.map { Token(key: $0) }
            for _ in 0..<100 {
                let range = rng.merkleRange(near: tokens)
                let listing = try store.merkleListing(of: range)
                #expect(listing.allSatisfy { range.contains($0.token) })
                #expect(listing == listing.sorted(by: MerkleEntry.clockwiseOrder(from: range)))
                #expect(listing.count == tokens.filter { range.contains($0) }.count, "\(range)")
                #expect(try store.merkleDigest(of: range) == listing.reduce(0) { $0 ^ $1.hash }, "\(range)")
            }
        }
    }

    /// Two stores given the same writes in different orders hold equal segments and equal digests for
    /// every range.
    @Test(arguments: [StoreKind.inMemory, .rocksDBSync])
    func sameRecordsGiveSameDigestsWhateverTheOrder(_ kind: StoreKind) throws {
        var rng = SplitMix64(seed: 8)
        let keys = (0..<200).map { key("o-\($0)") }
        let writes = (0..<600).map { index in
            (
                keys.randomElement(using: &rng)!,
                record(UInt64.random(in: 1...9, using: &rng), writer: UInt64(index), "x")
            )
        }
        try withMerkleStore(kind) { first throws in
            try withMerkleStore(.rocksDBNone) { second throws in
                for (key, record) in writes { _ = try first.apply(key: key, record: record) }
                for (key, record) in writes.shuffled(using: &rng) { _ = try second.apply(key: key, record: record) }
                #expect(try first.merkleSegments() == second.merkleSegments())
                let tokens = keys.map { Token(key: $0) }
                for _ in 0..<50 {
                    let range = rng.merkleRange(near: tokens)
                    #expect(try first.merkleDigest(of: range) == second.merkleDigest(of: range), "\(range)")
                }
            }
        }
    }

    /// Segments survive close and reopen: loaded, not rebuilt, and equal to a rebuild.
    @Test(arguments: RocksDBStoreTests.durabilities)
    func segmentsPersistWithoutARebuild(_ durability: Durability) throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: durability)
            #expect(store.merkleRebuildAtOpen?.records == 0, "a new folder starts with an empty rebuild")
            for index in 0..<500 {
                _ = try store.apply(key: key("p-\(index)"), record: record(UInt64(index + 1), "v"))
            }
            _ = try store.apply(key: key("p-7"), record: tombstone(1000))
            let before = try store.merkleSegments()
            let ringDigest = try store.merkleDigest(of: TokenRangeSpan(start: 3, end: 3))
            store.close()

            let reopened = try RocksDBStore(directory: path, durability: durability)
            defer { reopened.close() }
            #expect(reopened.merkleRebuildAtOpen == nil, "stored segments are loaded, not rebuilt")
            #expect(try reopened.merkleSegments() == before)
            #expect(try reopened.merkleDigest(of: TokenRangeSpan(start: 3, end: 3)) == ringDigest)
            try reopened.rebuildMerkleSegments()
            #expect(try reopened.merkleSegments() == before)
        }
    }

    /// A copy of the live folder is what a killed process leaves: reopened, its segments (written in
    /// the same batch as each record) are loaded without a rebuild and match its data.
    @Test(arguments: [Durability.sync, .none])
    func aCrashImageHoldsSegmentsMatchingItsData(_ durability: Durability) throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path + "/live", durability: durability)
            defer { store.close() }
            for index in 0..<300 {
                _ = try store.apply(key: key("c-\(index)"), record: record(UInt64(index + 1), "v"))
            }
            try FileManager.default.copyItem(atPath: path + "/live", toPath: path + "/image")
            let image = try RocksDBStore(directory: path + "/image")
            defer { image.close() }
            #expect(image.merkleRebuildAtOpen == nil)
            let loaded = try image.merkleSegments()
            #expect(!loaded.isZero)
            #expect(try image.rebuildMerkleSegments().records == 300)
            #expect(try image.merkleSegments() == loaded)
            #expect(loaded == (try store.merkleSegments()))
        }
    }

    /// A folder written before segments existed (records, no `merkle.state`) and one with a damaged
    /// segment are rebuilt at open, and the rebuild is reported.
    @Test func missingOrDamagedSegmentsAreRebuiltAtOpen() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path)
            var expected: [MerkleEntry] = []
            for index in 0..<100 {
                let written = index % 10 == 0 ? tombstone(UInt64(index + 1)) : record(UInt64(index + 1), "v")
                try store.writeRawRecordForTesting(key: key("r-\(index)"), record: written)
                expected.append(MerkleEntry(key: key("r-\(index)"), record: written))
            }
            try store.writeRawMerkleForTesting(key: Array("merkle.state".utf8), value: nil)
            store.close()

            var reopened = try RocksDBStore(directory: path)
            let rebuild = try #require(reopened.merkleRebuildAtOpen)
            #expect(rebuild.records == 100)
            #expect(rebuild.reason.contains("no Merkle segments stored"))
            #expect(try reopened.merkleSegments() == MerkleSegments(entries: expected))

            // Damage one stored segment: a 3-byte hash.
            let segment = MerkleSegments.segment(of: Token(key: key("r-1")))
            let segmentKey =
                Array("merkle.segment/".utf8) + [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: segment >> $0) }
            try reopened.writeRawMerkleForTesting(key: segmentKey, value: [1, 2, 3])
            reopened.close()
            reopened = try RocksDBStore(directory: path)
            defer { reopened.close() }
            #expect(reopened.merkleRebuildAtOpen?.reason.contains("does not decode") == true)
            #expect(try reopened.merkleSegments() == MerkleSegments(entries: expected))
        }
    }

    /// A folder from before the `merkle` family kept the segments and their state in `meta`: the open
    /// moves them as they are, without a rebuild, and leaves none in `meta`; a keyspace's too.
    @Test func segmentsKeptInMetaAreMovedAtOpen() throws {
        try withTemporaryDirectory { path throws in
            var root = try RocksDBStore(directory: path)
            var expected: [[([UInt8], [UInt8])]] = []
            var segments: [MerkleSegments] = []
            for store in [root, try root.keyspace(3)] {
                for index in 0..<60 {
                    _ = try store.apply(key: key("m-\(index)"), record: record(UInt64(index + 1), "v"))
                }
                let entries = try store.rawMerkleEntriesForTesting()
                #expect(entries.count > 1, "the segments and the state")
                #expect(try store.rawMerkleEntriesForTesting(inMeta: true).isEmpty)
                // The older layout: every one of them in `meta`, none in `merkle`.
                for (entryKey, value) in entries {
                    try store.writeRawMerkleForTesting(key: entryKey, value: value, inMeta: true)
                    try store.writeRawMerkleForTesting(key: entryKey, value: nil)
                }
                expected.append(entries)
                segments.append(try store.merkleSegments())
            }
            root.close()

            root = try RocksDBStore(directory: path)
            defer { root.close() }
            for (index, store) in [root, try root.keyspace(3)].enumerated() {
                #expect(store.merkleRebuildAtOpen == nil, "moved, not rebuilt")
                #expect(try store.merkleSegments() == segments[index])
                let moved = try store.rawMerkleEntriesForTesting()
                #expect(moved.map(\.0) == expected[index].map(\.0))
                #expect(moved.map(\.1) == expected[index].map(\.1))
                #expect(try store.rawMerkleEntriesForTesting(inMeta: true).isEmpty)
                _ = try store.apply(key: key("m-0"), record: record(100, "newer"))
                let incremental = try store.merkleSegments()
                #expect(try store.rebuildMerkleSegments().records == 60)
                #expect(try store.merkleSegments() == incremental)
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func merkleMetadataNamesAreReserved(_ kind: StoreKind) throws {
        try withMerkleStore(kind) { store throws in
            let error = #expect(throws: StorageError.self) { try store.setMetadata("merkle.state", [0]) }
            #expect(error?.code == .invalidRecord)
        }
    }

    /// Writers on many threads, many keys per segment stripe: the segments still equal a rebuild.
    @Test func concurrentWritersKeepTheSegmentsExact() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .none)
            defer { store.close() }
            runOnThreads(count: 8) { thread in
                for index in 0..<300 {
                    _ = try? store.apply(
                        key: key("t-\(index % 150)"), record: record(UInt64(index), writer: UInt64(thread), "v"))
                }
            }
            let incremental = try store.merkleSegments()
            try store.rebuildMerkleSegments()
            #expect(try store.merkleSegments() == incremental)
        }
    }

    /// Two real stores with random differences (missing keys, older and newer versions, tombstones):
    /// a comparison over their answers finds exactly the differing keys, and after the repair the
    /// roots match.
    @Test(arguments: [StoreKind.inMemory, .rocksDBNone])
    func comparisonOfTwoStoresFindsExactlyTheDifferingKeys(_ kind: StoreKind) throws {
        try withMerkleStore(kind) { local throws in
            try withMerkleStore(.rocksDBNone) { remote throws in
                var rng = SplitMix64(seed: 13)
                let keys = (0..<400).map { key("d-\($0)") }
                for (index, key) in keys.enumerated() {
                    let base = rng.chance(0.1) ? tombstone(10, writer: 1) : record(10, writer: 1, "base")
                    let newer = rng.chance(0.3) ? tombstone(20, writer: 2) : record(20, writer: 2, "newer")
                    switch index % 17 {
                    case 0: _ = try local.apply(key: key, record: base)
                    case 1: _ = try remote.apply(key: key, record: base)
                    case 2:
                        (_, _) = (try local.apply(key: key, record: newer), try remote.apply(key: key, record: base))
                    case 3:
                        (_, _) = (try local.apply(key: key, record: base), try remote.apply(key: key, record: newer))
                    default:
                        (_, _) = (try local.apply(key: key, record: base), try remote.apply(key: key, record: base))
                    }
                }
                let tokens = keys.map { Token(key: $0) }
                for range in [TokenRangeSpan(start: 9, end: 9)] + (0..<6).map({ _ in rng.merkleRange(near: tokens) }) {
                    var push: [MerkleEntry] = []
                    var pull: [MerkleEntry] = []
                    for key in keys where range.contains(Token(key: key)) {
                        let ours = try local.get(key: key).map { MerkleEntry(key: key, record: $0) }
                        let theirs = try remote.get(key: key).map { MerkleEntry(key: key, record: $0) }
                        if let ours, theirs.map({ $0.version < ours.version }) ?? true { push.append(ours) }
                        if let theirs, ours.map({ $0.version < theirs.version }) ?? true { pull.append(theirs) }
                    }
                    let (difference, _) = try compare(local, remote, range: range)
                    #expect(difference.push == push.sorted(by: MerkleEntry.tokenOrder), "\(range)")
                    #expect(difference.pull == pull.sorted(by: MerkleEntry.tokenOrder), "\(range)")
                }
                // Repair the whole ring, then compare again: the roots match.
                let ring = TokenRangeSpan(start: 9, end: 9)
                let (difference, _) = try compare(local, remote, range: ring)
                for entry in difference.push {
                    _ = try remote.apply(key: entry.key, record: try #require(try local.get(key: entry.key)))
                }
                for entry in difference.pull {
                    _ = try local.apply(key: entry.key, record: try #require(try remote.get(key: entry.key)))
                }
                let (after, queries) = try compare(local, remote, range: ring)
                #expect(after.isEmpty)
                #expect(queries == 1)
            }
        }
    }
}

/// Runs a comparison of `range` between two stores to the end.
func compare(
    _ local: any MerkleStore,
    _ remote: any MerkleStore,
    range: TokenRangeSpan
) throws -> (MerkleDifference, Int) {
    var comparison = MerkleComparison(range: range)
    var action = comparison.start()
    while case .query(let query) = action {
        action = try comparison.handle(
            local: try #require(try local.merkleAnswer(to: query, in: comparison.tree)),
            remote: try #require(try remote.merkleAnswer(to: query, in: comparison.tree)))
    }
    guard case .finish(let difference) = action else { throw StorageError.closed }
    return (difference, comparison.queriesAsked)
}

/// A new, empty store of `kind` that keeps Merkle segments.
func withMerkleStore<Result>(
    _ kind: StoreKind,
    _ body: (any ReplicaStore & MerkleStore) throws -> Result
) throws -> Result {
    try withStore(kind, body)
}

extension SplitMix64 {
    /// A range that often starts or ends near `tokens` (so boundary segments hold records), sometimes
    /// wraps past zero, and is sometimes the whole ring or segment-aligned.
    mutating func merkleRange(near tokens: [Token]) -> TokenRangeSpan {
        func point(_ rng: inout SplitMix64) -> UInt64 {
            switch Int.random(in: 0..<6, using: &rng) {
            case 0: return UInt64.random(in: .min ... .max, using: &rng)
            case 1: return (UInt64.random(in: 0..<(1 << 20), using: &rng) << 44) &- 1
            case 2: return UInt64.random(in: 0..<(1 << 30), using: &rng)
            case 3: return UInt64.max - UInt64.random(in: 0..<(1 << 30), using: &rng)
            default:
                let token = tokens.randomElement(using: &rng)!.value
                let delta = UInt64.random(in: 0..<(1 << UInt64.random(in: 0...44, using: &rng)), using: &rng)
                return Bool.random(using: &rng) ? token &+ delta : token &- delta
            }
        }
        if chance(0.05) {
            let point = point(&self)
            return TokenRangeSpan(start: point, end: point)
        }
        return TokenRangeSpan(start: point(&self), end: point(&self))
    }
}
