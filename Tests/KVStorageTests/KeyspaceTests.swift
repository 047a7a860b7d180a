import Foundation
import KVCore
import KVStorage
import Testing

/// A new, empty store of `kind` that keeps keyspaces, closed and deleted when `body` returns or throws.
func withKeyspaceStore<Result>(_ kind: StoreKind, _ body: (any KeyspaceStoring) throws -> Result) throws -> Result {
    guard let durability = kind.durability else {
        let store = InMemoryStore()
        defer { store.close() }
        return try body(store)
    }
    return try withTemporaryDirectory { path throws in
        let store = try RocksDBStore(directory: path, durability: durability)
        defer { store.close() }
        return try body(store)
    }
}

private let wholeRing = TokenRangeSpan(start: 0, end: 0)

/// Every record of `store`'s keyspace, by one stream of the whole ring.
private func streamed(_ store: any KeyspaceStoring) throws -> [StreamedRecord] {
    var records: [StreamedRecord] = []
    var after: [UInt8]?
    while true {
        let page = try store.streamPage(in: wholeRing, after: after, recordsMax: 7, bytesMax: 1 << 20)
        records += page.records
        if page.done { return records }
        after = page.records.last?.key
    }
}

/// The code of the `StorageError` `body` throws; nil when it throws none.
private func errorCode(_ body: () throws -> Void) -> StorageError.Code? {
    do {
        try body()
        return nil
    } catch {
        return (error as? StorageError)?.code
    }
}

/// The `KeyspaceStoring` contract, checked on both stores: keyspaces hold the same key bytes apart.
@Suite struct KeyspaceTests {
    static let kinds: [StoreKind] = [.inMemory, .rocksDBSync, .rocksDBNone]

    /// Writes, in each of `stores`, the key `shared` and 40 keys of its own, with values naming the
    /// keyspace, plus a tombstone of `gone`.
    static func fill(_ stores: [any KeyspaceStoring]) throws {
        for (index, store) in stores.enumerated() {
            let hlc = UInt64(10 * (index + 1))
            #expect(try store.apply(key: key("shared"), record: record(hlc, "in \(store.keyspaceID)")) == .applied)
            #expect(try store.apply(key: key("gone"), record: tombstone(hlc)) == .applied)
            for item in 0..<40 {
                _ = try store.apply(key: key("ks\(store.keyspaceID)-\(item)"), record: record(hlc, "\(item)"))
            }
        }
    }

    @Test(arguments: kinds)
    func sameKeyBytesStayApart(_ kind: StoreKind) throws {
        try withKeyspaceStore(kind) { root throws in
            let three = try root.keyspace(3)
            let seven = try root.keyspace(7)
            #expect([root.keyspaceID, three.keyspaceID, seven.keyspaceID] == [0, 3, 7])
            let stores = [root, three, seven]
            try Self.fill(stores)

            for (index, store) in stores.enumerated() {
                let hlc = UInt64(10 * (index + 1))
                #expect(try store.get(key: key("shared")) == record(hlc, "in \(store.keyspaceID)"))
                for other in stores where other.keyspaceID != store.keyspaceID {
                    #expect(try store.get(key: key("ks\(other.keyspaceID)-1")) == nil)
                }
                // An older version of the shared key is superseded only by the keyspace's own record.
                #expect(try store.apply(key: key("shared"), record: record(hlc - 1, "old")) != .applied)
                // Merkle: each keyspace's segments are those of its own records.
                let listing = try store.merkleListing(of: wholeRing)
                #expect(listing.count == 42)
                #expect(Set(listing.map(\.key)).contains(key("ks\(store.keyspaceID)-0")))
                let rebuilt = MerkleSegments(entries: listing)
                #expect(try store.merkleSegments() == rebuilt)
                #expect(try store.merkleDigest(of: wholeRing) == listing.reduce(0) { $0 ^ $1.hash })
                // Streaming: its own records only.
                let records = try streamed(store)
                #expect(records.count == 42)
                #expect(
                    records.allSatisfy {
                        !$0.key.starts(with: key("ks")) || $0.key.starts(with: key("ks\(store.keyspaceID)-"))
                    })
            }
            #expect(try root.merkleDigest(of: wholeRing) != three.merkleDigest(of: wholeRing))
            #expect(try three.merkleSegments() != seven.merkleSegments())

            // Repair marks.
            let range = TokenRangeSpan(start: 5, end: 50)
            #expect(try three.markDue(replica: "n2", range: range, atMillis: 1))
            #expect(root.rangesDue().isEmpty)
            #expect(seven.rangesDue().isEmpty)
            #expect(three.rangesDue() == [RepairMark(replica: "n2", range: range, firstMarkedMillis: 1)])
            #expect(try root.markDue(replica: "n2", range: range, atMillis: 2))
            try three.clearDue(replica: "n2", range: range)
            #expect(three.rangesDue().isEmpty)
            #expect(root.rangesDue() == [RepairMark(replica: "n2", range: range, firstMarkedMillis: 2)])

            // Metadata names.
            try root.setMetadata("checkpoint", [0])
            try three.setMetadata("checkpoint", [3])
            #expect(try root.metadata("checkpoint") == [0])
            #expect(try three.metadata("checkpoint") == [3])
            #expect(try seven.metadata("checkpoint") == nil)
            _ = try seven.apply([], setting: MetadataEntry(name: "checkpoint", value: [7]))
            #expect(try seven.metadata("checkpoint") == [7])
            #expect(try root.metadata("checkpoint") == [0])

            // Purge: keyspace 7's tombstone only.
            #expect(try seven.purgeTombstones(in: wholeRing, before: Version(hlc: 1_000, writer: 0)) == 1)
            #expect(try seven.get(key: key("gone")) == nil)
            #expect(try root.get(key: key("gone")) == tombstone(10))
            #expect(try three.get(key: key("gone")) == tombstone(20))
            #expect(try seven.merkleSegments() == MerkleSegments(entries: seven.merkleListing(of: wholeRing)))

            // Range removal: keyspace 3's records only.
            #expect(try three.deleteRange(wholeRing) == 42)
            #expect(try three.get(key: key("shared")) == nil)
            #expect(try three.merkleDigest(of: wholeRing) == 0)
            #expect(try root.get(key: key("shared")) == record(10, "in 0"))
            #expect(try seven.get(key: key("shared")) == record(30, "in 7"))
            #expect(try root.merkleListing(of: wholeRing).count == 42)
            #expect(try seven.merkleListing(of: wholeRing).count == 41)
        }
    }

    @Test(arguments: kinds)
    func viewsOfOneKeyspaceAreOneData(_ kind: StoreKind) throws {
        try withKeyspaceStore(kind) { root throws in
            let first = try root.keyspace(3)
            let second = try root.keyspace(3)
            #expect(first === second)
            #expect(try first.keyspace(0) === root)
            #expect(try first.keyspace(3) === first)
            _ = try first.apply(key: key("a"), record: record(1, "x"))
            #expect(try second.get(key: key("a")) == record(1, "x"))
            try first.markDue(replica: "n1", range: TokenRangeSpan(start: 1, end: 2), atMillis: 1)
            #expect(second.rangesDue().count == 1)
            #expect(try root.keyspace(0) === root)
            _ = try root.keyspace(9)
            #expect(root.storedKeyspaces() == [3, 9])
            #expect(first.storedKeyspaces() == [3, 9])
        }
    }

    /// A store of `kind` with keyspaces 0, 3 and 7, each `fill`ed, for `body`.
    static func withFilledKeyspaces(
        _ kind: StoreKind,
        _ body: (_ root: any KeyspaceStoring, _ three: any KeyspaceStoring, _ seven: any KeyspaceStoring) throws -> Void
    ) throws {
        try withKeyspaceStore(kind) { root throws in
            let three = try root.keyspace(3)
            let seven = try root.keyspace(7)
            try fill([root, three, seven])
            try body(root, three, seven)
        }
    }

    @Test(arguments: kinds)
    func aDroppedKeyspaceIsGoneAndItsViewsAreClosed(_ kind: StoreKind) throws {
        try Self.withFilledKeyspaces(kind) { root, three, seven throws in
            try three.setMetadata("x", [3])
            try three.markDue(replica: "n1", range: TokenRangeSpan(start: 1, end: 2), atMillis: 1)

            try root.dropKeyspace(3)
            #expect(root.storedKeyspaces() == [7])
            #expect(errorCode { _ = try three.get(key: key("shared")) } == .closed)
            #expect(errorCode { _ = try three.apply(key: key("shared"), record: record(99, "v")) } == .closed)
            #expect(errorCode { _ = try three.metadata("x") } == .closed)
            #expect(errorCode { _ = try three.merkleDigest(of: wholeRing) } == .closed)
            #expect(three.rangesDue().isEmpty)
            // Dropping again, or a keyspace never held, is not an error.
            try root.dropKeyspace(3)
            try root.dropKeyspace(11)
            // The others are untouched.
            #expect(try root.get(key: key("shared")) == record(10, "in 0"))
            #expect(try seven.get(key: key("shared")) == record(30, "in 7"))
            #expect(try seven.merkleListing(of: wholeRing).count == 42)

            // Asked for again, it is a new, empty keyspace.
            let again = try root.keyspace(3)
            #expect(again !== three)
            #expect(try again.get(key: key("shared")) == nil)
            #expect(try again.metadata("x") == nil)
            #expect(again.rangesDue().isEmpty)
            #expect(try again.merkleDigest(of: wholeRing) == 0)
            #expect(try streamed(again).isEmpty)
            // Nothing of the dropped keyspace's keys is remembered: a write older than theirs is written.
            #expect(try again.apply(key: key("shared"), record: record(1, "anew")) == .applied)
            #expect(try again.get(key: key("shared")) == record(1, "anew"))
        }
    }

    /// A node's key count is every keyspace's: the sum of each view's count, the same from any view,
    /// without a dropped keyspace's keys.
    @Test(arguments: kinds)
    func theKeyCountOfEveryKeyspaceSumsTheViews(_ kind: StoreKind) throws {
        try Self.withFilledKeyspaces(kind) { root, three, seven throws in
            let counts = [root, three, seven].map { $0.approximateKeyCount() }
            if kind == .inMemory { #expect(counts == [42, 42, 42]) }
            #expect(counts.allSatisfy { $0 > 0 }, "\(counts)")
            for store in [root, three, seven] {
                #expect(store.approximateKeyCountOfEveryKeyspace() == counts.reduce(0, +))
                #expect(store.everyKeyspace().map(\.id) == [0, 3, 7])
                #expect(store.everyKeyspace().map { $0.view.keyspaceID } == [0, 3, 7])
            }
            try root.dropKeyspace(3)
            #expect(root.approximateKeyCountOfEveryKeyspace() == counts[0] + counts[2])
            #expect(seven.everyKeyspace().map(\.id) == [0, 7])
            root.close()
            #expect(seven.approximateKeyCountOfEveryKeyspace() == 0)
            #expect(seven.everyKeyspace().isEmpty)
        }
    }

    @Test(arguments: kinds)
    func closingAnyViewClosesEveryView(_ kind: StoreKind) throws {
        try withKeyspaceStore(kind) { root throws in
            let three = try root.keyspace(3)
            _ = try three.apply(key: key("a"), record: record(1, "x"))
            root.close()
            #expect(errorCode { _ = try three.get(key: key("a")) } == .closed)
            #expect(errorCode { _ = try root.keyspace(4) } == .closed)
        }
        try withKeyspaceStore(kind) { root throws in
            let three = try root.keyspace(3)
            three.close()
            #expect(errorCode { _ = try root.get(key: key("a")) } == .closed)
        }
    }

    @Test(arguments: kinds)
    func hintsNameTheirKeyspaceAndAreShared(_ kind: StoreKind) throws {
        try withKeyspaceStore(kind) { root throws in
            let five = try root.keyspace(5)
            let inFive = StoredHint(
                target: "n2", key: key("k"), record: record(4, "five"), storedAtMillis: 9, keyspace: 5)
            let inDefault = StoredHint(target: "n2", key: key("k"), record: record(4, "zero"), storedAtMillis: 9)
            #expect(try five.storeHint(inFive, queueMax: 10) == .stored)
            #expect(try root.storeHint(inDefault, queueMax: 10) == .stored)
            // Same target, version and key bytes: two hints, told apart by their keyspace.
            for store in [root, five] {
                let hints = try store.hints(for: "n2", limit: 10).map(\.hint)
                #expect(Set(hints.map(\.keyspace)) == [0, 5])
                #expect(hints.first { $0.keyspace == 5 } == inFive)
                #expect(hints.first { $0.keyspace == 0 } == inDefault)
                #expect(store.hintQueueSizes() == ["n2": 2])
            }
            // A dropped keyspace's hints stay.
            try root.dropKeyspace(5)
            #expect(try root.hints(for: "n2", limit: 10).count == 2)
        }
    }

    @Test(arguments: kinds)
    func idsOutOfBoundsAndReservedNamesAreRefused(_ kind: StoreKind) throws {
        try withKeyspaceStore(kind) { root throws in
            let max = UInt32(Limits.keyspaceIDsMax)
            #expect(errorCode { _ = try root.keyspace(max) } == .invalidRecord)
            #expect(errorCode { _ = try root.keyspace(.max) } == .invalidRecord)
            #expect(errorCode { try root.dropKeyspace(0) } == .invalidRecord)
            #expect(errorCode { try root.dropKeyspace(max) } == .invalidRecord)
            #expect(try root.keyspace(max - 1).keyspaceID == max - 1)
            let three = try root.keyspace(3)
            for store in [root, three] {
                #expect(errorCode { try store.setMetadata("keyspace/1/x", [1]) } == .invalidRecord)
                #expect(errorCode { try store.setMetadataDurably("keyspace/3/x", [1]) } == .invalidRecord)
                #expect(errorCode { try store.setMetadata("merkle.state", [1]) } == .invalidRecord)
            }
            #expect(try root.metadata("keyspace/3/x") == nil)
        }
    }
}

/// What only `RocksDBStore` does with keyspaces: keep them across a reopen, free a dropped one's disk
/// space, and carry them in checkpoints.
@Suite struct RocksDBKeyspaceTests {
    /// Bytes of the files directly in `path` (not the checkpoints folder).
    static func folderBytes(_ path: String) throws -> UInt64 {
        try FileManager.default.contentsOfDirectory(atPath: path).reduce(UInt64(0)) { total, name in
            let attributes = try FileManager.default.attributesOfItem(atPath: "\(path)/\(name)")
            guard attributes[.type] as? FileAttributeType == .typeRegular else { return total }
            return total + ((attributes[.size] as? NSNumber)?.uint64Value ?? 0)
        }
    }

    @Test(arguments: [Durability.sync, .none])
    func aReopenKeepsEveryKeyspace(_ durability: Durability) throws {
        try withTemporaryDirectory { path throws in
            let range = TokenRangeSpan(start: 100, end: 200)
            var segments: [UInt32: MerkleSegments] = [:]
            do {
                let root = try RocksDBStore(directory: path, durability: durability)
                defer { root.close() }
                let three = try root.keyspace(3)
                let seven = try root.keyspace(7)
                _ = try root.keyspace(12)
                try KeyspaceTests.fill([root, three, seven])
                try three.markDue(replica: "n2", range: range, atMillis: 3)
                try seven.setMetadataDurably("checkpoint", [7])
                for store in [root, three, seven] { segments[store.keyspaceID] = try store.merkleSegments() }
            }
            let root = try RocksDBStore(directory: path, durability: durability)
            defer { root.close() }
            #expect(root.storedKeyspaces() == [3, 7, 12])
            for id: UInt32 in [0, 3, 7] {
                let store = try root.keyspace(id)
                // Loaded, not rebuilt: the segments were stored under the keyspace's own keys.
                #expect(store.merkleRebuildAtOpen == nil)
                #expect(try store.merkleSegments() == segments[id])
                #expect(try store.get(key: key("shared")) == record(10 * UInt64([0: 1, 3: 2, 7: 3][id]!), "in \(id)"))
                #expect(try store.versionIndexEntryCount() == 42)
            }
            #expect(try root.keyspace(3).rangesDue() == [RepairMark(replica: "n2", range: range, firstMarkedMillis: 3)])
            #expect(root.rangesDue().isEmpty)
            #expect(try root.keyspace(7).metadata("checkpoint") == [7])
            #expect(try root.keyspace(12).get(key: key("shared")) == nil)
        }
    }

    @Test func aDropFreesTheDiskAndSurvivesAReopen() throws {
        try withTemporaryDirectory { path throws in
            do {
                let root = try RocksDBStore(directory: path)
                defer { root.close() }
                let three = try root.keyspace(3)
                _ = try root.apply(key: key("kept"), record: record(1, "zero"))
                // Random values, which compression cannot shrink: 6 MB.
                var random = SplitMix64(seed: 20)
                let records = (0..<1_500).map { item in
                    StreamedRecord(
                        key: key("big-\(item)"),
                        record: StoredRecord(
                            version: Version(hlc: 5, writer: 1), tombstone: false,
                            value: (0..<4096).map { _ in UInt8.random(in: 0 ... .max, using: &random) }))
                }
                _ = try three.apply(records, setting: nil)
                try root.flush()
                let before = try Self.folderBytes(path)
                #expect(before > 5_000_000)
                try root.dropKeyspace(3)
                try root.flush()
                let after = try Self.folderBytes(path)
                #expect(after + 5_000_000 < before, "\(before) bytes before the drop, \(after) after")
            }
            // No `data.3` family: a read-only open naming it is refused.
            #expect(throws: StorageError.self) { try RocksDBCheckpointReader(directory: path, keyspace: 3) }
            let root = try RocksDBStore(directory: path)
            defer { root.close() }
            #expect(root.storedKeyspaces().isEmpty)
            #expect(try root.get(key: key("kept")) == record(1, "zero"))
            let three = try root.keyspace(3)
            #expect(try three.get(key: key("big-1")) == nil)
            #expect(try three.merkleDigest(of: wholeRing) == 0)
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func aDropWaitsForCallsInFlightAndLaterCallsAreClosed() throws {
        try withTemporaryDirectory { path throws in
            let root = try RocksDBStore(directory: path, durability: .none)
            defer { root.close() }
            let three = try root.keyspace(3)
            let seen = callsUntilClosed(close: { try root.dropKeyspace(3) }) { thread, item in
                _ = try three.apply(key: key("t\(thread)-\(item)"), record: record(1, "v"))
                _ = try three.merkleDigest(of: TokenRangeSpan(start: 1, end: 1 << 40))
            }
            #expect(Set(seen.keys).isSubset(of: ["applied", "closed"]), "\(seen)")
            #expect(seen["closed", default: 0] > 0)
            #expect(root.storedKeyspaces().isEmpty)
            #expect(try root.keyspace(3).merkleDigest(of: wholeRing) == 0)
        }
    }

    @Test func aDefaultKeyspaceHintKeepsItsStorageKey() throws {
        let record = StoredRecord(version: Version(hlc: 0x0102, writer: 0x0304), tombstone: false, value: [9])
        let inDefault = StoredHint(target: "n1", key: [0xAA], record: record, storedAtMillis: 1)
        let layout: [UInt8] =
            [0, 2] + Array("n1".utf8) + [0, 0, 0, 0, 0, 0, 1, 2] + [0, 0, 0, 0, 0, 0, 3, 4] + [0xAA]
        #expect(HintCodec.storageKey(inDefault) == layout)
        var inFive = inDefault
        inFive.keyspace = 5
        #expect(HintCodec.storageKey(inFive) == layout + [0, 0, 0, 5])
        // A hint stored before keyspaces existed reads as the default keyspace's, and a keyspace's hint
        // survives a reopen.
        try withTemporaryDirectory { path throws in
            do {
                let root = try RocksDBStore(directory: path)
                defer { root.close() }
                try root.writeRawHintForTesting(key: layout, value: HintCodec.encodeValue(inDefault))
                #expect(try root.storeHint(inFive, queueMax: 10) == .stored)
            }
            let root = try RocksDBStore(directory: path)
            defer { root.close() }
            #expect(root.hintQueueSizes() == ["n1": 2])
            #expect(try root.hints(for: "n1", limit: 10).map(\.hint) == [inDefault, inFive])
        }
    }

    @Test func checkpointsCarryEveryKeyspaceAndReadOneAtATime() throws {
        try withTemporaryDirectory { path throws in
            let root = try RocksDBStore(directory: path + "/db")
            defer { root.close() }
            let three = try root.keyspace(3)
            try KeyspaceTests.fill([root, three])
            _ = try root.storeHint(
                StoredHint(target: "n2", key: key("h"), record: record(50, "zero"), storedAtMillis: 1), queueMax: 10)
            _ = try root.storeHint(
                StoredHint(target: "n2", key: key("h"), record: record(50, "three"), storedAtMillis: 1, keyspace: 3),
                queueMax: 10)

            let checkpoint = try root.createCheckpoint(id: "full", hash: CheckpointTests.fakeHash)
            // The default keyspace reads as before: its records and hints only.
            let reader = try RocksDBCheckpointReader(directory: checkpoint.path)
            defer { reader.close() }
            #expect(try reader.dataPage(after: nil, recordsMax: 100).count == 42)
            #expect(try reader.record(forKey: key("shared")) == record(10, "in 0"))
            #expect(try reader.record(forKey: key("ks3-1")) == nil)
            #expect(try reader.hints().map(\.record) == [record(50, "zero")])
            // Keyspace 3 is in the checkpoint too.
            let threeReader = try RocksDBCheckpointReader(directory: checkpoint.path, keyspace: 3)
            defer { threeReader.close() }
            #expect(try threeReader.record(forKey: key("shared")) == record(20, "in 3"))
            #expect(try threeReader.hints().map(\.record) == [record(50, "three")])

            // An incremental checkpoint holds every keyspace too, each in its own family.
            let changes = try root.createChangesCheckpoint(id: "changes", since: 0, hash: CheckpointTests.fakeHash)
            #expect(try RocksDBCheckpointReader.keyspaces(in: changes.path) == [0, 3])
            #expect(try RocksDBCheckpointReader.keyspaces(in: checkpoint.path) == [0, 3])
            let changesReader = try RocksDBCheckpointReader(directory: changes.path)
            defer { changesReader.close() }
            #expect(try changesReader.dataPage(after: nil, recordsMax: 100).count == 42)
            #expect(try changesReader.record(forKey: key("shared")) == record(10, "in 0"))
            #expect(try changesReader.allHints().map(\.keyspace).sorted() == [0, 3])
            let changesThree = try RocksDBCheckpointReader(directory: changes.path, keyspace: 3)
            defer { changesThree.close() }
            #expect(try changesThree.record(forKey: key("shared")) == record(20, "in 3"))
            #expect(try changesThree.hints().map(\.record) == [record(50, "three")])
            #expect(throws: StorageError.self) { try RocksDBCheckpointReader(directory: changes.path, keyspace: 4) }

            // A full checkpoint opens as a store with its keyspaces.
            let copy = path + "/copy"
            try FileManager.default.copyItem(atPath: checkpoint.path, toPath: copy)
            let reopened = try RocksDBStore(directory: copy)
            defer { reopened.close() }
            #expect(reopened.storedKeyspaces() == [3])
            #expect(try reopened.keyspace(3).get(key: key("shared")) == record(20, "in 3"))
        }
    }
}
