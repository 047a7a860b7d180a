import Foundation
import KVCore
import Testing

@testable import KVStorage

/// `HeaderCache` alone, and the stores that keep one: what a key holds is known only while it is
/// true, and a write over a key known skips RocksDB's read.
@Suite struct HeaderCacheTests {
    private static func header(_ hlc: UInt64, tombstone: Bool = false, expires: UInt64 = 0) -> RecordCodec.Header {
        (Version(hlc: hlc, writer: 7), tombstone, expires)
    }

    private static func same(_ found: RecordCodec.Header??, _ expected: RecordCodec.Header?) -> Bool {
        guard let found else { return false }
        switch (found, expected) {
        case (nil, nil): return true
        case let (found?, expected?):
            return found.version == expected.version && found.tombstone == expected.tombstone
                && found.expiresAtMillis == expected.expiresAtMillis
        default: return false
        }
    }

    @Test func remembersHeadersAndAbsenceByKeyspaceAndKey() {
        let cache = HeaderCache()
        let user = key("user:1")
        let token = Token(key: user)
        #expect(cache.header(keyspace: 0, key: user, token: token) == nil)
        cache.remember(Self.header(5, expires: 99), keyspace: 0, key: user, token: token)
        #expect(Self.same(cache.header(keyspace: 0, key: user, token: token), Self.header(5, expires: 99)))
        // The same bytes in another keyspace are another key.
        #expect(cache.header(keyspace: 3, key: user, token: token) == nil)
        cache.remember(nil, keyspace: 3, key: user, token: token)
        #expect(Self.same(cache.header(keyspace: 3, key: user, token: token), nil))
        cache.remember(Self.header(6, tombstone: true), keyspace: 0, key: user, token: token)
        #expect(Self.same(cache.header(keyspace: 0, key: user, token: token), Self.header(6, tombstone: true)))
        // The empty key is a key.
        cache.remember(Self.header(8), keyspace: 0, key: [], token: Token(key: []))
        #expect(Self.same(cache.header(keyspace: 0, key: [], token: Token(key: [])), Self.header(8)))
        // A dropped keyspace's keys go, the others' stay.
        cache.forget(keyspace: 3)
        #expect(cache.header(keyspace: 3, key: user, token: token) == nil)
        #expect(Self.same(cache.header(keyspace: 0, key: user, token: token), Self.header(6, tombstone: true)))
    }

    @Test func keysLongerThanTheLimitAreNeverKept() {
        let cache = HeaderCache()
        let long = [UInt8](repeating: 0x61, count: HeaderCache.keyBytesMax + 1)
        let longest = [UInt8](repeating: 0x61, count: HeaderCache.keyBytesMax)
        cache.remember(Self.header(1), keyspace: 0, key: long, token: Token(key: long))
        cache.remember(Self.header(2), keyspace: 0, key: longest, token: Token(key: longest))
        #expect(cache.header(keyspace: 0, key: long, token: Token(key: long)) == nil)
        #expect(Self.same(cache.header(keyspace: 0, key: longest, token: Token(key: longest)), Self.header(2)))
    }

    /// Three keys of one set of two: the one used least lately goes; none is ever taken for another.
    @Test func aFullSetDropsTheKeyUsedLeastLately() {
        let cache = HeaderCache()
        let first = key("set-0")
        let set = cache.set(of: Token(key: first))
        let keys =
            [first]
            + (1..<2_000_000).lazy.map { key("set-\($0)") }.filter { cache.set(of: Token(key: $0)) == set }.prefix(2)
        guard keys.count == 3 else { Issue.record("no three keys share a set"); return }
        let (a, b, c) = (keys[0], keys[1], keys[2])
        cache.remember(Self.header(1), keyspace: 0, key: a, token: Token(key: a))
        cache.remember(Self.header(2), keyspace: 0, key: b, token: Token(key: b))
        // `a` used after `b`: `b` goes for `c`.
        #expect(Self.same(cache.header(keyspace: 0, key: a, token: Token(key: a)), Self.header(1)))
        cache.remember(Self.header(3), keyspace: 0, key: c, token: Token(key: c))
        #expect(cache.header(keyspace: 0, key: b, token: Token(key: b)) == nil)
        #expect(Self.same(cache.header(keyspace: 0, key: a, token: Token(key: a)), Self.header(1)))
        #expect(Self.same(cache.header(keyspace: 0, key: c, token: Token(key: c)), Self.header(3)))
        // `c` used last now: `a`'s turn to go.
        #expect(Self.same(cache.header(keyspace: 0, key: c, token: Token(key: c)), Self.header(3)))
        cache.remember(nil, keyspace: 0, key: b, token: Token(key: b))
        #expect(cache.header(keyspace: 0, key: a, token: Token(key: a)) == nil)
        #expect(Self.same(cache.header(keyspace: 0, key: b, token: Token(key: b)), nil))
    }

    /// A write over a key the store wrote lately reads nothing from RocksDB (its bytes read stay put),
    /// and is compared with what the key holds all the same.
    @Test func aWriteOverAKeyWrittenLatelyReadsNothing() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .none)
            defer { store.close() }
            let value = String(repeating: "v", count: 1000)
            let keys = (0..<50).map { key("hot-\($0)") }
            for (index, key) in keys.enumerated() {
                #expect(try store.apply(key: key, record: record(UInt64(10 + index), value)) == .applied)
            }
            let before = try #require(store.engineFigures()?.traffic).readBytes
            for (index, key) in keys.enumerated() {
                #expect(try store.apply(key: key, record: record(UInt64(100 + index), value)) == .applied)
            }
            #expect(
                try store.apply([StreamedRecord(key: keys[0], record: record(5, "older"))], setting: nil)
                    == [.superseded(current: Version(hlc: 100, writer: 1))])
            #expect(try store.apply(key: keys[1], record: record(101, value)) == .applied)
            #expect(try #require(store.engineFigures()?.traffic).readBytes == before)
            #expect(try store.get(key: keys[0]) == record(100, value))
        }
    }

    /// Whatever takes a record away (a tombstone purge, a range's delete) leaves the key known as
    /// empty: a write older than the record that was there is then written, as it is on a store that
    /// never knew the record (InMemoryStore shows the rule).
    @Test(arguments: [StoreKind.inMemory, .rocksDBNone, .rocksDBSync])
    func aKeyEmptiedByAPurgeOrARangeDeleteTakesAnOlderWrite(_ kind: StoreKind) throws {
        try withStore(kind) { store throws in
            let purged = key("purged")
            let deleted = key("deleted")
            _ = try store.apply(key: purged, record: tombstone(1_000))
            _ = try store.apply(key: deleted, record: record(1_000, "there"))
            #expect(
                try store.purgeTombstones(in: TokenRangeSpan(start: 0, end: 0), before: Version(hlc: 2_000, writer: 0))
                    == 1)
            let token = Token(key: deleted).value
            #expect(try store.deleteRange(TokenRangeSpan(start: token &- 1, end: token)) == 1)
            #expect(try store.apply(key: purged, record: record(10, "back")) == .applied)
            #expect(
                try store.apply([StreamedRecord(key: deleted, record: record(10, "back"))], setting: nil) == [.applied])
            #expect(try store.get(key: purged) == record(10, "back"))
            #expect(try store.get(key: deleted) == record(10, "back"))
        }
    }

    /// Random writes (one by one and in batches, with a key twice in a batch), purges and range
    /// deletes over a few keys, some longer than `HeaderCache.keyBytesMax`, against an InMemoryStore
    /// (which keeps no headers): every outcome, every record and the Merkle segments agree.
    @Test func aStoreWithItsHeadersAnswersAsAStoreWithout() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .none)
            defer { store.close() }
            let model = InMemoryStore()
            var random = SplitMix64(seed: 2026)
            let keys = (0..<24).map { index in
                index % 6 == 0 ? key("long-\(index)-" + String(repeating: "x", count: 70)) : key("k\(index)")
            }
            func anyRecord() -> StoredRecord {
                let hlc = UInt64.random(in: 1...300, using: &random)
                return Bool.random(using: &random) && Int.random(in: 0..<3, using: &random) == 0
                    ? tombstone(hlc) : record(hlc, "v\(hlc)")
            }
            for step in 0..<3_000 {
                let comment = Comment("step \(step)")
                switch Int.random(in: 0..<20, using: &random) {
                case 0:
                    let cutoff = Version(hlc: UInt64.random(in: 1...300, using: &random), writer: 0)
                    let range = TokenRangeSpan(start: random.next(), end: random.next())
                    #expect(
                        try store.purgeTombstones(in: range, before: cutoff)
                            == model.purgeTombstones(in: range, before: cutoff), comment)
                case 1:
                    let start = random.next()
                    let range = TokenRangeSpan(
                        start: start, end: start &+ UInt64.random(in: 0...(1 << 62), using: &random))
                    #expect(try store.deleteRange(range) == model.deleteRange(range), comment)
                case 2..<8:
                    let batch = (0..<Int.random(in: 1...6, using: &random)).map { _ in
                        StreamedRecord(key: keys.randomElement(using: &random)!, record: anyRecord())
                    }
                    #expect(try store.apply(batch, setting: nil) == model.apply(batch, setting: nil), comment)
                default:
                    let key = keys.randomElement(using: &random)!
                    let record = anyRecord()
                    #expect(try store.apply(key: key, record: record) == model.apply(key: key, record: record), comment)
                }
            }
            for key in keys { #expect(try store.get(key: key) == model.get(key: key)) }
            #expect(try store.merkleSegments() == model.merkleSegments())
        }
    }
}
