import Foundation
import KVCore
import KVStorage
import Testing

/// The version index and the checkpoints of an incremental backup (`RocksDBStore+Changes.swift`):
/// exactly the records and hints newer than a time, whatever path wrote or removed them.
@Suite struct ChangesCheckpointTests {
    /// Every `data` record a checkpoint folder holds, by key, and its hints.
    private static func read(_ path: String) throws -> (records: [[UInt8]: StoredRecord], hints: [StoredHint]) {
        let reader = try RocksDBCheckpointReader(directory: path)
        defer { reader.close() }
        var records: [[UInt8]: StoredRecord] = [:]
        var after: [UInt8]?
        while true {
            let page = try reader.dataPage(after: after, recordsMax: 100)
            for streamed in page {
                #expect(records.updateValue(streamed.record, forKey: streamed.key) == nil, "each key once")
            }
            guard page.count == 100, let last = page.last else { break }
            after = last.key
        }
        return (records, try reader.hints())
    }

    @Test func holdsExactlyTheRecordsAndHintsNewerThanSince() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path + "/db")
            defer { store.close() }
            for index in 0..<100 {
                _ = try store.apply(key: key("key-\(index)"), record: record(UInt64(index + 1), "v\(index)"))
            }
            _ = try store.storeHint(hint("n2", "old-hint", record(7, "h")), queueMax: 100)
            _ = try store.storeHint(hint("n3", "new-hint", record(150, "h")), queueMax: 100)
            // After `since` = 50: an overwrite, a delete, a new key, and a key written twice in one batch
            // (one index entry, its last version).
            _ = try store.apply(key: key("key-10"), record: record(200, "again"))
            _ = try store.apply(key: key("key-20"), record: tombstone(210))
            _ = try store.apply(key: key("new"), record: record(300, "new"))
            _ = try store.apply(
                [
                    StreamedRecord(key: key("twice"), record: record(400, "first")),
                    StreamedRecord(key: key("twice"), record: record(500, "second")),
                ], setting: nil)
            // An old version arriving late (anti-entropy): indexed at its own version, before `since`.
            _ = try store.apply(key: key("late"), record: record(30, "late"))

            let changes = try store.createChangesCheckpoint(id: "since-50", since: 50, hash: CheckpointTests.fakeHash)
            let (records, hints) = try Self.read(changes.path)
            var expected: [[UInt8]: StoredRecord] = [:]
            for index in 50..<100 { expected[key("key-\(index)")] = record(UInt64(index + 1), "v\(index)") }
            expected[key("key-10")] = record(200, "again")
            expected[key("key-20")] = tombstone(210)
            expected[key("new")] = record(300, "new")
            expected[key("twice")] = record(500, "second")
            #expect(records == expected)
            #expect(hints.map(\.key) == [key("new-hint")])

            let nothing = try store.createChangesCheckpoint(id: "since-500", since: 500, hash: CheckpointTests.fakeHash)
            let empty = try Self.read(nothing.path)
            #expect(empty.records.isEmpty && empty.hints.isEmpty)
            #expect(!nothing.files.contains { $0.name.hasSuffix(".sst") }, "no table file when nothing changed")

            let everything = try store.createChangesCheckpoint(id: "since-0", since: 0, hash: CheckpointTests.fakeHash)
            #expect(try Self.read(everything.path).records.count == 103)
        }
    }

    /// Each keyspace's changes go to its own family (`data.<id>`, there even when nothing changed),
    /// chosen by that keyspace's version index; a dropped keyspace is not in it.
    @Test func carriesEveryKeyspacesChangesInItsOwnFamily() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path + "/db")
            defer { store.close() }
            let accounts = try store.keyspace(7)
            let quiet = try store.keyspace(9)
            let dropped = try store.keyspace(11)
            for index in 0..<20 {
                _ = try store.apply(key: key("k\(index)"), record: record(UInt64(index + 1), "default-\(index)"))
                _ = try accounts.apply(key: key("k\(index)"), record: record(UInt64(index + 41), "accounts-\(index)"))
                _ = try quiet.apply(key: key("k\(index)"), record: record(5, "quiet"))
                _ = try dropped.apply(key: key("k\(index)"), record: record(90, "dropped"))
            }
            _ = try store.storeHint(
                StoredHint(target: "n2", key: key("h"), record: record(70, "hinted"), storedAtMillis: 1, keyspace: 7),
                queueMax: 10)
            try store.dropKeyspace(11)

            let changes = try store.createChangesCheckpoint(id: "since-50", since: 50, hash: CheckpointTests.fakeHash)
            #expect(try RocksDBCheckpointReader.keyspaces(in: changes.path) == [0, 7, 9])
            #expect(try Self.read(changes.path).records.isEmpty)
            let reader = try RocksDBCheckpointReader(directory: changes.path, keyspace: 7)
            defer { reader.close() }
            let page = try reader.dataPage(after: nil, recordsMax: 100)
            #expect(Set(page.map(\.key)) == Set((10..<20).map { key("k\($0)") }))
            #expect(try reader.record(forKey: key("k15")) == record(56, "accounts-15"))
            #expect(try reader.hints().map(\.record) == [record(70, "hinted")])
            let quietReader = try RocksDBCheckpointReader(directory: changes.path, keyspace: 9)
            defer { quietReader.close() }
            #expect(try quietReader.dataPage(after: nil, recordsMax: 10).isEmpty)
        }
    }

    @Test func removedRecordsLeaveTheIndex() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path + "/db")
            defer { store.close() }
            for index in 0..<50 {
                _ = try store.apply(key: key("key-\(index)"), record: record(UInt64(100 + index), "v"))
            }
            _ = try store.apply(key: key("gone"), record: tombstone(90))
            let whole = TokenRangeSpan(start: 0, end: 0)
            #expect(try store.purgeTombstones(in: whole, before: Version(hlc: 95, writer: 0)) == 1)
            #expect(try store.deleteRange(whole) == 50)
            #expect(try store.versionIndexEntryCount() == 0, "no entry outlives its record")
            _ = try store.apply(key: key("key-3"), record: record(300, "back"))
            let changes = try store.createChangesCheckpoint(id: "c", since: 0, hash: CheckpointTests.fakeHash)
            #expect(try Self.read(changes.path).records == [key("key-3"): record(300, "back")])
        }
    }

    @Test func aStoreFromBeforeTheIndexBuildsItWhenOpened() throws {
        try withTemporaryDirectory { path throws in
            do {
                let store = try RocksDBStore(directory: path + "/db")
                defer { store.close() }
                for index in 0..<20 {
                    _ = try store.apply(key: key("key-\(index)"), record: record(UInt64(index + 1), "v"))
                }
                try store.forgetVersionIndexForTesting()
                #expect(try store.versionIndexEntryCount() == 0)
            }
            let store = try RocksDBStore(directory: path + "/db")
            defer { store.close() }
            #expect(try store.versionIndexEntryCount() == 20)
            let changes = try store.createChangesCheckpoint(id: "c", since: 10, hash: CheckpointTests.fakeHash)
            #expect(try Self.read(changes.path).records.count == 10)
        }
    }
}
