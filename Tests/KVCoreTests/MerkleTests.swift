import KVCore
import Testing

/// Merkle anti-entropy in KVCore: entry hashes, segments, range trees and the comparison. Property
/// tests are seeded; a failure names its seed.
struct MerkleTests {
    // MARK: Entry hash and segments

    /// Pins the byte layout of `proto-spec/MERKLE.md`: both replicas must hash alike.
    @Test func entryHashGoldenVectors() {
        let version = Version(hlc: 0x0102_0304_0506_0708, writer: 0x1112_1314_1516_1718)
        let expected = XXH64.hash(
            Array("key".utf8) + [1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0], seed: 0)
        #expect(MerkleEntry.hash(key: Array("key".utf8), version: version, tombstone: false) == expected)
        #expect(MerkleEntry.hash(key: Array("key".utf8), version: version, tombstone: false) == 0x10dd_4760_d9fc_43f3)
        #expect(MerkleEntry.hash(key: Array("key".utf8), version: version, tombstone: true) == 0xaa20_fead_9fc1_b9cc)
        #expect(MerkleEntry.hash(key: [], version: .zero, tombstone: false) == 0x9439_ed18_5e55_50fa)
    }

    @Test func entryHashDependsOnEveryField() {
        let base = MerkleEntry(key: [1, 2], version: Version(hlc: 5, writer: 7), tombstone: false)
        var variants = [base]
        variants.append(MerkleEntry(key: [1, 3], version: base.version, tombstone: false))
        variants.append(MerkleEntry(key: [1, 2], version: Version(hlc: 6, writer: 7), tombstone: false))
        variants.append(MerkleEntry(key: [1, 2], version: Version(hlc: 5, writer: 8), tombstone: false))
        variants.append(MerkleEntry(key: [1, 2], version: base.version, tombstone: true))
        #expect(Set(variants.map(\.hash)).count == variants.count)
    }

    @Test func segmentsAreTheTopTwentyBits() {
        #expect(MerkleSegments.segment(of: Token(0)) == 0)
        #expect(MerkleSegments.segment(of: Token((1 << 44) - 1)) == 0)
        #expect(MerkleSegments.segment(of: Token(1 << 44)) == 1)
        #expect(MerkleSegments.segment(of: Token(.max)) == MerkleSegments.segmentCount - 1)
        #expect(MerkleSegments.span(ofSegment: 0) == TokenRangeSpan(start: .max, end: (1 << 44) - 1))
        #expect(MerkleSegments.span(ofSegment: 1).width == 1 << 44)
    }

    /// Writes, overwrites, stale writes, tombstones and purges in random order: the incrementally kept
    /// segments equal segments rebuilt from the final records, and the same final records reached in
    /// another order give the same segments.
    @Test func incrementalSegmentsEqualRebuiltOnes() async throws {
        try await offThePool {
            for seed: UInt64 in 0..<8 {
                var rng = SplitMix64(seed: seed)
                let keys = (0..<400).map { Array("key-\(seed)-\($0)".utf8) }
                var writes: [MerkleEntry] = []
                for index in 0..<1500 {
                    // Writers differ, so no two writes share a version: the final records do not depend on
                    // the order.
                    writes.append(
                        MerkleEntry(
                            key: keys.randomElement(using: &rng)!,
                            version: Version(hlc: UInt64.random(in: 1...50, using: &rng), writer: UInt64(index)),
                            tombstone: rng.chance(0.2)))
                }
                var model = MerkleReplicaModel()
                for (index, write) in writes.enumerated() {
                    model.apply(write)
                    if index % 97 == 0 { model.purge(keys.randomElement(using: &rng)!) }
                }
                let rebuilt = MerkleSegments(entries: model.entries.values)
                #expect(model.segments == rebuilt, "seed \(seed)")
                #expect(MerkleSegments(segmentHashes: model.segments.segmentHashes) == model.segments, "seed \(seed)")

                // Another order over the same final records (no purges: they depend on the order).
                var shuffled = MerkleReplicaModel()
                for write in writes.shuffled(using: &rng) { shuffled.apply(write) }
                var ordered = MerkleReplicaModel()
                for write in writes { ordered.apply(write) }
                #expect(shuffled.entries == ordered.entries)
                #expect(shuffled.segments == ordered.segments, "seed \(seed)")
                #expect(shuffled.segments == MerkleSegments(entries: ordered.entries.values), "seed \(seed)")
            }
        }
    }

    @Test func segmentHashesRoundTripAndSubscriptAgree() {
        var rng = SplitMix64(seed: 11)
        var segments = MerkleSegments()
        #expect(segments.isZero)
        #expect(segments == MerkleSegments(segmentHashes: [UInt64](repeating: 0, count: MerkleSegments.segmentCount)))
        var touched: [Int: UInt64] = [:]
        for segment in [0, 1, 2, MerkleSegments.segmentCount - 1]
            + (0..<200).map({ _ in
                Int.random(in: 0..<MerkleSegments.segmentCount, using: &rng)
            })
        {
            let delta = rng.next()
            segments.xor(delta, intoSegment: segment)
            touched[segment, default: 0] ^= delta
        }
        let hashes = segments.segmentHashes
        // Every segment, touched or not, read both ways.
        for segment in 0..<MerkleSegments.segmentCount
        where hashes[segment] != (touched[segment] ?? 0) || segments[segment] != hashes[segment] {
            Issue.record("segment \(segment): \(hashes[segment]), \(segments[segment]) != \(touched[segment] ?? 0)")
        }
        #expect(MerkleSegments(segmentHashes: hashes) == segments)
        // XORing every delta out again leaves nothing.
        for (segment, hash) in touched { segments.xor(hash, intoSegment: segment) }
        #expect(segments.isZero)
        #expect(segments == MerkleSegments())
    }

    /// The digest of any range (whole segments from the tree, partial pieces by a scan) equals the XOR
    /// of the entry hashes in the range, computed by brute force.
    @Test func rangeDigestEqualsBruteForce() async throws {
        try await offThePool {
            var rng = SplitMix64(seed: 21)
            var model = MerkleReplicaModel()
            for index in 0..<3000 {
                model.apply(
                    MerkleEntry(
                        key: Array("k\(index)".utf8), version: Version(hlc: 1, writer: 1), tombstone: index % 5 == 0))
            }
            let tokens = model.entries.values.map(\.token)
            var sawPartialWithRecords = 0
            for _ in 0..<300 {
                let range = rng.merkleRange(near: tokens)
                #expect(model.digest(range) == model.bruteDigest(range), "range \(range)")
                let split = MerkleRangeSplit(range)
                #expect(split.partialPieces.count <= 2)
                if split.partialPieces.contains(where: { model.bruteDigest($0) != 0 }) { sawPartialWithRecords += 1 }
            }
            #expect(sawPartialWithRecords > 20, "the ranges must cut segments that hold records")
            #expect(
                model.digest(TokenRangeSpan(start: 42, end: 42)) == model.segments.xor(segmentsFrom: 0, count: 1 << 20))
        }
    }

    // MARK: The range tree

    @Test func treeShapes() {
        let alignedRing = MerkleTree(range: TokenRangeSpan(start: .max, end: .max))
        #expect(alignedRing.leafCount == 1 << 20)
        #expect(alignedRing.depth == 20)
        #expect(alignedRing.span(level: 0, index: 0) == TokenRangeSpan(start: .max, end: .max))
        #expect(alignedRing.span(level: 20, index: 0) == MerkleSegments.span(ofSegment: 0))

        let ring = MerkleTree(range: TokenRangeSpan(start: 1000, end: 1000))
        #expect(ring.leafCount == (1 << 20) + 1)
        #expect(ring.depth == 21)
        #expect(ring.nodeCount(atLevel: 21) == (1 << 20) + 1)
        #expect(ring.nodeCount(atLevel: 1) == 2)
        #expect(ring.children(level: 0, index: 0) == 0..<2)
        #expect(ring.span(level: 21, index: 0) == TokenRangeSpan(start: 1000, end: (1 << 44) - 1))
        #expect(ring.span(level: 21, index: 1 << 20) == TokenRangeSpan(start: .max, end: 1000))

        let inside = MerkleTree(range: TokenRangeSpan(start: 10, end: 20))
        #expect(inside.leafCount == 1)
        #expect(inside.depth == 0)
        #expect(inside.children(level: 0, index: 0).isEmpty)

        // Wraps past zero: the last 2 segments and the first 3 (the third partly).
        let wrapping = MerkleTree(range: TokenRangeSpan(start: (UInt64.max - (2 << 44)), end: (2 << 44) + 5))
        #expect(wrapping.leafCount == 5)
        #expect(wrapping.depth == 3)
        #expect(wrapping.span(level: 3, index: 1) == MerkleSegments.span(ofSegment: (1 << 20) - 1))
        #expect(wrapping.span(level: 3, index: 4) == TokenRangeSpan(start: (2 << 44) - 1, end: (2 << 44) + 5))

        #expect(!inside.isValid(MerkleQuery(kind: .children, level: 0, nodes: [0])))
        #expect(!wrapping.isValid(MerkleQuery(kind: .listing, level: 3, nodes: [5])))
        #expect(!wrapping.isValid(MerkleQuery(kind: .root, level: 1, nodes: [])))
        #expect(wrapping.isValid(MerkleQuery(kind: .listing, level: 3, nodes: [0, 4])))
    }

    /// For random ranges: the leaves are consecutive, each inside one segment, and together exactly the
    /// range; every node's children are consecutive and together exactly the node.
    @Test func treePartitionsTheRange() {
        var rng = SplitMix64(seed: 31)
        let tokens = (0..<50).map { Token(key: Array("p\($0)".utf8)) }
        var checked = 0
        while checked < 300 {
            let range = rng.merkleRange(near: tokens)
            let tree = MerkleTree(range: range)
            #expect(tree.span(level: 0, index: 0) == range)
            // Walk a random path from the root, checking each node's children tile it.
            var (level, index) = (0, 0)
            while level < tree.depth {
                let children = tree.children(level: level, index: index)
                let parent = tree.span(level: level, index: index)
                let spans = children.map { tree.span(level: level + 1, index: $0) }
                #expect(spans.first!.start == parent.start && spans.last!.end == parent.end, "range \(range)")
                for (left, right) in zip(spans, spans.dropFirst()) { #expect(left.end == right.start) }
                #expect(spans.map(\.width).reduce(0, +) == parent.width, "range \(range)")
                (level, index) = (level + 1, children.randomElement(using: &rng)!)
            }
            let leaf = tree.span(level: level, index: index)
            #expect(leaf.width <= 1 << 44)
            #expect(
                MerkleSegments.segment(of: Token(leaf.start &+ 1)) == MerkleSegments.segment(of: Token(leaf.end)),
                "leaf \(leaf) of \(range) spans two segments")
            checked += 1
        }
    }

    // MARK: The comparison

    /// Two replicas with random differences (missing keys, older and newer versions, tombstones, keys
    /// outside the range): the comparison finds exactly the differing keys of the range.
    @Test func comparisonFindsExactlyTheDifferingKeys() async throws {
        try await offThePool {
            for seed: UInt64 in 0..<60 {
                var rng = SplitMix64(seed: seed)
                var local = MerkleReplicaModel()
                var remote = MerkleReplicaModel()
                let keyCount = Int.random(in: 1...400, using: &rng)
                let keys = (0..<keyCount).map { Array("s\(seed)-\($0)".utf8) }
                for key in keys {
                    let version = Version(hlc: UInt64.random(in: 10...20, using: &rng), writer: 1)
                    let entry = MerkleEntry(key: key, version: version, tombstone: rng.chance(0.1))
                    let newer = MerkleEntry(
                        key: key, version: Version(hlc: version.hlc + 1, writer: 2), tombstone: rng.chance(0.3))
                    switch Int.random(in: 0..<20, using: &rng) {
                    case 0: local.apply(entry)  // missing remotely
                    case 1: remote.apply(entry)  // missing locally
                    case 2: [entry, newer].forEach { local.apply($0) }; remote.apply(entry)  // local newer
                    case 3: local.apply(entry); [entry, newer].forEach { remote.apply($0) }  // remote newer
                    default: local.apply(entry); remote.apply(entry)
                    }
                }
                let tokens = keys.map { Token(key: $0) }
                for _ in 0..<3 {
                    let range = rng.merkleRange(near: tokens)
                    var expectedPush: [MerkleEntry] = []
                    var expectedPull: [MerkleEntry] = []
                    for key in keys where range.contains(Token(key: key)) {
                        let (ours, theirs) = (local.entries[key], remote.entries[key])
                        if let ours, theirs.map({ $0.version < ours.version }) ?? true { expectedPush.append(ours) }
                        if let theirs, ours.map({ $0.version < theirs.version }) ?? true { expectedPull.append(theirs) }
                    }
                    let (difference, queries) = try compare(local, remote, range: range)
                    let (byHashes, _) = try compare(local, remote, range: range, byHashes: true)
                    #expect(byHashes == difference, "seed \(seed) \(range): listing by entry hashes")
                    #expect(difference.push == expectedPush.sorted(by: MerkleEntry.tokenOrder), "seed \(seed) \(range)")
                    #expect(difference.pull == expectedPull.sorted(by: MerkleEntry.tokenOrder), "seed \(seed) \(range)")
                    if expectedPush.isEmpty && expectedPull.isEmpty {
                        #expect(queries == 1, "seed \(seed) \(range): equal replicas compare roots only")
                    }
                    // Once each side has what the other pushed and pulled, nothing differs.
                    var (repairedLocal, repairedRemote) = (local, remote)
                    difference.pull.forEach { repairedLocal.apply($0) }
                    difference.push.forEach { repairedRemote.apply($0) }
                    let (after, afterQueries) = try compare(repairedLocal, repairedRemote, range: range)
                    #expect(after.isEmpty && afterQueries == 1, "seed \(seed) \(range)")
                }
            }
        }
    }

    /// With a purge horizon, a tombstone below it is not copied to a side holding nothing (it may have
    /// purged it), but is copied over an older value; tombstones above it and values are copied as before.
    @Test func purgeableTombstonesAreNotCopiedWhereTheKeyIsAbsent() throws {
        let horizon = Version(hlc: 100, writer: 0)
        func entry(_ name: String, _ hlc: UInt64, tombstone: Bool) -> MerkleEntry {
            MerkleEntry(key: Array(name.utf8), version: Version(hlc: hlc, writer: 1), tombstone: tombstone)
        }
        var local = MerkleReplicaModel()
        var remote = MerkleReplicaModel()
        let oldTombstoneHere = entry("old-tombstone-here", 50, tombstone: true)
        let oldTombstoneThere = entry("old-tombstone-there", 50, tombstone: true)
        let overOlderValue = entry("over-older-value", 50, tombstone: true)
        let recentTombstone = entry("recent-tombstone", 150, tombstone: true)
        let oldValue = entry("old-value", 50, tombstone: false)
        local.apply(oldTombstoneHere)
        remote.apply(oldTombstoneThere)
        local.apply(overOlderValue)
        remote.apply(entry("over-older-value", 40, tombstone: false))
        local.apply(recentTombstone)
        remote.apply(oldValue)
        let range = TokenRangeSpan(start: 0, end: 0)

        let (withHorizon, _) = try compare(local, remote, range: range, purgeHorizon: horizon)
        #expect(Set(withHorizon.push) == [overOlderValue, recentTombstone])
        #expect(withHorizon.pull == [oldValue])

        let (without, _) = try compare(local, remote, range: range)
        #expect(Set(without.push) == [oldTombstoneHere, overOlderValue, recentTombstone])
        #expect(Set(without.pull) == [oldTombstoneThere, oldValue])
    }

    @Test func identicalReplicasCompareTheRootOnly() throws {
        var model = MerkleReplicaModel()
        for index in 0..<500 {
            model.apply(
                MerkleEntry(key: Array("i\(index)".utf8), version: Version(hlc: 3, writer: 1), tombstone: false))
        }
        for range in [TokenRangeSpan(start: 7, end: 7), TokenRangeSpan(start: .max - 5, end: 1 << 60)] {
            let (difference, queries) = try compare(model, model, range: range)
            #expect(difference.isEmpty)
            #expect(queries == 1)
        }
    }

    /// Differing keys in many leaves are listed in batches of `Limits.merkleLeavesPerListingMax`.
    @Test func listingsComeInBoundedBatches() throws {
        var local = MerkleReplicaModel()
        let remote = MerkleReplicaModel()
        for index in 0..<300 {
            local.apply(
                MerkleEntry(key: Array("b\(index)".utf8), version: Version(hlc: 3, writer: 1), tombstone: false))
        }
        var comparison = MerkleComparison(range: TokenRangeSpan(start: 0, end: 0))
        var action = comparison.start()
        var listings = 0
        while case .query(let query) = action {
            if query.kind == .listing {
                listings += 1
                #expect(query.nodes.count <= Limits.merkleLeavesPerListingMax)
            }
            action = try comparison.handle(
                local: local.answer(query, tree: comparison.tree), remote: remote.answer(query, tree: comparison.tree))
        }
        guard case .finish(let difference) = action else { return }
        #expect(difference.push.count == 300)
        #expect(difference.pull.isEmpty)
        #expect(listings >= 300 / Limits.merkleLeavesPerListingMax)
    }

    @Test func nodeListsRoundTripAndRefuseMalformedBytes() {
        #expect(MerkleNodeList.encode([0, 5, Int(UInt32.max)]) == [0x00, 0x04, 0xf9, 0xff, 0xff, 0xff, 0x0f])
        #expect(MerkleNodeList.decode([]) == [])
        var rng = SplitMix64(seed: 41)
        for _ in 0..<300 {
            let spread = 1 << Int.random(in: 1...32, using: &rng)
            var nodes = Set<Int>()
            for _ in 0..<Int.random(in: 0...Limits.merkleNodesPerQueryMax, using: &rng) {
                nodes.insert(Int.random(in: 0..<min(spread, Int(UInt32.max) + 1), using: &rng))
            }
            let sorted = nodes.sorted()
            #expect(MerkleNodeList.decode(MerkleNodeList.encode(sorted)) == sorted)
        }
        #expect(MerkleNodeList.encode(Array(0..<100)).count == 100, "neighbours cost a byte each")
        #expect(MerkleNodeList.decode([0x80]) == nil, "cut inside a varint")
        #expect(MerkleNodeList.decode([0x80, 0x80, 0x80, 0x80, 0x80, 0x01]) == nil, "a varint of 6 bytes")
        #expect(MerkleNodeList.decode([0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]) == nil, "an index past u32")
        #expect(MerkleNodeList.decode([0xff, 0xff, 0xff, 0xff, 0x1f]) == nil, "an index past u32")
        #expect(MerkleNodeList.decode(MerkleNodeList.encode(Array(0...3)), countMax: 3) == nil, "too many")
    }

    /// The peer's answers to a listing by entry hashes are checked like a listing's.
    @Test func malformedHashListingAnswersThrow() throws {
        let entry = MerkleEntry(key: Array("x".utf8), version: Version(hlc: 5, writer: 1), tombstone: false)
        let other = MerkleEntry(key: Array("y".utf8), version: Version(hlc: 5, writer: 1), tombstone: false)
        let tree = MerkleTree(range: TokenRangeSpan(start: .max, end: .max))  // a leaf is a segment
        let leaf = MerkleSegments.segment(of: entry.token)
        let query = MerkleQuery(kind: .listing, level: tree.depth, nodes: [leaf])
        var listing = MerkleHashListing(tree: tree, query: query, local: [])
        #expect(throws: MerkleComparisonError.self) { try listing.fetch(remoteHashes: [entry.hash, entry.hash]) }
        let fetch = try listing.fetch(remoteHashes: [entry.hash])
        #expect(fetch == MerkleHashListing.Fetch(leaves: [.init(node: leaf, valueAboveHlc: 0)], hashes: [entry.hash]))
        // Not asked for, twice, or outside the leaves.
        var notAsked = listing
        #expect(throws: MerkleComparisonError.self) {
            try notAsked.take([MerkleHashListing.Fetched(entry: other, record: nil)], older: [])
        }
        let fetched = MerkleHashListing.Fetched(entry: entry, record: nil)
        var twice = listing
        #expect(throws: MerkleComparisonError.self) { try twice.take([fetched, fetched], older: []) }
        var elsewhere = MerkleHashListing(
            tree: tree, query: MerkleQuery(kind: .listing, level: tree.depth, nodes: [leaf ^ 1]), local: [])
        _ = try elsewhere.fetch(remoteHashes: [entry.hash])
        #expect(throws: MerkleComparisonError.self) { try elsewhere.take([fetched], older: []) }
        // An older entry at a position not asked, or in the second round.
        var outOfRange = listing
        #expect(throws: MerkleComparisonError.self) {
            try outOfRange.take([], older: [.init(index: 1, version: entry.version, tombstone: false)])
        }
        var older = listing
        let again = try older.take([], older: [.init(index: 0, version: entry.version, tombstone: false)])
        #expect(again == MerkleHashListing.Fetch(leaves: [.init(node: leaf, valueAboveHlc: 0)], hashes: [entry.hash]))
        #expect(throws: MerkleComparisonError.self) {
            try older.take([], older: [.init(index: 0, version: entry.version, tombstone: false)])
        }
        #expect(try listing.take([fetched], older: []) == nil)
        #expect(listing.remoteListing().answer.entries == [entry])

        // An older entry whose key the asker holds newer: found by hashing, no second round.
        let newer = MerkleEntry(key: entry.key, version: Version(hlc: 9, writer: 1), tombstone: false)
        var found = MerkleHashListing(tree: tree, query: query, local: [newer])
        #expect(
            try found.fetch(remoteHashes: [entry.hash])
                == MerkleHashListing.Fetch(leaves: [.init(node: leaf, valueAboveHlc: 9)], hashes: [entry.hash]))
        #expect(try found.take([], older: [.init(index: 0, version: entry.version, tombstone: false)]) == nil)
        #expect(found.remoteListing().answer.entries == [entry])
    }

    @Test func malformedAnswersThrow() throws {
        let range = TokenRangeSpan(start: 10, end: 1_000_000)  // one leaf: root, then a listing
        let entry = MerkleEntry(key: Array("x".utf8), version: Version(hlc: 1, writer: 1), tombstone: false)

        var comparison = MerkleComparison(range: range)
        _ = comparison.start()
        #expect(throws: MerkleComparisonError.self) {
            try comparison.handle(local: MerkleAnswer(hashes: [1]), remote: MerkleAnswer(hashes: [1, 2]))
        }

        comparison = MerkleComparison(range: range)
        _ = comparison.start()
        #expect(
            try comparison.handle(local: MerkleAnswer(hashes: [1]), remote: MerkleAnswer(hashes: [2]))
                == .query(
                    MerkleQuery(kind: .listing, level: 0, nodes: [0])))
        let outside = #expect(throws: MerkleComparisonError.self) {
            try comparison.handle(local: MerkleAnswer(), remote: MerkleAnswer(entries: [entry]))
        }
        #expect(outside?.code == .malformedAnswer)

        // A key listed twice.
        let inside = TokenRangeSpan(start: entry.token.value &- 1, end: entry.token.value)
        comparison = MerkleComparison(range: inside)
        _ = comparison.start()
        _ = try comparison.handle(local: MerkleAnswer(hashes: [1]), remote: MerkleAnswer(hashes: [2]))
        #expect(throws: MerkleComparisonError.self) {
            try comparison.handle(local: MerkleAnswer(entries: [entry, entry]), remote: MerkleAnswer())
        }
    }
}
