import Foundation
import KVCore
import KVStorage
import Synchronization
import Testing

/// Issue 21: `ReplicaStore.applyWithoutBlocking`, the write an event loop makes itself. It follows
/// `apply`'s rule to the letter, and declines (nil, nothing written) instead of waiting for a stripe
/// another writer holds, or the disk; with `sync` its writes are durable once `whenDurable` says so.
@Suite(.timeLimit(.minutes(3)))
struct NonblockingApplyTests {
    /// Random batches over few keys, applied without blocking: outcomes, records and Merkle segments
    /// equal those of a store fed one record at a time with `apply(key:record:)`.
    @Test(arguments: [StoreKind.rocksDBNone, .rocksDBInterval, .rocksDBSync])
    func itActsLikeApply(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            try withStore(.inMemory) { single throws in
                #expect(store.appliesWithoutBlocking)
                var random = SplitMix64(seed: 7)
                let keys = (0..<40).map { key("n-\($0)") }
                for round in 0..<30 {
                    let records = randomBatch(over: keys, count: 1...25, hlcMax: 40, using: &random)
                    let outcomes = try store.applyWithoutBlocking(records)
                    let expected = try records.map { try single.apply(key: $0.key, record: $0.record) }
                    #expect(outcomes == expected, "round \(round): nothing else writes, so nothing waits")
                }
                for key in keys {
                    #expect(try store.get(key: key) == single.get(key: key))
                }
                let segments = try store.merkleSegments()
                #expect(segments == (try single.merkleSegments()))
                try store.rebuildMerkleSegments()
                #expect(try store.merkleSegments() == segments, "the segments written match the records")
            }
        }
    }

    /// A store that cannot tell (in memory) never writes this way.
    @Test func aStoreThatCannotTellDeclines() throws {
        try withStore(.inMemory) { store throws in
            #expect(!store.appliesWithoutBlocking)
            #expect(try store.applyWithoutBlocking([StreamedRecord(key: key("k"), record: record(1, "v"))]) == nil)
            #expect(try store.get(key: key("k")) == nil)
        }
    }

    /// With `sync`, a write made without blocking is in the log, not fsynced: `whenDurable` calls back
    /// only after the WAL syncer's next fsync (held here, so it cannot come before), on the WAL syncer's
    /// thread. With `none` it calls back at once, on the caller's thread; once closed, with `.closed`.
    @Test func syncWritesAreDurableWhenTheSyncerSaysSo() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .sync)
            #expect(store.holdWALSyncsForTesting(true))
            let write = [StreamedRecord(key: key("k"), record: record(1, "v"))]
            #expect(try store.applyWithoutBlocking(write) == [.applied])
            let durable = DispatchSemaphore(value: 0)
            let answers = Mutex<[StorageError?]>([])
            store.whenDurable { error in
                answers.withLock { $0.append(error) }
                durable.signal()
            }
            #expect(answers.withLock { $0.isEmpty }, "not before an fsync")
            #expect(store.walSyncCountForTesting == 0)
            store.holdWALSyncsForTesting(false)
            #expect(durable.wait(timeout: .now() + 30) == .success)
            #expect(answers.withLock { $0.count == 1 && $0[0] == nil })
            #expect(store.walSyncCountForTesting >= 1)
            store.close()
            store.whenDurable { error in answers.withLock { $0.append(error) } }
            #expect(answers.withLock { $0.last??.code } == .closed)
        }
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .none)
            defer { store.close() }
            #expect(!store.holdWALSyncsForTesting(true), "not sync")
            let called = Mutex(false)
            store.whenDurable { error in called.withLock { $0 = error == nil } }
            #expect(called.withLock { $0 }, "at once, on this thread")
        }
    }

    /// `WALSyncMode.caller`: `whenDurable` fsyncs on the calling thread and calls back before it
    /// returns, one fsync a call; nothing is held. Closing waits for the callers fsyncing, and those
    /// after it hear `.closed`.
    @Test func syncWritesFsyncedByTheirCaller() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .sync, walSync: .caller)
            #expect(!store.holdWALSyncsForTesting(false), "no syncer thread to hold or let go")
            for index in 1...3 {
                let write = [StreamedRecord(key: key("k\(index)"), record: record(1, "v"))]
                #expect(try store.applyWithoutBlocking(write) == [.applied])
                let caller = pthread_self()
                let answered = Mutex<(error: StorageError?, onCaller: Bool, syncs: Int)?>(nil)
                store.whenDurable { error in
                    let syncs = store.walSyncCountForTesting
                    answered.withLock { $0 = (error, pthread_equal(pthread_self(), caller) != 0, syncs) }
                }
                let answer = try #require(answered.withLock { $0 }, "before whenDurable returned")
                #expect(answer.error == nil)
                #expect(answer.onCaller)
                #expect(answer.syncs == index, "after its own fsync")
            }
            store.close()
            let closed = Mutex<StorageError?>(nil)
            store.whenDurable { error in closed.withLock { $0 = error } }
            #expect(closed.withLock { $0?.code } == .closed)
        }
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .sync, walSync: .caller)
            let seen = callsUntilClosed(close: { store.close() }) { thread, item in
                let write = [StreamedRecord(key: key("t\(thread)-\(item)"), record: record(1, "v"))]
                _ = try store.applyWithoutBlocking(write)
                let failure = Mutex<StorageError?>(nil)
                store.whenDurable { error in failure.withLock { $0 = error } }
                if let error = failure.withLock({ $0 }) { throw error }
            }
            #expect(Set(seen.keys) == ["applied", "closed"], "\(seen)")
            #expect(seen["closed"] == 4)
        }
    }

    /// A stripe another writer holds: declined at once, nothing written; the same write goes through
    /// once the stripe is free. (A wait would never end, the stripe being this thread's: the suite's
    /// time limit fails it.)
    @Test func aHeldStripeDeclines() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .none)
            defer { store.close() }
            let write = [StreamedRecord(key: key("held"), record: record(3, "v"))]
            let declined = try store.withStripeHeldForTesting(key: key("held")) {
                try store.applyWithoutBlocking(write)
            }
            #expect(declined == nil)
            #expect(try store.get(key: key("held")) == nil)
            #expect(try store.applyWithoutBlocking(write) == [.applied])
            #expect(try store.get(key: key("held"))?.value == Array("v".utf8))
        }
    }

    /// A current version only in a table file (flushed, not in the block cache): declined, nothing
    /// written, and the batch's other records neither. Once a read brought it into the cache, it goes.
    @Test func aVersionOnlyOnDiskDeclines() throws {
        try withTemporaryDirectory { path throws in
            // Written, flushed to a table file, and the store opened again: its current headers, which
            // remember what it wrote, start empty.
            let writer = try RocksDBStore(directory: path, durability: .none)
            _ = try writer.apply(key: key("old"), record: record(5, "five"))
            try writer.flush()
            writer.close()
            let store = try RocksDBStore(directory: path, durability: .none)
            defer { store.close() }
            let batch = [
                StreamedRecord(key: key("fresh"), record: record(1, "one")),
                StreamedRecord(key: key("old"), record: record(6, "six")),
            ]
            #expect(try store.applyWithoutBlocking(batch) == nil)
            #expect(try store.get(key: key("fresh")) == nil, "all or nothing")
            #expect(try store.get(key: key("old"))?.value == Array("five".utf8))
            #expect(try store.applyWithoutBlocking(batch) == [.applied, .applied], "the read cached its block")
            #expect(try store.get(key: key("old"))?.value == Array("six".utf8))
        }
    }
}
