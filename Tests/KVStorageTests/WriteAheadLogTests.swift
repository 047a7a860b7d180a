import Foundation
import KVCore
import KVStorage
import Testing

/// The write-ahead log stays bounded although the small column families seldom flush: with a bound
/// of 1 MiB, 8 MiB of values leave at most a few MiB of log files (without it, all 8).
struct WriteAheadLogTests {
    @Test func theLogStaysNearItsBoundWhenOnlyTheDataFamilyIsBusy() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .none, walBytesMax: 1 << 20)
            defer { store.close() }
            // A write to the metadata family first: its memtable then holds the oldest log file.
            try store.setMetadata("wal-test", [1])
            let value = [UInt8](repeating: 7, count: 8 << 10)
            for index in 0..<1024 {
                let record = StoredRecord(
                    version: Version(hlc: UInt64(index + 1) << 16, writer: 1), tombstone: false, value: value)
                _ = try store.apply(key: Array("wal-\(index)".utf8), record: record)
            }
            // RocksDB flushes and deletes the old log files in the background: wait for it (60 s at
            // most; without the bound the log stays at every byte written). It checks the bound when a
            // write comes: on a busy machine the last write can come before the flush it asked for is
            // done, so a trickle of writes goes on meanwhile, as on a live node.
            // A file listed may be gone when its size is asked for (RocksDB deleted it meanwhile): 0 bytes.
            func logBytes() throws -> Int {
                try FileManager.default.contentsOfDirectory(atPath: path)
                    .filter { $0.hasSuffix(".log") }
                    .reduce(0) { total, name in
                        let attributes = try? FileManager.default.attributesOfItem(atPath: "\(path)/\(name)")
                        return total + (attributes?[.size] as? Int ?? 0)
                    }
            }
            let deadline = ContinuousClock.now + .seconds(60)
            var trickle = 0
            while try logBytes() >= 4 << 20, ContinuousClock.now < deadline {
                Thread.sleep(forTimeInterval: 0.05)
                trickle += 1
                let record = StoredRecord(
                    version: Version(hlc: UInt64(1024 + trickle) << 16, writer: 1), tombstone: false, value: [1])
                _ = try store.apply(key: Array("wal-trickle-\(trickle)".utf8), record: record)
            }
            let logBytes = try logBytes()
            #expect(logBytes < 4 << 20, "\(logBytes) bytes of write-ahead log for a bound of 1 MiB")
            #expect(try store.metadata("wal-test") == [1])
        }
    }
}
