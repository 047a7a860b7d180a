import KVCore
import KVStorage
import Testing

/// `storeHints`: the hints of one call are stored as `storeHint` would have stored each alone, one
/// after another in order (the node's hint group commit hands over the hints that arrive together,
/// and each must fare as it would have alone), in one write.
@Suite struct HintBatchTests {
    /// Random batches over few targets and keys (replacements, full queues, a full store, invalid
    /// hints) against a twin store fed the same hints one by one: the same outcomes, the same queues.
    @Test(arguments: StoreKind.allCases)
    func aBatchStoresWhatSingleCallsInOrderStore(_ kind: StoreKind) throws {
        var random = SplitMix64(seed: 21)
        var seen: Set<String> = []
        try withHintStore(kind) { batched throws in
            try withHintStore(kind) { single throws in
                for _ in 0..<30 {
                    let hints = (0..<Int.random(in: 1...12, using: &random)).map { _ in
                        let hlc = UInt64.random(in: 1...6, using: &random)
                        // An empty target is invalid: that hint alone answers an error.
                        let target = random.chance(0.05) ? "" : ["n1", "n2", "n3"].randomElement(using: &random)!
                        return hint(
                            target, ["a", "b", "c", "d"].randomElement(using: &random)!,
                            record(hlc, String(repeating: "v", count: Int.random(in: 1...40, using: &random))))
                    }
                    let (queueMax, bytesMax) = (4, 600)
                    let outcomes = try batched.storeHints(hints, queueMax: queueMax, bytesMax: bytesMax)
                    let alone = hints.map { hint in
                        Result { () throws(StorageError) -> HintStoreOutcome in
                            try single.storeHint(hint, queueMax: queueMax, bytesMax: bytesMax)
                        }
                    }
                    #expect(outcomes.map(Self.described) == alone.map(Self.described), "\(hints)")
                    seen.formUnion(outcomes.map(Self.described))
                    #expect(batched.hintQueueSizes() == single.hintQueueSizes())
                    #expect(batched.hintBytesHeld() == single.hintBytesHeld())
                    for target in ["n1", "n2", "n3"] {
                        #expect(try listed(batched, target) == listed(single, target))
                    }
                    // Replayed now and then, so that queues empty and fill again.
                    if random.chance(0.3) {
                        for target in ["n1", "n2", "n3"] {
                            for store in [batched, single] {
                                for (id, _) in try store.hints(for: target, limit: 2) { try store.deleteHint(id) }
                            }
                        }
                    }
                }
                #expect(
                    seen == ["stored", "refusedQueueFull", "refusedStorageFull", "error invalidRecord"],
                    "every outcome was met")
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func anEmptyBatchStoresNothing(_ kind: StoreKind) throws {
        try withHintStore(kind) { store throws in
            #expect(try store.storeHints([], queueMax: 10, bytesMax: .max).isEmpty)
            #expect(store.hintQueueSizes().isEmpty)
        }
    }

    /// A read that fails partway through a batch fails the call with nothing written, and gives back
    /// the counts of the hints admitted before it (8942481): the queues and bytes are as before, and
    /// the same batch stores whole once reads work.
    @Test func aReadFailingPartwayThroughABatchLeavesTheCountsAsTheyWere() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .none)
            defer { store.close() }
            let first = [hint("n1", "a", record(1, "x")), hint("n2", "b", record(1, "y"))]
            _ = try store.storeHints(first, queueMax: 10, bytesMax: 100_000)
            let (queues, bytes) = (store.hintQueueSizes(), store.hintBytesHeld())
            let batch = [
                hint("n1", "c", record(2, "c")), hint("n2", "d", record(2, "d")), hint("n1", "a", record(3, "new")),
                hint("n2", "e", record(2, "e")),
            ]
            store.failHintRead(after: 3)
            let failure = #expect(throws: StorageError.self) {
                _ = try store.storeHints(batch, queueMax: 10, bytesMax: 100_000)
            }
            #expect(failure?.code == .ioError)
            #expect(store.hintQueueSizes() == queues, "the counts of the hints before the failed read stayed")
            #expect(store.hintBytesHeld() == bytes)
            #expect(try listed(store, "n1") == [first[0]])
            #expect(try listed(store, "n2") == [first[1]])
            let outcomes = try store.storeHints(batch, queueMax: 10, bytesMax: 100_000)
            #expect(outcomes.allSatisfy { (try? $0.get()) == .stored })
            #expect(store.hintQueueSizes() == ["n1": 3, "n2": 3])
        }
    }

    private static func described(_ result: Result<HintStoreOutcome, StorageError>) -> String {
        switch result {
        case .success(let outcome): "\(outcome)"
        case .failure(let error): "error \(error.code)"
        }
    }
}
