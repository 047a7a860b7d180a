import Foundation
import KVCore
import KVStorage
import Synchronization
import Testing

/// A store that holds data, hints and repair marks, as both implementations do.
typealias FullStore = HintStore & RepairMarkStore & ReplicaStore

/// A new, empty store of `kind`, closed and deleted when `body` returns or throws.
func withFullStore<Result>(_ kind: StoreKind, _ body: (any FullStore) throws -> Result) throws -> Result {
    try withStore(kind, body)
}

private func span(_ start: UInt64, _ end: UInt64) -> TokenRangeSpan {
    TokenRangeSpan(start: start, end: end)
}

/// The `RepairMarkStore` contract, checked on every implementation and durability mode.
@Suite struct RepairMarkStoreTests {
    @Test(arguments: StoreKind.allCases)
    func marksAreListedInOrder(_ kind: StoreKind) throws {
        try withFullStore(kind) { store throws in
            #expect(store.rangesDue().isEmpty)
            #expect(try store.markDue(replica: "n2", range: span(500, 600), atMillis: 3))
            #expect(try store.markDue(replica: "n10", range: span(100, 200), atMillis: 1))
            #expect(try store.markDue(replica: "n2", range: span(.max - 5, 10), atMillis: 2))
            #expect(try store.markDue(replica: "n2", range: span(100, 200), atMillis: 4))
            // By replica bytes ("n10" < "n2"), then start, then end.
            #expect(
                store.rangesDue() == [
                    RepairMark(replica: "n10", range: span(100, 200), firstMarkedMillis: 1),
                    RepairMark(replica: "n2", range: span(100, 200), firstMarkedMillis: 4),
                    RepairMark(replica: "n2", range: span(500, 600), firstMarkedMillis: 3),
                    RepairMark(replica: "n2", range: span(.max - 5, 10), firstMarkedMillis: 2),
                ])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func markingAgainKeepsOneMarkAndItsFirstTime(_ kind: StoreKind) throws {
        try withFullStore(kind) { store throws in
            #expect(try store.markDue(replica: "n1", range: span(10, 20), atMillis: 1_000))
            #expect(try !store.markDue(replica: "n1", range: span(10, 20), atMillis: 2_000))
            #expect(try !store.markDue(replica: "n1", range: span(10, 20), atMillis: 500))
            #expect(store.rangesDue() == [RepairMark(replica: "n1", range: span(10, 20), firstMarkedMillis: 1_000)])
            // Another range, or the same range of another replica, is another mark.
            #expect(try store.markDue(replica: "n1", range: span(10, 21), atMillis: 3_000))
            #expect(try store.markDue(replica: "n11", range: span(10, 20), atMillis: 3_000))
            #expect(store.rangesDue().count == 3)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func clearRemovesOneMarkAndIsIdempotent(_ kind: StoreKind) throws {
        try withFullStore(kind) { store throws in
            try store.markDue(replica: "n1", range: span(10, 20), atMillis: 1)
            try store.markDue(replica: "n1", range: span(20, 30), atMillis: 2)
            try store.markDue(replica: "n2", range: span(10, 20), atMillis: 3)
            try store.clearDue(replica: "n1", range: span(10, 20))
            #expect(
                store.rangesDue() == [
                    RepairMark(replica: "n1", range: span(20, 30), firstMarkedMillis: 2),
                    RepairMark(replica: "n2", range: span(10, 20), firstMarkedMillis: 3),
                ])
            try store.clearDue(replica: "n1", range: span(10, 20))
            try store.clearDue(replica: "n9", range: span(1, 2))
            #expect(store.rangesDue().count == 2)
            // A cleared range can be marked again, with its new time.
            #expect(try store.markDue(replica: "n1", range: span(10, 20), atMillis: 9))
            #expect(store.rangesDue().first == RepairMark(replica: "n1", range: span(10, 20), firstMarkedMillis: 9))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func invalidReplicaIsRefused(_ kind: StoreKind) throws {
        try withFullStore(kind) { store throws in
            for replica in ["", String(repeating: "n", count: Limits.nameBytesMax + 1)] {
                let error = #expect(throws: StorageError.self) {
                    try store.markDue(replica: replica, range: span(1, 2), atMillis: 1)
                }
                #expect(error?.code == .invalidRecord)
                #expect(throws: StorageError.self) { try store.clearDue(replica: replica, range: span(1, 2)) }
            }
            #expect(
                try store.markDue(
                    replica: String(repeating: "n", count: Limits.nameBytesMax), range: span(1, 2), atMillis: 1))
            #expect(store.rangesDue().count == 1)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func marksLiveApartFromMetadataHintsAndData(_ kind: StoreKind) throws {
        try withFullStore(kind) { store throws in
            try store.setMetadata("node.id", Array("n1".utf8))
            _ = try store.apply(key: key("k"), record: record(1, "v"))
            _ = try store.storeHint(hint("n2", "k", record(1, "v")), queueMax: 10)
            try store.markDue(replica: "n2", range: span(1, 2), atMillis: 1)
            #expect(store.rangesDue().count == 1)
            #expect(try store.metadata("node.id") == Array("n1".utf8))
            #expect(store.hintQueueSizes() == ["n2": 1])
            #expect(store.approximateKeyCount() <= 2)
            // Metadata names cannot reach into the marks.
            let error = #expect(throws: StorageError.self) {
                try store.setMetadata(RepairMarkCodec.prefixName + "x", [1])
            }
            #expect(error?.code == .invalidRecord)
            #expect(store.rangesDue().count == 1)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func closedStoreRefusesMarkCalls(_ kind: StoreKind) throws {
        try withFullStore(kind) { store throws in
            try store.markDue(replica: "n1", range: span(1, 2), atMillis: 1)
            store.close()
            #expect(store.rangesDue().isEmpty)
            let error = #expect(throws: StorageError.self) {
                try store.markDue(replica: "n1", range: span(3, 4), atMillis: 1)
            }
            #expect(error?.code == .closed)
            #expect(throws: StorageError.self) { try store.clearDue(replica: "n1", range: span(1, 2)) }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentMarksOfOneRangeMakeOneNewMark(_ kind: StoreKind) throws {
        try withFullStore(kind) { store throws in
            let fresh = Atomic<Int>(0)
            runOnThreads(count: 8) { _ in
                for round in 0..<20 {
                    if (try? store.markDue(replica: "n1", range: span(UInt64(round), 1_000), atMillis: 1)) == true {
                        fresh.add(1, ordering: .relaxed)
                    }
                }
            }
            #expect(fresh.load(ordering: .relaxed) == 20, "each of the 20 ranges is new exactly once")
            #expect(store.rangesDue().count == 20)
        }
    }
}

/// What only the RocksDB store has: a disk.
@Suite struct RocksDBRepairMarkTests {
    @Test(arguments: [Durability.sync, .interval(.milliseconds(5)), Durability.none])
    func marksSurviveReopen(_ durability: Durability) throws {
        try withTemporaryDirectory { path throws in
            do {
                let store = try RocksDBStore(directory: path, durability: durability)
                defer { store.close() }
                try store.markDue(replica: "n2", range: span(10, 20), atMillis: 1_000)
                try store.markDue(replica: "n3", range: span(.max, 5), atMillis: 2_000)
                try store.markDue(replica: "n3", range: span(30, 40), atMillis: 3_000)
                try store.flush()
                // After the flush, some in table files, some only in the log.
                try store.clearDue(replica: "n3", range: span(30, 40))
                try store.markDue(replica: "n4", range: span(7, 7), atMillis: 4_000)
                try store.setMetadata("node.id", Array("n1".utf8))
            }
            let store = try RocksDBStore(directory: path, durability: durability)
            defer { store.close() }
            #expect(
                store.rangesDue() == [
                    RepairMark(replica: "n2", range: span(10, 20), firstMarkedMillis: 1_000),
                    RepairMark(replica: "n3", range: span(.max, 5), firstMarkedMillis: 2_000),
                    RepairMark(replica: "n4", range: span(7, 7), firstMarkedMillis: 4_000),
                ])
            // Idempotence holds across the restart: the first time stays.
            #expect(try !store.markDue(replica: "n2", range: span(10, 20), atMillis: 9_000))
            #expect(store.rangesDue().first?.firstMarkedMillis == 1_000)
            #expect(try store.metadata("node.id") == Array("n1".utf8))
        }
    }

    @Test func corruptMarkFailsTheOpen() throws {
        try withTemporaryDirectory { path throws in
            do {
                let store = try RocksDBStore(directory: path)
                defer { store.close() }
                try store.writeRawRepairMarkForTesting(
                    key: RepairMarkCodec.storageKey(replica: Array("n1".utf8), range: span(1, 2)), value: [9, 9])
            }
            let error = #expect(throws: StorageError.self) { try RocksDBStore(directory: path) }
            #expect(error?.code == .corruption)
        }
    }
}

/// The layout documented in `RepairMarkCodec` and `docs/storage.md`.
@Suite struct RepairMarkCodecTests {
    @Test func encodesTheDocumentedLayout() throws {
        let key = RepairMarkCodec.storageKey(
            replica: Array("n1".utf8), range: span(0x0102_0304_0506_0708, 0x1112_1314_1516_1718))
        #expect(
            key
                == Array("antientropy.due/".utf8) + [
                    0x00, 0x02, 0x6E, 0x31,
                    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                    0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
                ])
        let value = RepairMarkCodec.encodeValue(firstMarkedMillis: 0x2122_2324_2526_2728)
        #expect(value == [0x01, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28])
        #expect(
            try RepairMarkCodec.decode(key: key, value: value)
                == RepairMark(
                    replica: "n1", range: span(0x0102_0304_0506_0708, 0x1112_1314_1516_1718),
                    firstMarkedMillis: 0x2122_2324_2526_2728))
    }

    static let malformed: [(key: [UInt8], value: [UInt8])] = {
        let key = RepairMarkCodec.storageKey(replica: Array("n1".utf8), range: span(1, 2))
        let value = RepairMarkCodec.encodeValue(firstMarkedMillis: 5)
        return [
            (key, []),
            (key, [2] + value.dropFirst()),
            (key, value + [0]),
            (Array(key.dropLast()), value),
            (key + [0], value),
            (RepairMarkCodec.prefix + [0x00], value),
            (RepairMarkCodec.prefix + [0x00, 0x00] + [UInt8](repeating: 0, count: 16), value),
            (RepairMarkCodec.prefix + [0x00, 0x01, 0xFF] + [UInt8](repeating: 0, count: 16), value),
        ]
    }()

    @Test(arguments: malformed)
    func malformedMarkIsCorruption(_ key: [UInt8], _ value: [UInt8]) {
        let error = #expect(throws: StorageError.self) { try RepairMarkCodec.decode(key: key, value: value) }
        #expect(error?.code == .corruption)
    }
}
