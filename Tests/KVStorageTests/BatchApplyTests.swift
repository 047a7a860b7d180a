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

/// The `meta` family's memtable is small: nearly every write rewrites a Merkle segment's hash there,
/// and with RocksDB's 64 MB memtable every write searched a skip list of a million of their versions
/// (docs/benchmarks.md, "A smaller memtable for the Merkle segments"). RocksDB writes the options it
/// opened each family with to the folder's `OPTIONS-*` file.
@Suite(.timeLimit(.minutes(3)))
struct MemtableTests {
    /// The families every write changes and only scans read (`versions`, `versions.<id>`, `merkle`)
    /// have vector memtables; the keyspaces' `data` a hash of their keys' tokens into skip lists, with
    /// the token as RocksDB's prefix; the others (`meta`, `hints`) RocksDB's skip list. Read from the
    /// `OPTIONS-*` file RocksDB writes with the options it opened each family with.
    @Test func theIndexFamiliesHaveVectorMemtablesAndTheRecordsAHashOne() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .none)
            _ = try store.keyspace(5)
            store.close()
            let reopened = try RocksDBStore(directory: path, durability: .none)
            defer { reopened.close() }
            let file = try #require(
                try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasPrefix("OPTIONS-") }
                    .max { $0.count == $1.count ? $0 < $1 : $0.count < $1.count })
            let text = try String(contentsOfFile: "\(path)/\(file)", encoding: .utf8)
            func option(_ name: String, of family: String) -> String? {
                guard let section = text.components(separatedBy: "[CFOptions \"\(family)\"]").dropFirst().first else {
                    return nil
                }
                let line = section.split(separator: "\n").first {
                    $0.trimmingCharacters(in: .whitespaces).hasPrefix(name + "=")
                }
                return line.map { String($0) }
            }
            for family in ["versions", "versions.5", "merkle"] {
                #expect(option("memtable_factory", of: family)?.contains("VectorRepFactory") == true, "\(family)")
            }
            for family in ["data", "data.5"] {
                let memtable = option("memtable_factory", of: family)
                #expect(memtable?.contains("HashSkipListRepFactory") == true, "\(family): \(memtable ?? "none")")
                let prefix = option("prefix_extractor", of: family)
                #expect(prefix?.contains("FixedPrefix.8") == true, "\(family): \(prefix ?? "none")")
            }
            for family in ["meta", "hints"] {
                let memtable = option("memtable_factory", of: family)
                #expect(memtable?.contains("SkipListFactory") == true, "\(family): \(memtable ?? "none")")
                #expect(memtable?.contains("Hash") == false, "\(family): \(memtable ?? "none")")
            }
        }
    }

    /// A scan of `data` whose memtables hold more than `scanMemtableEntriesMax` entries flushes them
    /// first (an iterator over the hash memtable sorts every entry into a list of its own) and reads
    /// every record in token order all the same; below that, it leaves the memtable as it is.
    @Test func aScanOfALargeRecordMemtableFlushesItFirst() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .none)
            defer { store.close() }
            let whole = TokenRangeSpan(start: 0, end: 0)
            func write(_ range: Range<Int>) throws {
                let records = range.map {
                    StreamedRecord(key: key("key-\($0)"), record: record(UInt64($0 + 1), "v\($0)"))
                }
                _ = try store.apply(records, setting: nil)
            }
            func readAll() throws -> [[UInt8]] {
                let page = try store.streamPage(in: whole, after: nil, recordsMax: 100_000, bytesMax: 1 << 30)
                #expect(page.done)
                return page.records.map(\.key)
            }
            func inTokenOrder(_ keys: [[UInt8]]) -> Bool {
                let ordered = keys.sorted {
                    let (left, right) = (Token(key: $0).value, Token(key: $1).value)
                    return left != right ? left < right : $0.lexicographicallyPrecedes($1)
                }
                return ordered == keys
            }
            try write(0..<100)
            var keys = try readAll()
            #expect(keys.count == 100 && inTokenOrder(keys))
            #expect(try store.activeDataMemtableEntriesForTesting() == 100)
            let many = Int(RocksDBStore.scanMemtableEntriesMax) + 500
            try write(100..<many)
            #expect(try store.activeDataMemtableEntriesForTesting() == UInt64(many))
            keys = try readAll()
            #expect(keys.count == many && inTokenOrder(keys))
            #expect(try store.activeDataMemtableEntriesForTesting() == 0, "the scan flushed the memtable")
            // A point read after the flush finds the record in its table file.
            #expect(try store.get(key: key("key-7"))?.value == Array("v7".utf8))
        }
    }
}
