import Foundation
import KVCore
import KVStorage
import Testing

/// `ReplicaStore.apply(_:setting:)`: a batch does what applying its records one by one does (same
/// outcomes, same records, same Merkle segments), writes its metadata with them, and in `RocksDBStore`
/// is all or nothing.
@Suite struct BatchApplyTests {
    /// Random batches over few keys (so a batch repeats keys and meets older, equal and newer versions,
    /// tombstones too): outcomes and contents equal those of a store fed one record at a time.
    @Test(arguments: StoreKind.allCases)
    func aBatchActsLikeItsRecordsOneByOne(_ kind: StoreKind) throws {
        try withStore(kind) { batched throws in
            try withStore(.inMemory) { single throws in
                var random = SplitMix64(seed: 41)
                let keys = (0..<60).map { key("b-\($0)") }
                for round in 0..<40 {
                    let records = randomBatch(over: keys, count: 0...30, hlcMax: 50, using: &random)
                    let entry = MetadataEntry(name: "progress", value: [UInt8(round)])
                    let outcomes = try batched.apply(records, setting: entry)
                    let expected = try records.map { try single.apply(key: $0.key, record: $0.record) }
                    #expect(outcomes == expected, "round \(round)")
                    #expect(try batched.metadata("progress") == [UInt8(round)])
                }
                for key in keys {
                    #expect(try batched.get(key: key) == single.get(key: key))
                }
                let segments = try batched.merkleSegments()
                #expect(segments == (try single.merkleSegments()))
                try batched.rebuildMerkleSegments()
                #expect(try batched.merkleSegments() == segments)
            }
        }
    }

    /// A batch with one invalid record writes nothing at all, its metadata neither.
    @Test(arguments: [StoreKind.rocksDBSync, .rocksDBNone])
    func aBatchWithAnInvalidRecordWritesNothing(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            let oversized = StoredRecord(
                version: Version(hlc: 2, writer: 1), tombstone: false,
                value: [UInt8](repeating: 7, count: Limits.valueBytesMax + 1))
            let error = #expect(throws: StorageError.self) {
                try store.apply(
                    [
                        StreamedRecord(key: key("fine"), record: record(1, "v")),
                        StreamedRecord(key: key("big"), record: oversized),
                    ],
                    setting: MetadataEntry(name: "progress", value: [1]))
            }
            #expect(error?.code == .invalidRecord)
            #expect(try store.get(key: key("fine")) == nil)
            #expect(try store.metadata("progress") == nil)
            let reserved = #expect(throws: StorageError.self) {
                try store.apply([], setting: MetadataEntry(name: "merkle.state", value: [1]))
            }
            #expect(reserved?.code == .invalidRecord)
        }
    }

    /// Batches and single writes on many threads, over keys that share segments: the segments equal
    /// a rebuild, and every key holds its newest version (the batches take their stripes in order, so
    /// they never deadlock one another).
    @Test func concurrentBatchesKeepTheSegmentsExact() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .none)
            defer { store.close() }
            runOnThreads(count: 6) { thread in
                var random = SplitMix64(seed: UInt64(thread))
                for round in 0..<60 {
                    let hlc = UInt64(round * 10 + thread)
                    if thread % 2 == 0 {
                        let records = (0..<20).map { _ in
                            StreamedRecord(
                                key: key("c-\(Int.random(in: 0..<80, using: &random))"), record: record(hlc, "b"))
                        }
                        _ = try? store.apply(records, setting: nil)
                    } else {
                        _ = try? store.apply(
                            key: key("c-\(Int.random(in: 0..<80, using: &random))"), record: record(hlc, "s"))
                    }
                }
            }
            let incremental = try store.merkleSegments()
            try store.rebuildMerkleSegments()
            #expect(try store.merkleSegments() == incremental)
        }
    }

    /// What a batch wrote, its metadata included, is there after a reopen.
    @Test(arguments: RocksDBStoreTests.durabilities)
    func aBatchSurvivesAReopen(_ durability: Durability) throws {
        try withTemporaryDirectory { path throws in
            let records = (0..<50).map { StreamedRecord(key: key("r-\($0)"), record: record(UInt64($0 + 1), "v\($0)")) }
            do {
                let store = try RocksDBStore(directory: path, durability: durability)
                defer { store.close() }
                #expect(try store.apply(records, setting: MetadataEntry(name: "progress", value: [9])).count == 50)
            }
            let reopened = try RocksDBStore(directory: path, durability: durability)
            defer { reopened.close() }
            for streamed in records {
                #expect(try reopened.get(key: streamed.key) == streamed.record)
            }
            #expect(try reopened.metadata("progress") == [9])
            #expect(reopened.merkleRebuildAtOpen == nil)
        }
    }
}

/// The `meta` family's memtable stays small: nearly every write rewrites a Merkle segment's hash
/// there, and a 64 MB memtable of their versions made every write search a skip list of a million
/// entries (docs/benchmarks.md, "A small memtable for the Merkle segments").
@Suite(.timeLimit(.minutes(2)))
struct MetaMemtableTests {
    @Test func theMetaFamilyFlushesItsSegmentHashesAtAboutAMegabyte() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .none)
            defer { store.close() }
            // 100,000 writes, each a segment hash of about 50 bytes in the memtable: 5 MB unflushed.
            for batch in 0..<10_000 {
                let records = (0..<10).map { index in
                    StreamedRecord(key: key("m-\(batch)-\(index)"), record: record(UInt64(batch + 1), "v"))
                }
                _ = try store.apply(records, setting: nil)
            }
            // Flushes run in the background: the memtables (the one being written and those waiting for
            // their flush) come back under the bound.
            let bound = 3 * RocksDBStore.metaMemtableBytes
            let deadline = ContinuousClock.now + .seconds(60)
            var bytes = try store.metaMemtableBytesForTesting()
            while bytes > bound, ContinuousClock.now < deadline {
                usleep(50_000)
                bytes = try store.metaMemtableBytesForTesting()
            }
            #expect(bytes <= bound, "the meta family's memtables hold \(bytes) bytes")
        }
    }
}
