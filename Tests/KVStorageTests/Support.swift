import Dispatch
import Foundation
import KVCore
import KVStorage
import Synchronization

/// The stores every semantic test runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case inMemory
    case rocksDBSync
    case rocksDBInterval
    case rocksDBNone

    var description: String { rawValue }

    var durability: Durability? {
        switch self {
        case .inMemory: nil
        case .rocksDBSync: .sync
        case .rocksDBInterval: .interval(.milliseconds(5))
        case .rocksDBNone: Durability.none
        }
    }
}

/// A fresh directory under the system's temporary folder, removed when `body` returns or throws.
func withTemporaryDirectory<Result>(_ body: (String) throws -> Result) throws -> Result {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("quorumkv-storage-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

/// Everything both stores are: data, hints, repair marks, Merkle segments, tombstone purge, range
/// streaming.
typealias CompleteStore = HintStore & MerkleStore & RangeStreaming & RepairMarkStore & ReplicaStore & TombstonePurging

/// A new, empty store of `kind`, closed and deleted when `body` returns or throws.
func withStore<Result>(_ kind: StoreKind, _ body: (any CompleteStore) throws -> Result) throws -> Result {
    try withKeyspaceStore(kind) { store in try body(store) }
}

/// Runs `body(index)` on `count` dedicated threads at once and waits for all of them: the store's
/// calls block, so they belong on threads, not on the two-thread cooperative pool.
func runOnThreads(count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            body(index)
            group.leave()
        }
        thread.start()
    }
    group.wait()
}

/// Runs `close` on one thread once each of 4 others has made a `call` (thread, item), while they go
/// on calling until one throws (or 200,000 each, should none ever): how the calls ended, tallied
/// (`applied`, `closed`, `other: …`; `close failed: …` for `close` itself). For the gate that closing
/// and dropping shut.
func callsUntilClosed(
    close: @escaping @Sendable () throws -> Void, call: @escaping @Sendable (_ thread: Int, _ item: Int) throws -> Void
) -> [String: Int] {
    let outcomes = Mutex<[String: Int]>([:])
    let calling = DispatchSemaphore(value: 0)
    runOnThreads(count: 5) { thread in
        if thread == 0 {
            // Every caller is under way (bounded, should one never get there).
            for _ in 1...4 { _ = calling.wait(timeout: .now() + 30) }
            do { try close() } catch { outcomes.withLock { $0["close failed: \(error)", default: 0] += 1 } }
            return
        }
        for item in 0..<200_000 {
            let outcome: String
            do {
                try call(thread, item)
                outcome = "applied"
            } catch let error as StorageError where error.code == .closed {
                outcome = "closed"
            } catch {
                outcome = "other: \(error)"
            }
            outcomes.withLock { $0[outcome, default: 0] += 1 }
            if item == 0 { calling.signal() }
            if outcome != "applied" { break }
        }
    }
    return outcomes.withLock { $0 }
}

func record(_ hlc: UInt64, writer: UInt64 = 1, _ value: String) -> StoredRecord {
    StoredRecord(version: Version(hlc: hlc, writer: writer), tombstone: false, value: Array(value.utf8))
}

func tombstone(_ hlc: UInt64, writer: UInt64 = 1) -> StoredRecord {
    StoredRecord(version: Version(hlc: hlc, writer: writer), tombstone: true, value: [])
}

func key(_ text: String) -> [UInt8] { Array(text.utf8) }

/// A random batch over `keys`: a number of records drawn from `count`, versions 1...`hlcMax`, a fifth
/// of them tombstones. Few keys and versions, so a batch repeats keys and meets older, equal and newer
/// versions.
func randomBatch(
    over keys: [[UInt8]], count: ClosedRange<Int>, hlcMax: UInt64, using random: inout SplitMix64
) -> [StreamedRecord] {
    (0..<Int.random(in: count, using: &random)).map { _ in
        let hlc = UInt64.random(in: 1...hlcMax, using: &random)
        return StreamedRecord(
            key: keys.randomElement(using: &random)!,
            record: random.chance(0.2) ? tombstone(hlc) : record(hlc, "v\(hlc)"))
    }
}
