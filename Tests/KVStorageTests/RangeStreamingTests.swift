import KVCore
import KVStorage
import Testing

/// `RangeStreaming`: pages walk a range once, in order, across writes and deletes between pages;
/// `deleteRange` removes exactly the range and keeps the Merkle segments equal to a rebuild.
@Suite struct RangeStreamingTests {
    /// Ranges of every shape: plain, wrapping past zero, one token, the whole ring (three ways), and
    /// ranges ending or starting exactly at a stored key's token (the end is inclusive, the start not).
    static func ranges(around keys: [[UInt8]], using random: inout SplitMix64) -> [TokenRangeSpan] {
        var ranges = [
            TokenRangeSpan(start: 0, end: 0),
            TokenRangeSpan(start: .max, end: .max),
            TokenRangeSpan(start: 1 << 63, end: 1 << 63),
            TokenRangeSpan(start: .max, end: 1 << 62),
            TokenRangeSpan(start: 3 << 62, end: 1 << 62),
            TokenRangeSpan(start: 1 << 62, end: 3 << 62),
        ]
        for _ in 0..<6 {
            let (a, b) = (UInt64.random(in: 0 ... .max, using: &random), UInt64.random(in: 0 ... .max, using: &random))
            ranges.append(TokenRangeSpan(start: min(a, b), end: max(a, b)))
            ranges.append(TokenRangeSpan(start: max(a, b), end: min(a, b)))
        }
        let token = Token(key: keys[0]).value
        ranges.append(TokenRangeSpan(start: token, end: token &+ (1 << 61)))
        ranges.append(TokenRangeSpan(start: token &- (1 << 61), end: token))
        ranges.append(TokenRangeSpan(start: token &- 1, end: token))
        return ranges
    }

    /// Random keys (the empty key too) holding values of random sizes, and some tombstones.
    static func fill(_ store: any CompleteStore, count: Int, using random: inout SplitMix64) throws -> [[UInt8]:
        StoredRecord]
    {
        var model: [[UInt8]: StoredRecord] = [:]
        for index in 0..<count {
            let key = index == 0 ? [] : randomBytes(count: Int.random(in: 1...12, using: &random), using: &random)
            let hlc = UInt64.random(in: 1...1_000, using: &random)
            let stored =
                Int.random(in: 0..<5, using: &random) == 0
                ? tombstone(hlc)
                : StoredRecord(
                    version: Version(hlc: hlc, writer: 1), tombstone: false,
                    value: randomBytes(count: Int.random(in: 0...40, using: &random), using: &random))
            _ = try store.apply(key: key, record: stored)
            model[key] = try store.get(key: key)
        }
        return model
    }

    /// `model`'s records of `range` after `after`, in the order a stream must return them.
    static func expected(
        _ model: [[UInt8]: StoredRecord],
        in range: TokenRangeSpan,
        after: [UInt8]? = nil
    ) -> [StreamedRecord] {
        let first = range.start &+ 1
        func position(_ key: [UInt8]) -> UInt64 { Token(key: key).value &- first }
        func precedes(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
            position(lhs) != position(rhs) ? position(lhs) < position(rhs) : lhs.lexicographicallyPrecedes(rhs)
        }
        return model.filter { key, _ in range.contains(Token(key: key)) && after.map { precedes($0, key) } ?? true }
            .map { StreamedRecord(key: $0.key, record: $0.value) }
            .sorted { precedes($0.key, $1.key) }
    }

    /// Checks one page against what must follow `after`: a prefix of it, within the bounds (only a lone
    /// record may pass `bytesMax`), at least one record while any remains, `done` exactly at the end.
    static func check(
        _ page: StreamPage,
        follows remaining: [StreamedRecord],
        recordsMax: Int,
        bytesMax: Int,
        _ comment: Comment
    ) {
        let bytes = page.records.reduce(0) { $0 + $1.key.count + $1.record.value.count }
        #expect(page.records.count <= recordsMax, comment)
        #expect(bytes <= bytesMax || page.records.count == 1, comment)
        #expect(page.records == Array(remaining.prefix(page.records.count)), comment)
        #expect(page.records.isEmpty == remaining.isEmpty, comment)
        #expect(page.done == (page.records.count == remaining.count), comment)
        if !page.done, let next = remaining.dropFirst(page.records.count).first {
            // Full: the next record would pass a bound.
            #expect(page.records.count == recordsMax || bytes + next.key.count + next.record.value.count > bytesMax)
        }
    }

    @Test(arguments: [StoreKind.inMemory, .rocksDBSync, .rocksDBNone])
    func pagesReturnEveryRecordOfTheRangeOnceInOrder(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            var random = SplitMix64(seed: 101)
            let model = try Self.fill(store, count: 300, using: &random)
            let keys = sortedKeys(model)
            for range in Self.ranges(around: keys, using: &random) {
                let all = Self.expected(model, in: range)
                for (recordsMax, bytesMax) in [(1, 1 << 20), (7, 1 << 20), (1_000, 64), (5, 100), (1_000, 1)] {
                    let comment = Comment("\(kind) \(range) recordsMax \(recordsMax) bytesMax \(bytesMax)")
                    var streamed: [StreamedRecord] = []
                    var after: [UInt8]?
                    var pages = 0
                    while true {
                        let page = try store.streamPage(
                            in: range, after: after, recordsMax: recordsMax, bytesMax: bytesMax)
                        Self.check(
                            page, follows: Array(all.dropFirst(streamed.count)), recordsMax: recordsMax,
                            bytesMax: bytesMax, comment)
                        streamed += page.records
                        pages += 1
                        if page.done { break }
                        after = page.records.last?.key
                        try #require(after != nil && pages <= all.count, comment)
                    }
                    #expect(streamed == all, comment)
                }
            }
            // The whole ring holds every record; the one-token range at a key holds it.
            #expect(Self.expected(model, in: TokenRangeSpan(start: 5, end: 5)).count == model.count)
            let token = Token(key: keys[0]).value
            #expect(
                try store.streamPage(
                    in: TokenRangeSpan(start: token &- 1, end: token), after: nil, recordsMax: 10, bytesMax: 1 << 20
                ).records.contains { $0.key == keys[0] })
        }
    }

    @Test(arguments: [StoreKind.inMemory, .rocksDBSync, .rocksDBNone])
    func resumingAfterWritesAndDeletesBetweenPagesNeitherSkipsNorRepeats(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            var random = SplitMix64(seed: 202)
            var model = try Self.fill(store, count: 250, using: &random)
            let ranges = [
                TokenRangeSpan(start: 0, end: 0),
                TokenRangeSpan(start: 1 << 63, end: 1 << 63),
                TokenRangeSpan(start: 3 << 62, end: 1 << 62),
                TokenRangeSpan(start: 1 << 61, end: 3 << 62),
            ]
            var hlc: UInt64 = 10_000
            for range in ranges {
                let recordsMax = 6
                var after: [UInt8]?
                var streamed: [[UInt8]] = []
                var pages = 0
                while true {
                    let comment = Comment("\(kind) \(range) page \(pages)")
                    let remaining = Self.expected(model, in: range, after: after)
                    let page = try store.streamPage(in: range, after: after, recordsMax: recordsMax, bytesMax: 200)
                    Self.check(page, follows: remaining, recordsMax: recordsMax, bytesMax: 200, comment)
                    streamed += page.records.map(\.key)
                    pages += 1
                    if page.done { break }
                    after = page.records.last!.key
                    try #require(pages < 1_000, comment)

                    // Between pages: the resume key itself goes (by the range of its token), so do a few
                    // keys ahead of and behind it; new keys arrive and old ones change.
                    var deleted: [[UInt8]] = [after!]
                    deleted += (0..<2).compactMap { _ in sortedKeys(model).randomElement(using: &random) }
                    for key in deleted {
                        let token = Token(key: key).value
                        let gone = TokenRangeSpan(start: token &- 1, end: token)
                        let count = model.keys.filter { gone.contains(Token(key: $0)) }.count
                        #expect(try store.deleteRange(gone) == count, comment)
                        model = model.filter { !gone.contains(Token(key: $0.key)) }
                    }
                    for _ in 0..<4 {
                        hlc += 1
                        let key =
                            Bool.random(using: &random)
                            ? sortedKeys(model).randomElement(using: &random) ?? [1]
                            : randomBytes(count: Int.random(in: 1...12, using: &random), using: &random)
                        let stored = record(hlc, "new \(hlc)")
                        _ = try store.apply(key: key, record: stored)
                        model[key] = stored
                    }
                }
                // Strictly clockwise: nothing repeated, even when the resume key was gone.
                #expect(Set(streamed).count == streamed.count, "\(kind) \(range)")
                let once = Dictionary(streamed.map { ($0, tombstone(1)) }, uniquingKeysWith: { first, _ in first })
                #expect(Self.expected(once, in: range).map(\.key) == streamed, "\(kind) \(range)")
                #expect(pages > 5, "\(kind) \(range): paged")
            }
            let incremental = try store.merkleSegments()
            try store.rebuildMerkleSegments()
            #expect(try store.merkleSegments() == incremental)
        }
    }

    @Test(arguments: [StoreKind.inMemory, .rocksDBSync, .rocksDBNone])
    func deleteRangeRemovesExactlyTheRangeAndKeepsSegmentsExact(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            var random = SplitMix64(seed: 303)
            var model = try Self.fill(store, count: 400, using: &random)
            let keys = sortedKeys(model)
            let ranges =
                Array(Self.ranges(around: keys, using: &random).filter { $0.start != $0.end }.shuffled(using: &random))
                + [TokenRangeSpan(start: 7, end: 7)]
            for range in ranges {
                let comment = Comment("\(kind) \(range)")
                let inRange = model.filter { range.contains(Token(key: $0.key)) }
                #expect(try store.deleteRange(range) == inRange.count, comment)
                model = model.filter { !range.contains(Token(key: $0.key)) }
                for key in keys {
                    #expect(try store.get(key: key) == model[key], comment)
                }
                let page = try store.streamPage(in: range, after: nil, recordsMax: 10, bytesMax: 1 << 20)
                #expect(page == StreamPage(records: [], done: true), comment)
                let incremental = try store.merkleSegments()
                try store.rebuildMerkleSegments()
                #expect(try store.merkleSegments() == incremental, comment)
                #expect(try store.deleteRange(range) == 0, comment)
            }
            #expect(model.isEmpty)
            #expect(try store.merkleSegments().isZero)
        }
    }

    @Test(arguments: [StoreKind.inMemory, .rocksDBNone])
    func aResumeKeyOutsideTheRangeIsRefused(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            let outside = key("outside")
            let token = Token(key: outside).value
            let range = TokenRangeSpan(start: token, end: token &+ 1_000)
            let error = #expect(throws: StorageError.self) {
                try store.streamPage(in: range, after: outside, recordsMax: 10, bytesMax: 1_000)
            }
            #expect(error?.code == .invalidRecord)
        }
    }

    /// Several keys of one Merkle segment, deleted one key a batch: the segment is written once per
    /// batch and still ends equal to a rebuild.
    @Test func deleteRangeInBatchesSmallerThanASegmentKeepsItExact() throws {
        try withTemporaryDirectory { path in
            let store = try RocksDBStore(directory: path, durability: .none)
            defer { store.close() }
            var bySegment: [Int: [[UInt8]]] = [:]
            for index in 0..<3_000 {
                let key = key("segment-\(index)")
                bySegment[MerkleSegments.segment(of: Token(key: key)), default: []].append(key)
                _ = try store.apply(key: key, record: record(UInt64(index + 1), "v\(index)"))
            }
            let shared = bySegment.filter { $0.value.count >= 2 }
            try #require(shared.count >= 2, "keys sharing a segment")
            let removed = try store.deleteRange(TokenRangeSpan(start: 1 << 62, end: 1 << 62), batchKeysMax: 1)
            #expect(removed == 3_000)
            #expect(try store.merkleSegments().isZero)

            // Half of the ring, with other keys kept outside it.
            for index in 0..<3_000 {
                _ = try store.apply(key: key("segment-\(index)"), record: record(UInt64(index + 1), "v\(index)"))
            }
            let half = TokenRangeSpan(start: 1 << 62, end: 3 << 62)
            let inHalf = bySegment.values.joined().filter { half.contains(Token(key: $0)) }.count
            #expect(try store.deleteRange(half, batchKeysMax: 2) == inHalf)
            let incremental = try store.merkleSegments()
            #expect(try store.merkleListing(of: TokenRangeSpan(start: 0, end: 0)).count == 3_000 - inHalf)
            store.close()

            // The stored segments were written with each batch: loaded as they are, equal to the copy in
            // memory and to a rebuild.
            let reopened = try RocksDBStore(directory: path, durability: .none)
            defer { reopened.close() }
            #expect(reopened.merkleRebuildAtOpen == nil)
            #expect(try reopened.merkleSegments() == incremental)
            try reopened.rebuildMerkleSegments()
            #expect(try reopened.merkleSegments() == incremental)
        }
    }

    /// Writers keep writing keys in and out of a range while it is deleted over and over: whatever
    /// each delete caught, the segments match a rebuild.
    @Test(arguments: [StoreKind.inMemory, .rocksDBNone])
    func concurrentWritesDuringDeleteRangeKeepSegmentsExact(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            let range = TokenRangeSpan(start: 1 << 63, end: 1 << 62)
            runOnThreads(count: 3) { thread in
                if thread == 0 {
                    for _ in 0..<20 { _ = try? store.deleteRange(range) }
                } else {
                    for index in 0..<600 {
                        let stored = index % 3 == 0 ? tombstone(UInt64(index + 1)) : record(UInt64(index + 1), "v")
                        _ = try? store.apply(key: key("w\(thread)-\(index % 150)"), record: stored)
                    }
                }
            }
            let incremental = try store.merkleSegments()
            try store.rebuildMerkleSegments()
            #expect(try store.merkleSegments() == incremental)
            _ = try store.deleteRange(range)
            #expect(try store.streamPage(in: range, after: nil, recordsMax: 10, bytesMax: 1 << 20).records.isEmpty)
            let outside = try store.streamPage(
                in: TokenRangeSpan(start: range.end, end: range.start), after: nil, recordsMax: 1_000, bytesMax: 1 << 20
            )
            #expect(!outside.records.isEmpty && outside.done)
        }
    }
}

/// The keys of `model` in a fixed order, so that a seed picks the same ones in every process.
private func sortedKeys(_ model: [[UInt8]: StoredRecord]) -> [[UInt8]] {
    model.keys.sorted { $0.lexicographicallyPrecedes($1) }
}

private func randomBytes(count: Int, using random: inout SplitMix64) -> [UInt8] {
    (0..<count).map { _ in UInt8.random(in: 0 ... .max, using: &random) }
}
