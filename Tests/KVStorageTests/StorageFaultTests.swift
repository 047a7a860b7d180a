import Foundation
import KVCore
import KVStorage
import Synchronization
import Testing

/// `StorageFault`: after RocksDB answers a write or an fsync with an I/O error, every write of the
/// store is refused with that first error, before RocksDB is called (once a write to a failing disk
/// failed, the next one could abort the process); reads go on. A refusal made before RocksDB (the
/// disk reserve, a record too large) or another kind of answer does not stop the writes.
@Suite struct StorageFaultTests {
    @Test func afterAFailedWriteEveryWriteIsRefusedAndReadsGoOn() throws {
        try withTemporaryDirectory { path in
            let store = try RocksDBStore(directory: path, durability: .sync, walSync: .caller, diskReserveBytes: 0)
            defer { store.close() }
            _ = try store.apply(key: Array("kept".utf8), record: record(1, "v"))
            // Not failures of the disk: nothing is stopped.
            store.recordStorageFailureForTesting("Invalid argument: Column family not found")
            #expect(store.storageFailure == nil)
            _ = try store.apply(key: Array("still".utf8), record: record(2, "v"))

            store.recordStorageFailureForTesting("IO error: While appending to file: 000012.log: Input/output error")
            store.recordStorageFailureForTesting("IO error: a later one")
            let failure = try #require(store.storageFailure)
            #expect(failure.error.reason.contains("Input/output error"), "the first failure is kept")
            let refusals: [StorageError] = [
                try #require(throws: StorageError.self) {
                    try store.apply(key: Array("new".utf8), record: record(3, "v"))
                },
                try #require(throws: StorageError.self) {
                    try store.applyWithoutBlocking([StreamedRecord(key: Array("nb".utf8), record: record(4, "v"))])
                },
                try #require(throws: StorageError.self) {
                    try store.storeHints([hint("n2", "h", record(5, "v"))], queueMax: 10, bytesMax: 1 << 20)
                },
                try #require(throws: StorageError.self) { try store.setMetadata("note", [1]) },
                try #require(throws: StorageError.self) { try store.flush() },
            ]
            for refusal in refusals {
                #expect(refusal.code == .ioError)
                #expect(
                    refusal.description.contains("the node's storage failed at")
                        && refusal.description.contains("Input/output error")
                        && refusal.description.contains("refuses writes until it is restarted"), "\(refusal)")
            }
            let durable = Mutex<StorageError?>(nil)
            store.whenDurable { error in durable.withLock { $0 = error } }
            #expect(durable.withLock { $0 }?.code == .ioError, "no fsync after the failure")
            // Reads go on.
            #expect(try store.get(key: Array("kept".utf8))?.value == Array("v".utf8))
            #expect(try store.get(key: Array("new".utf8)) == nil, "nothing written")
        }
    }

    @Test func aCorruptionStopsTheWritesTooAndAReopenStartsAfresh() throws {
        try withTemporaryDirectory { path in
            do {
                let store = try RocksDBStore(directory: path, durability: .sync, diskReserveBytes: 0)
                _ = try store.apply(key: Array("kept".utf8), record: record(1, "v"))
                store.recordStorageFailureForTesting("Corruption: block checksum mismatch")
                #expect(store.storageFailure?.error.code == .corruption)
                #expect(throws: StorageError.self) { try store.apply(key: Array("x".utf8), record: record(2, "v")) }
                store.close()
            }
            let reopened = try RocksDBStore(directory: path, durability: .sync, diskReserveBytes: 0)
            defer { reopened.close() }
            #expect(reopened.storageFailure == nil)
            _ = try reopened.apply(key: Array("x".utf8), record: record(2, "v"))
            #expect(try reopened.get(key: Array("kept".utf8))?.value == Array("v".utf8))
        }
    }
}
