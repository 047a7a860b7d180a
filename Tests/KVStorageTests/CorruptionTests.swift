import Foundation
import KVCore
import KVStorage
import Testing

/// Damaged data files: RocksDB's block checksums find them, the store reports `.corruption`, and it
/// never answers with bytes other than the ones written.
@Suite struct CorruptionTests {
    static let keyCount = 2_000

    static func value(_ index: Int) -> [UInt8] {
        Array("value-\(index)-".utf8) + [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 200)
    }

    /// Writes the keys and flushes them into SST files, then closes the store.
    static func writeTable(at path: String) throws {
        let store = try RocksDBStore(directory: path, durability: .sync)
        defer { store.close() }
        for index in 0..<keyCount {
            _ = try store.apply(key: Array("key-\(index)".utf8), record: record(UInt64(index + 1), "\(index)"))
        }
        for index in 0..<keyCount {
            // A second version with a longer value, so that blocks hold real data.
            _ = try store.apply(
                key: Array("key-\(index)".utf8),
                record: StoredRecord(
                    version: Version(hlc: UInt64(index + 1_000_000), writer: 1), tombstone: false, value: value(index)))
        }
        try store.flush()
    }

    @Test func damagedTableIsReportedAndNeverServed() throws {
        try withTemporaryDirectory { path in
            try Self.writeTable(at: path)
            let (file, size) = try StorageFaults.damageLargestTable(in: path)
            #expect(size > 16_384, "the table is too small to damage its middle: \(size) bytes")
            let store: RocksDBStore
            do {
                store = try RocksDBStore(directory: path, durability: .sync)
            } catch let error as StorageError {
                // Reported at start-up: acceptable, as long as it says what is wrong.
                #expect(error.code == .corruption || error.code == .openFailed, "\(error)")
                return
            }
            defer { store.close() }
            var corrupt = 0
            for index in 0..<Self.keyCount {
                do {
                    let found = try store.get(key: Array("key-\(index)".utf8))
                    // Whatever is served is exactly what was written.
                    #expect(found?.value == Self.value(index), "key-\(index) served bytes that were never written")
                    #expect(found?.version == Version(hlc: UInt64(index + 1_000_000), writer: 1))
                } catch let error as StorageError {
                    #expect(error.code == .corruption, "key-\(index): \(error)")
                    #expect("\(error)".lowercased().contains("corrupt"), "\(error)")
                    corrupt += 1
                }
            }
            #expect(corrupt > 0, "64 damaged bytes in \(file) went unnoticed")
        }
    }
}
