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

    private static func described(_ result: Result<HintStoreOutcome, StorageError>) -> String {
        switch result {
        case .success(let outcome): "\(outcome)"
        case .failure(let error): "error \(error.code)"
        }
    }
}
