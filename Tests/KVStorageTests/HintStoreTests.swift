import Foundation
import KVCore
import KVStorage
import Synchronization
import Testing

/// A store that holds both data and hints, as both implementations do.
typealias ReplicaAndHintStore = HintStore & ReplicaStore

/// A new, empty store of `kind`, closed and deleted when `body` returns or throws.
func withHintStore<Result>(
    _ kind: StoreKind,
    _ body: (any ReplicaAndHintStore) throws -> Result
) throws -> Result {
    try withStore(kind, body)
}

func hint(
    _ target: String,
    _ key: String,
    _ stored: StoredRecord,
    at millis: UInt64 = 1_000
) -> StoredHint {
    StoredHint(target: target, key: Array(key.utf8), record: stored, storedAtMillis: millis)
}

/// The hints of `target`, without their ids.
func listed(_ store: any HintStore, _ target: String, limit: Int = .max) throws -> [StoredHint] {
    try store.hints(for: target, limit: limit).map(\.hint)
}

/// The `HintStore` contract, checked on every implementation and durability mode.
@Suite struct HintStoreTests {
    @Test(arguments: StoreKind.allCases)
    func hintsAreListedInVersionOrder(_ kind: StoreKind) throws {
        try withHintStore(kind) { store throws in
            var expiring = record(40, "v40")
            expiring.expiresAtMillis = 123_456  // a hint of a write with a time to live keeps its expiry
            let inserted = [
                hint("n1", "e", expiring),
                hint("n1", "c", record(30, "v30")),
                hint("n1", "a", record(10, writer: 2, "v10w2")),
                hint("n1", "z", record(20, "v20")),
                hint("n1", "b", record(10, writer: 1, "v10w1")),
                hint("n1", "a", record(20, "v20a")),
            ]
            for each in inserted {
                #expect(try store.storeHint(each, queueMax: 100) == .stored)
            }
            // hlc, then writer, then key bytes.
            #expect(
                try listed(store, "n1") == [
                    inserted[4], inserted[2], inserted[5], inserted[3], inserted[1], inserted[0],
                ])
            #expect(store.hintQueueSizes() == ["n1": 6])
            // The bytes held are the stored bytes, an expiring hint's expiry included, in either store.
            let encoded = inserted.reduce(0) { total, hint in
                total + HintCodec.storageKey(hint).count + HintCodec.encodeValue(hint).count
            }
            #expect(store.hintBytesHeld() == encoded)
        }
    }

    /// A replayer goes on after the last hint it handled, even when that hint was deleted since, and
    /// never sees another target's hints.
    @Test(arguments: StoreKind.allCases)
    func listingGoesOnAfterAGivenHint(_ kind: StoreKind) throws {
        try withHintStore(kind) { store throws in
            for hlc in UInt64(1)...10 {
                _ = try store.storeHint(hint("n1", "k\(hlc)", record(hlc, "v")), queueMax: 100)
                _ = try store.storeHint(hint("n10", "k\(hlc)", record(hlc, "v")), queueMax: 100)
            }
            let first = try store.hints(for: "n1", limit: 4)
            #expect(first.map(\.hint.record.version.hlc) == [1, 2, 3, 4])
            for entry in first { try store.deleteHint(entry.id) }
            let next = try store.hints(for: "n1", after: first.last!.id, limit: 4)
            #expect(next.map(\.hint.record.version.hlc) == [5, 6, 7, 8])
            #expect(next.allSatisfy { $0.hint.target == "n1" })
            let last = try store.hints(for: "n1", after: next.last!.id, limit: 100)
            #expect(last.map(\.hint.record.version.hlc) == [9, 10])
            #expect(try store.hints(for: "n1", after: last.last!.id, limit: 100).isEmpty)
            // Another target's id does not move the start.
            let other = try store.hints(for: "n10", limit: 1)
            #expect(try store.hints(for: "n1", after: other[0].id, limit: 1).map(\.hint.record.version.hlc) == [5])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func limitReturnsTheOldest(_ kind: StoreKind) throws {
        try withHintStore(kind) { store throws in
            for hlc in (1...5).reversed() {
                _ = try store.storeHint(hint("n1", "k\(hlc)", record(UInt64(hlc), "v")), queueMax: 100)
            }
            #expect(try listed(store, "n1", limit: 2).map(\.record.version.hlc) == [1, 2])
            #expect(try listed(store, "n1", limit: 5).count == 5)
            #expect(try listed(store, "n1", limit: 50).count == 5)
            #expect(try listed(store, "n1", limit: 0).isEmpty)
            #expect(try listed(store, "n1", limit: -1).isEmpty)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func deleteRemovesOneHintAndIsIdempotent(_ kind: StoreKind) throws {
        try withHintStore(kind) { store throws in
            for hlc in 1...3 {
                _ = try store.storeHint(hint("n1", "k", record(UInt64(hlc), "v\(hlc)")), queueMax: 100)
            }
            let first = try store.hints(for: "n1", limit: 1)[0]
            #expect(first.hint.record.version.hlc == 1)
            try store.deleteHint(first.id)
            #expect(try listed(store, "n1").map(\.record.version.hlc) == [2, 3])
            #expect(store.hintQueueSizes() == ["n1": 2])
            // A missing id is not an error and changes no count.
            try store.deleteHint(first.id)
            #expect(store.hintQueueSizes() == ["n1": 2])
            for (id, _) in try store.hints(for: "n1", limit: 10) {
                try store.deleteHint(id)
            }
            #expect(try listed(store, "n1").isEmpty)
            // A target with no hints left is absent.
            #expect(store.hintQueueSizes() == [:])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func targetsDoNotMix(_ kind: StoreKind) throws {
        try withHintStore(kind) { store throws in
            // "n1" is a byte prefix of "n10": only the length prefix keeps them apart.
            let forN1 = [hint("n1", "k", record(1, "a")), hint("n1", "k", record(5, "b"))]
            let forN10 = [
                hint("n10", "k", record(2, "c")), hint("n10", "k", record(3, "d")), hint("n10", "", record(4, "e")),
            ]
            for each in forN1 + forN10 {
                #expect(try store.storeHint(each, queueMax: 100) == .stored)
            }
            #expect(try listed(store, "n1") == forN1)
            #expect(try listed(store, "n10") == forN10)
            #expect(try listed(store, "n").isEmpty)
            #expect(try listed(store, "n2").isEmpty)
            #expect(store.hintQueueSizes() == ["n1": 2, "n10": 3])

            try store.deleteHint(try store.hints(for: "n10", limit: 1)[0].id)
            #expect(try listed(store, "n1") == forN1)
            #expect(store.hintQueueSizes() == ["n1": 2, "n10": 2])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func fullQueueRefusesAndStoresNothing(_ kind: StoreKind) throws {
        try withHintStore(kind) { store throws in
            for hlc in 1...3 {
                #expect(try store.storeHint(hint("n1", "k", record(UInt64(hlc), "v")), queueMax: 3) == .stored)
            }
            let refused = hint("n1", "other", record(0, "refused"))
            #expect(try store.storeHint(refused, queueMax: 3) == .refusedQueueFull)
            #expect(try !listed(store, "n1").contains(refused))
            #expect(store.hintQueueSizes() == ["n1": 3])
            // The bound is per target.
            #expect(try store.storeHint(hint("n2", "k", record(1, "v")), queueMax: 3) == .stored)
            // Replacing a stored hint does not grow the queue, so a full queue accepts it.
            let replacement = hint("n1", "k", record(2, "v"), at: 9_999)
            #expect(try store.storeHint(replacement, queueMax: 3) == .stored)
            #expect(try listed(store, "n1")[1] == replacement)
            #expect(store.hintQueueSizes() == ["n1": 3, "n2": 1])
            // Room again once one is delivered.
            try store.deleteHint(try store.hints(for: "n1", limit: 1)[0].id)
            #expect(try store.storeHint(refused, queueMax: 3) == .stored)
            #expect(try listed(store, "n1").first == refused)
            // A bound of zero (or less) refuses every new hint.
            #expect(try store.storeHint(hint("n3", "k", record(1, "v")), queueMax: 0) == .refusedQueueFull)
            #expect(try store.storeHint(hint("n3", "k", record(1, "v")), queueMax: -1) == .refusedQueueFull)
            #expect(store.hintQueueSizes() == ["n1": 3, "n2": 1])
        }
    }

    /// All targets' hints together stay within `bytesMax`: a target that never returns cannot fill the
    /// disk. Deleting makes room; the count survives a reopen (it is rebuilt from what is stored).
    @Test(arguments: StoreKind.allCases)
    func theBytesOfAllHintsAreBounded(_ kind: StoreKind) throws {
        try withHintStore(kind) { store throws in
            let one = hint("n1", "k1", record(1, String(repeating: "v", count: 100)))
            let size = HintCodec.storedBytes(one)
            #expect(try store.storeHint(one, queueMax: 100, bytesMax: 2 * size) == .stored)
            #expect(store.hintBytesHeld() == size)
            let other = hint("n2", "k1", record(1, String(repeating: "v", count: 100)))
            #expect(try store.storeHint(other, queueMax: 100, bytesMax: 2 * size) == .stored)
            let third = hint("n3", "k1", record(1, "v"))
            #expect(try store.storeHint(third, queueMax: 100, bytesMax: 2 * size) == .refusedStorageFull)
            #expect(store.hintQueueSizes() == ["n1": 1, "n2": 1])
            #expect(store.hintBytesHeld() == 2 * size)
            // Replacing with a smaller hint frees the difference.
            let smaller = hint("n1", "k1", record(1, "v"))
            #expect(try store.storeHint(smaller, queueMax: 100, bytesMax: 2 * size) == .stored)
            #expect(store.hintBytesHeld() == size + HintCodec.storedBytes(smaller))
            try store.deleteHint(try store.hints(for: "n2", limit: 1)[0].id)
            #expect(store.hintBytesHeld() == HintCodec.storedBytes(smaller))
            #expect(try store.storeHint(third, queueMax: 100, bytesMax: 2 * size) == .stored)
            #expect(
                try store.storeHint(hint("n4", "k", record(1, "v")), queueMax: 100, bytesMax: 0) == .refusedStorageFull)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func sameWriteForSameTargetCountsOnce(_ kind: StoreKind) throws {
        try withHintStore(kind) { store throws in
            #expect(try store.storeHint(hint("n1", "k", record(7, "v"), at: 1), queueMax: 10) == .stored)
            #expect(try store.storeHint(hint("n1", "k", record(7, "v"), at: 2), queueMax: 10) == .stored)
            #expect(store.hintQueueSizes() == ["n1": 1])
            // The later store replaces the earlier one.
            #expect(try listed(store, "n1") == [hint("n1", "k", record(7, "v"), at: 2)])
            // Another key, writer or target at the same hlc is another hint.
            _ = try store.storeHint(hint("n1", "k2", record(7, "v")), queueMax: 10)
            _ = try store.storeHint(hint("n1", "k", record(7, writer: 2, "v")), queueMax: 10)
            _ = try store.storeHint(hint("n2", "k", record(7, "v")), queueMax: 10)
            #expect(store.hintQueueSizes() == ["n1": 3, "n2": 1])
        }
    }

    static let roundTripped: [StoredHint] = [
        hint("n1", "value", record(1, "some value")),
        hint("n1", "empty value", record(2, "")),
        hint("n1", "deleted", tombstone(3)),
        StoredHint(
            target: "nœud-ü",
            key: [0, 0xFF, 0],
            record: StoredRecord(version: Version(hlc: .max, writer: .max), tombstone: false, value: [0, 1, 0xFF]),
            storedAtMillis: .max
        ),
        StoredHint(
            target: "n1",
            key: [],
            record: StoredRecord(
                version: Version(hlc: 0, writer: 0), tombstone: false, value: Array(repeating: 7, count: 300)),
            storedAtMillis: 0
        ),
    ]

    @Test(arguments: StoreKind.allCases)
    func valuesAndTombstonesRoundTrip(_ kind: StoreKind) throws {
        try withHintStore(kind) { store throws in
            // A megabyte value is built here, not passed as an argument: arguments are printed.
            let large = hint(
                "n2", "large",
                StoredRecord(
                    version: Version(hlc: 1, writer: 1), tombstone: false, value: Array(repeating: 7, count: 1 << 20)))
            for each in Self.roundTripped + [large] {
                #expect(try store.storeHint(each, queueMax: 10) == .stored)
                #expect(try listed(store, each.target).contains(each))
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func largestKeyIsAccepted(_ kind: StoreKind) throws {
        try withHintStore(kind) { store throws in
            let largest = StoredHint(
                target: String(repeating: "t", count: Limits.nameBytesMax),
                key: Array(repeating: 0xAB, count: Limits.keyBytesMax),
                record: record(1, "v"),
                storedAtMillis: 1
            )
            #expect(try store.storeHint(largest, queueMax: 10) == .stored)
            #expect(try listed(store, largest.target) == [largest])
            let id = try store.hints(for: largest.target, limit: 1)[0].id
            try store.deleteHint(id)
            #expect(store.hintQueueSizes() == [:])
        }
    }

    static let refused: [StoredHint] = [
        StoredHint(
            target: "n1",
            key: Array(repeating: 0, count: Limits.keyBytesMax + 1),
            record: record(1, "v"),
            storedAtMillis: 1
        ),
        hint("", "k", record(1, "v")),
        hint(String(repeating: "t", count: Limits.nameBytesMax + 1), "k", record(1, "v")),
        {
            var deleted = hint("n1", "k", tombstone(1))
            deleted.record.value = [1]  // bypasses StoredRecord.init's precondition
            return deleted
        }(),
    ]

    @Test(arguments: StoreKind.allCases)
    func invalidHintsAreRefused(_ kind: StoreKind) throws {
        try withHintStore(kind) { store throws in
            for each in Self.refused {
                let error = #expect(throws: StorageError.self) { try store.storeHint(each, queueMax: 10) }
                #expect(error?.code == .invalidRecord)
            }
            #expect(store.hintQueueSizes() == [:])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func hintsAndDataLiveApart(_ kind: StoreKind) throws {
        try withHintStore(kind) { store throws in
            _ = try store.storeHint(hint("n1", "k", record(1, "hinted")), queueMax: 10)
            #expect(try store.get(key: key("k")) == nil)
            _ = try store.apply(key: key("k"), record: record(2, "data"))
            #expect(try listed(store, "n1") == [hint("n1", "k", record(1, "hinted"))])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func closedStoreRefusesHintCalls(_ kind: StoreKind) throws {
        try withHintStore(kind) { store throws in
            _ = try store.storeHint(hint("n1", "k", record(1, "v")), queueMax: 10)
            let id = try store.hints(for: "n1", limit: 1)[0].id
            store.close()
            #expect(throws: StorageError.closed) { try store.storeHint(hint("n1", "k", record(2, "v")), queueMax: 10) }
            #expect(throws: StorageError.closed) { try store.hints(for: "n1", limit: 10) }
            #expect(throws: StorageError.closed) { try store.deleteHint(id) }
            #expect(store.hintQueueSizes() == [:])
        }
    }

    /// Concurrent writers of one target never overshoot the bound, and the count matches the log.
    @Test(arguments: StoreKind.allCases)
    func concurrentWritersRespectTheBound(_ kind: StoreKind) throws {
        try withHintStore(kind) { store throws in
            let outcomes = Mutex<[HintStoreOutcome]>([])
            runOnThreads(count: 8) { thread in
                for index in 0..<25 {
                    let each = hint("n1", "k\(thread)-\(index)", record(UInt64(index), "v"))
                    let outcome = try? store.storeHint(each, queueMax: 50)
                    outcomes.withLock { $0.append(outcome ?? .refusedQueueFull) }
                }
            }
            #expect(outcomes.withLock { $0.filter { $0 == .stored }.count } == 50)
            #expect(store.hintQueueSizes() == ["n1": 50])
            #expect(try listed(store, "n1").count == 50)
        }
    }
}

/// What only the RocksDB store has: a disk.
@Suite struct RocksDBHintStoreTests {
    @Test(arguments: [Durability.sync, .interval(.milliseconds(5)), Durability.none])
    func hintsAndSizesSurviveReopen(_ durability: Durability) throws {
        try withTemporaryDirectory { path throws in
            var stored: [StoredHint] = []
            do {
                let store = try RocksDBStore(directory: path, durability: durability)
                defer { store.close() }
                for hlc in 1...4 {
                    let each = hint("n1", "k", record(UInt64(hlc), "v\(hlc)"))
                    _ = try store.storeHint(each, queueMax: 10)
                    stored.append(each)
                }
                _ = try store.storeHint(hint("n10", "k", tombstone(9)), queueMax: 10)
                _ = try store.storeHint(hint("n2", "k", tombstone(9)), queueMax: 10)
                try store.deleteHint(try store.hints(for: "n2", limit: 1)[0].id)
                try store.flush()
                // After the flush, some in table files, some only in the log.
                _ = try store.storeHint(hint("n1", "k", record(5, "v5")), queueMax: 10)
                stored.append(hint("n1", "k", record(5, "v5")))
            }
            let store = try RocksDBStore(directory: path, durability: durability)
            defer { store.close() }
            #expect(store.hintQueueSizes() == ["n1": 5, "n10": 1])
            #expect(try listed(store, "n1") == stored)
            #expect(try listed(store, "n10") == [hint("n10", "k", tombstone(9))])
            // The bound applies to the reopened count.
            #expect(try store.storeHint(hint("n1", "x", record(6, "v")), queueMax: 5) == .refusedQueueFull)
            try store.deleteHint(try store.hints(for: "n1", limit: 1)[0].id)
            #expect(store.hintQueueSizes() == ["n1": 4, "n10": 1])
        }
    }

    @Test func corruptHintIsCorruption() throws {
        try withTemporaryDirectory { path throws in
            let damaged = hint("n1", "k", record(1, "v"))
            do {
                let store = try RocksDBStore(directory: path)
                defer { store.close() }
                try store.writeRawHintForTesting(key: HintCodec.storageKey(damaged), value: [9, 9, 9])
                let error = #expect(throws: StorageError.self) { try store.hints(for: "n1", limit: 10) }
                #expect(error?.code == .corruption)
                // Other targets are unaffected.
                _ = try store.storeHint(hint("n10", "k", record(1, "v")), queueMax: 10)
                #expect(try listed(store, "n10").count == 1)
            }
            // A value that does not decode is found when read, not when counting at open.
            do {
                let store = try RocksDBStore(directory: path)
                defer { store.close() }
                #expect(store.hintQueueSizes() == ["n1": 1, "n10": 1])
                #expect(throws: StorageError.self) { try store.hints(for: "n1", limit: 10) }
                // Storing the same write again replaces the damaged value.
                _ = try store.storeHint(damaged, queueMax: 10)
                #expect(try listed(store, "n1") == [damaged])
            }
            // A key that does not parse fails the open: the counts could not be trusted.
            do {
                let store = try RocksDBStore(directory: path)
                defer { store.close() }
                try store.writeRawHintForTesting(key: [0, 200, 1], value: HintCodec.encodeValue(damaged))
            }
            let error = #expect(throws: StorageError.self) { try RocksDBStore(directory: path) }
            #expect(error?.code == .corruption)
            // The failed open released the directory (a leaked LOCK would make this `.openFailed`).
            let again = #expect(throws: StorageError.self) { try RocksDBStore(directory: path) }
            #expect(again?.code == .corruption)
        }
    }
}

/// The on-disk layout documented in `HintCodec` and `docs/storage.md`.
@Suite struct HintCodecTests {
    @Test func encodesTheDocumentedLayout() {
        let each = StoredHint(
            target: "n1",
            key: [0xCC],
            record: StoredRecord(
                version: Version(hlc: 0x0102_0304_0506_0708, writer: 0x1112_1314_1516_1718),
                tombstone: false,
                value: [0xAA, 0xBB]
            ),
            storedAtMillis: 0x2122_2324_2526_2728
        )
        #expect(
            HintCodec.storageKey(each) == [
                0x00, 0x02, 0x6E, 0x31,
                0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
                0xCC,
            ]
        )
        #expect(
            HintCodec.encodeValue(each) == [
                0x01,
                0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
                0x00,
                0x00, 0x00, 0x00, 0x01,
                0xAA, 0xBB,
            ]
        )
        #expect(HintCodec.encodeValue(hint("n1", "k", tombstone(1)))[9] == 0x01)
    }

    @Test(arguments: HintStoreTests.roundTripped)
    func roundTrips(_ each: StoredHint) throws {
        #expect(try HintCodec.decode(key: HintCodec.storageKey(each), value: HintCodec.encodeValue(each)) == each)
    }

    static let key = HintCodec.storageKey(hint("n1", "k", record(1, "v")))
    static let header: [UInt8] = [1] + Array(repeating: 0, count: 8)

    static let malformedValues: [[UInt8]] = [
        [],
        header + [0, 0, 0, 0],  // 13 bytes
        [2] + Array(header.dropFirst()) + [0, 0, 0, 0, 1],  // unknown format
        header + [0x02, 0, 0, 0, 1],  // unknown flag
        header + [0x01, 0, 0, 0, 1, 0x55],  // tombstone with a value
        header + [0x00, 0, 0, 0, 2, 0x55],  // key length disagrees with the storage key
    ]

    @Test(arguments: malformedValues)
    func malformedValueIsCorruption(_ value: [UInt8]) {
        let error = #expect(throws: StorageError.self) { try HintCodec.decode(key: Self.key, value: value) }
        #expect(error?.code == .corruption)
    }

    static let malformedKeys: [[UInt8]] = [
        [],
        [0],
        [0, 0] + Array(repeating: 0, count: 16),  // empty target
        [0, 2, 0x6E, 0x31] + Array(repeating: 0, count: 15),  // version cut short
        [0, 1, 0xFF] + Array(repeating: 0, count: 16),  // target not UTF-8
    ]

    @Test(arguments: malformedKeys)
    func malformedKeyIsCorruption(_ storageKey: [UInt8]) {
        let value = HintCodec.encodeValue(hint("n1", "", record(1, "v")))
        let error = #expect(throws: StorageError.self) { try HintCodec.decode(key: storageKey, value: value) }
        #expect(error?.code == .corruption)
    }
}
