import Foundation
import KVCore
import Synchronization
import Testing

@testable import KVStorage

/// A `data` memtable overwrites a record in place when the new one is no longer
/// (`inplace_update_support`): the memtable keeps one entry a key, what is read is always the latest
/// record, whole, by a get, after a restart, and by a scan running beside the writer.
@Suite struct InPlaceUpdateTests {
    /// A record of `hlc` whose value is `bytes` bytes, each the low byte of `hlc`: a record read with
    /// bytes of two writes shows it.
    private static func stamped(_ hlc: UInt64, bytes: Int) -> StoredRecord {
        StoredRecord(
            version: Version(hlc: hlc, writer: 1), tombstone: false,
            value: [UInt8](repeating: UInt8(truncatingIfNeeded: hlc), count: bytes))
    }

    private static func isWhole(_ record: StoredRecord) -> Bool {
        record.version.writer == 1 && record.value.allSatisfy { $0 == UInt8(truncatingIfNeeded: record.version.hlc) }
    }

    @Test func overwritesKeepOneEntryAKeyAndTheLatestRecord() throws {
        try withTemporaryDirectory { path throws in
            let keys = (0..<100).map { key("over-\($0)") }
            do {
                let store = try RocksDBStore(directory: path, durability: .sync)
                defer { store.close() }
                for round in 0..<20 {
                    for (index, key) in keys.enumerated() {
                        let hlc = UInt64(1_000 * (round + 1) + index)
                        #expect(try store.apply(key: key, record: Self.stamped(hlc, bytes: 100)) == .applied)
                    }
                }
                #expect(try store.activeDataMemtableEntriesForTesting() == UInt64(keys.count))
                // A longer record cannot take the place of a shorter one: it goes beside it.
                #expect(try store.apply(key: keys[0], record: Self.stamped(50_000, bytes: 101)) == .applied)
                #expect(try store.activeDataMemtableEntriesForTesting() == UInt64(keys.count + 1))
                // An older write is still superseded by the record written over in place.
                #expect(
                    try store.apply(key: keys[1], record: Self.stamped(2, bytes: 100))
                        == .superseded(current: Version(hlc: 20_001, writer: 1)))
                #expect(try store.get(key: keys[0]) == Self.stamped(50_000, bytes: 101))
                #expect(try store.get(key: keys[1]) == Self.stamped(20_001, bytes: 100))
            }
            // Reopened: the log replays to the same records, the version index and segments agree.
            let store = try RocksDBStore(directory: path, durability: .sync)
            defer { store.close() }
            #expect(try store.get(key: keys[0]) == Self.stamped(50_000, bytes: 101))
            for (index, key) in keys.enumerated().dropFirst() {
                #expect(try store.get(key: key) == Self.stamped(UInt64(20_000 + index), bytes: 100))
            }
            let listing = try store.merkleListing(of: TokenRangeSpan(start: 0, end: 0))
            #expect(listing.count == keys.count)
            #expect(try store.merkleSegments() == MerkleSegments(entries: listing))
        }
    }

    /// A writer overwrites 8 keys with 16 KB records as fast as it can while this thread streams and
    /// lists the whole ring and gets each key: every record streamed or read is one write's, whole
    /// (none is half of one record and half of the next), and every listed version is one that was
    /// written. (Without the stripes around a scan's copy, streams read torn records here.)
    @Test func aScanBesideAWriterReadsEveryRecordWhole() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .none)
            defer { store.close() }
            let keys = (0..<8).map { key("torn-\($0)") }
            let bytes = 16 * 1024
            for (index, key) in keys.enumerated() {
                _ = try store.apply(key: key, record: Self.stamped(UInt64(index), bytes: bytes))
            }
            let writing = Atomic<Bool>(true)
            let writerFailure = Mutex<String?>(nil)
            let deadline = ContinuousClock.now + .seconds(4)
            let writer = Thread {
                defer { writing.store(false, ordering: .releasing) }
                var hlc = UInt64(keys.count)
                while hlc < 200_000, ContinuousClock.now < deadline {
                    do {
                        _ = try store.apply(key: keys[Int(hlc % 8)], record: Self.stamped(hlc, bytes: bytes))
                    } catch {
                        writerFailure.withLock { $0 = "\(error)" }
                        return
                    }
                    hlc += 1
                }
            }
            writer.start()
            var torn = 0
            var scans = 0
            let ring = TokenRangeSpan(start: 0, end: 0)
            while writing.load(ordering: .acquiring) {
                let page = try store.streamPage(in: ring, after: nil, recordsMax: 100, bytesMax: 1 << 20)
                torn += page.records.count { !Self.isWhole($0.record) }
                let listing = try store.merkleListing(of: ring)
                torn += listing.count { entry in
                    entry.version.writer != 1 || keys.firstIndex(of: entry.key) != Int(entry.version.hlc % 8)
                }
                for key in keys {
                    torn += try store.get(key: key).map { Self.isWhole($0) ? 0 : 1 } ?? 1
                }
                scans += 1
            }
            #expect(writerFailure.withLock { $0 } == nil)
            #expect(scans > 0)
            #expect(torn == 0, "\(torn) records read torn in \(scans) scans")
        }
    }
}
