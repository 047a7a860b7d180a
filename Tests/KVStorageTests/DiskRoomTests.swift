import Foundation
import KVCore
import KVStorage
import Testing

/// `DiskRoom`: below the reserve, records and hints are refused with `diskFull` and nothing is
/// written; reads, metadata and deletes go on; a reserve of 0 refuses nothing.
@Suite struct DiskRoomTests {
    @Test func belowTheReserveRecordsAndHintsAreRefused() throws {
        let free = try #require(DiskRoom.bytesFree(FileManager.default.temporaryDirectory.path))
        try withTemporaryDirectory { path in
            do {
                let store = try RocksDBStore(directory: path, durability: .sync, diskReserveBytes: 0)
                _ = try store.apply(key: Array("kept".utf8), record: record(1, "v"))
                store.close()
            }
            // More than the file system has free: every record and hint is refused.
            let store = try RocksDBStore(directory: path, durability: .sync, diskReserveBytes: free * 2 + (1 << 30))
            defer { store.close() }
            let refused = try #require(throws: StorageError.self) {
                try store.apply(key: Array("new".utf8), record: record(2, "v"))
            }
            #expect(refused.code == .diskFull)
            #expect(refused.description.contains("below the node's reserve"), "\(refused)")
            #expect(try store.get(key: Array("new".utf8)) == nil, "nothing written")
            #expect(throws: StorageError.self) {
                try store.applyWithoutBlocking([StreamedRecord(key: Array("nb".utf8), record: record(3, "v"))])
            }
            #expect(throws: StorageError.self) {
                try store.storeHints([hint("n2", "h", record(4, "v"))], queueMax: 10, bytesMax: 1 << 20)
            }
            #expect(try store.hints(for: "n2", limit: 10).isEmpty)
            // Reads and metadata go on.
            #expect(try store.get(key: Array("kept".utf8))?.value == Array("v".utf8))
            try store.setMetadata("note", [1])
            #expect(try store.metadata("note") == [1])
        }
    }
}
