import Foundation
import KVCore
import KVStorage
import Testing

/// `RocksDBCheckpointReader`: a checkpoint opened read-only, as a restore reads it.
@Suite struct CheckpointReaderTests {
    @Test func readsEveryRecordPageByPageAndEveryHintWithoutWriting() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path + "/db")
            defer { store.close() }
            for index in 0..<250 {
                _ = try store.apply(key: key("key-\(index)"), record: record(UInt64(index + 1), "value-\(index)"))
            }
            _ = try store.apply(key: key("deleted"), record: tombstone(500))
            _ = try store.storeHint(hint("n2", "hinted", record(7, "h")), queueMax: 100)
            _ = try store.storeHint(hint("n3", "hinted-delete", tombstone(9)), queueMax: 100)
            let checkpoint = try store.createCheckpoint(id: "backup-1", hash: CheckpointTests.fakeHash)
            let before = try checkpoint.files.map { try CheckpointTests.fakeHash("\(checkpoint.path)/\($0.name)") }

            let reader = try RocksDBCheckpointReader(directory: checkpoint.path)
            var records: [StreamedRecord] = []
            var after: [UInt8]?
            var pages = 0
            while true {
                let page = try reader.dataPage(after: after, recordsMax: 64)
                records += page
                pages += 1
                guard page.count == 64, let last = page.last else { break }
                after = last.key
            }
            #expect(pages == 4)
            #expect(records.count == 251)
            // In `data` order: by token, then key bytes.
            #expect(records.map { Token(key: $0.key).value } == records.map { Token(key: $0.key).value }.sorted())
            let byKey = Dictionary(uniqueKeysWithValues: records.map { ($0.key, $0.record) })
            #expect(byKey[key("key-17")] == record(18, "value-17"))
            #expect(byKey[key("deleted")] == tombstone(500))
            #expect(try reader.record(forKey: key("key-42")) == record(43, "value-42"))
            #expect(try reader.record(forKey: key("absent")) == nil)
            let hints = try reader.hints()
            #expect(Set(hints.map(\.target)) == ["n2", "n3"])
            #expect(hints.first { $0.target == "n3" }?.record == tombstone(9))
            reader.close()
            #expect(throws: StorageError.self) { try reader.dataPage(after: nil, recordsMax: 1) }
            // Nothing written into the checkpoint's files.
            let afterwards = try checkpoint.files.map { try CheckpointTests.fakeHash("\(checkpoint.path)/\($0.name)") }
            #expect(before == afterwards)
        }
    }

    @Test func aFolderThatIsNoStoreIsRefused() throws {
        try withTemporaryDirectory { path throws in
            let refused = #expect(throws: StorageError.self) { try RocksDBCheckpointReader(directory: path) }
            #expect(refused?.code == .openFailed)
        }
    }
}
