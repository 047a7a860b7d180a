import Foundation
import KVCore
import KVStorage
import Synchronization
import Testing

/// The `ReplicaStore` contract, checked on every implementation and durability mode.
@Suite struct ReplicaStoreTests {
    @Test(arguments: StoreKind.allCases)
    func newerVersionApplies(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            #expect(try store.get(key: key("k")) == nil)
            #expect(try store.apply(key: key("k"), record: record(10, "a")) == .applied)
            #expect(try store.apply(key: key("k"), record: record(20, "b")) == .applied)
            #expect(try store.get(key: key("k")) == record(20, "b"))
            // The writer id breaks a tie between equal HLCs.
            #expect(try store.apply(key: key("k"), record: record(20, writer: 2, "c")) == .applied)
            #expect(try store.get(key: key("k")) == record(20, writer: 2, "c"))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func olderVersionIsSupersededAndChangesNothing(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            _ = try store.apply(key: key("k"), record: record(20, writer: 2, "new"))
            let outcome = try store.apply(key: key("k"), record: record(10, "old"))
            #expect(outcome == .superseded(current: Version(hlc: 20, writer: 2)))
            let tie = try store.apply(key: key("k"), record: record(20, writer: 1, "old"))
            #expect(tie == .superseded(current: Version(hlc: 20, writer: 2)))
            #expect(try store.get(key: key("k")) == record(20, writer: 2, "new"))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func equalVersionIsIdempotent(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            #expect(try store.apply(key: key("k"), record: record(7, "v")) == .applied)
            #expect(try store.apply(key: key("k"), record: record(7, "v")) == .applied)
            #expect(try store.get(key: key("k")) == record(7, "v"))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func tombstonesAreStoredAndReturned(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            _ = try store.apply(key: key("k"), record: record(1, "v"))
            #expect(try store.apply(key: key("k"), record: tombstone(2)) == .applied)
            #expect(try store.get(key: key("k")) == tombstone(2))
            // A tombstone is a version like any other: older writes cannot resurrect the key.
            #expect(
                try store.apply(key: key("k"), record: record(1, "v"))
                    == .superseded(current: Version(hlc: 2, writer: 1))
            )
            #expect(try store.apply(key: key("k"), record: record(3, "back")) == .applied)
            #expect(try store.get(key: key("k")) == record(3, "back"))
            // A tombstone for a key never written is kept too.
            #expect(try store.apply(key: key("never"), record: tombstone(5)) == .applied)
            #expect(try store.get(key: key("never")) == tombstone(5))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func metadataRoundTrips(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            #expect(try store.metadata("node.id") == nil)
            try store.setMetadata("node.id", [1, 2, 3])
            try store.setMetadata("cluster.map", [])
            #expect(try store.metadata("node.id") == [1, 2, 3])
            #expect(try store.metadata("cluster.map") == [])
            try store.setMetadata("node.id", [9])
            #expect(try store.metadata("node.id") == [9])
            // Metadata and data live apart: a data key with the same bytes is unaffected.
            #expect(try store.get(key: key("node.id")) == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func emptyAndBinaryKeysAreDistinct(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            _ = try store.apply(key: [], record: record(1, "empty"))
            _ = try store.apply(key: [0], record: record(1, "zero"))
            _ = try store.apply(key: [0, 0], record: record(1, "zero-zero"))
            #expect(try store.get(key: []) == record(1, "empty"))
            #expect(try store.get(key: [0]) == record(1, "zero"))
            #expect(try store.get(key: [0, 0]) == record(1, "zero-zero"))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func largestKeyAndMegabyteValueRoundTrip(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            var generator = SplitMix64(seed: 42)
            let bigKey = (0..<Limits.keyBytesMax).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            let bigValue = (0..<(1 << 20)).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            let big = StoredRecord(version: Version(hlc: 1, writer: 1), tombstone: false, value: bigValue)
            #expect(try store.apply(key: bigKey, record: big) == .applied)
            #expect(try store.get(key: bigKey) == big)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func oversizedKeyIsRefused(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            let tooLong = [UInt8](repeating: 7, count: Limits.keyBytesMax + 1)
            let error = #expect(throws: StorageError.self) {
                try store.apply(key: tooLong, record: record(1, "v"))
            }
            #expect(error?.code == .invalidRecord)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func approximateKeyCountSeesWrites(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            for index in 0..<100 {
                _ = try store.apply(key: key("key-\(index)"), record: record(1, "v"))
            }
            let count = store.approximateKeyCount()
            if kind == .inMemory {
                #expect(count == 100)
            } else {
                #expect(count > 0)
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func callsAfterCloseThrowClosed(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            _ = try store.apply(key: key("k"), record: record(1, "v"))
            store.close()
            store.close()
            #expect(throws: StorageError.closed) { try store.get(key: key("k")) }
            #expect(throws: StorageError.closed) { try store.apply(key: key("k"), record: record(2, "v")) }
            #expect(throws: StorageError.closed) { try store.metadata("m") }
            #expect(throws: StorageError.closed) { try store.setMetadata("m", []) }
            #expect(store.approximateKeyCount() == 0)
        }
    }

    /// 8 threads × 500 writes with random versions over 16 shared keys: whatever the interleaving,
    /// each key ends at the greatest version any thread wrote, with that write's value, and every
    /// `superseded` answer names a version newer than the write it refused.
    @Test(arguments: StoreKind.allCases)
    func concurrentWritersKeepTheGreatestVersion(_ kind: StoreKind) throws {
        let seed = UInt64.random(in: .min ... .max)
        let threads = 8
        let writesPerThread = 500
        let keyCount = 16
        try withStore(kind) { store throws in
            let greatest = Mutex<[Int: Version]>([:])
            let violations = Mutex<[String]>([])
            runOnThreads(count: threads) { thread in
                var generator = SplitMix64(seed: seed &+ UInt64(thread))
                var mine: [Int: Version] = [:]
                for _ in 0..<writesPerThread {
                    let index = Int.random(in: 0..<keyCount, using: &generator)
                    let version = Version(hlc: .random(in: 1...1_000, using: &generator), writer: UInt64(thread + 1))
                    let write = StoredRecord(version: version, tombstone: false, value: Array("\(version)".utf8))
                    do {
                        switch try store.apply(key: key("shared-\(index)"), record: write) {
                        case .applied:
                            break
                        case .superseded(let current):
                            if current <= version {
                                violations.withLock { $0.append("superseded \(version) by older \(current)") }
                            }
                        }
                    } catch {
                        violations.withLock { $0.append("apply failed: \(error)") }
                    }
                    mine[index] = max(mine[index] ?? .zero, version)
                }
                greatest.withLock { greatest in
                    greatest.merge(mine) { max($0, $1) }
                }
            }
            #expect(violations.withLock { $0 } == [], "seed \(seed)")
            for (index, version) in greatest.withLock({ $0 }) {
                let stored = try store.get(key: key("shared-\(index)"))
                #expect(stored?.version == version, "key shared-\(index), seed \(seed)")
                #expect(stored?.value == Array("\(version)".utf8), "key shared-\(index), seed \(seed)")
            }
        }
    }
}
