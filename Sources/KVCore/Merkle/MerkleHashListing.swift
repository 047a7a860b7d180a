/// The asking side of a listing by entry hashes, sans I/O: what a `.listing` query of a
/// `MerkleComparison` costs when the co-replica answers 8 bytes per record instead of its key and
/// version (`proto-spec/MERKLE.md`, "Exchange").
///
/// 1. The co-replica answers the entry hashes of the leaves' records (`entryHashes`).
/// 2. Every hash that matches none of the asker's own entries of those leaves (`local`) is fetched
///    (`fetch(remoteHashes:)`): the co-replica sends those records whole, unless their hlc is not above
///    the leaf's guard, the newest hlc of the asker's own entries there that the co-replica lacks (most
///    likely the same key, held newer: its value would be sent in vain).
///    Those below the guard come as version only (`Older`): the asker finds the key by hashing its own
///    unmatched keys with that version (`take(_:older:)`), and fetches whole, in a second round, the
///    few it cannot (a key it lacks that happens to be older than the guard).
/// 3. `remoteListing()` rebuilds the co-replica's full listing, the asker's matched entries plus the
///    fetched ones, for `MerkleComparison.handle(local:remote:)`, and keeps the whole records for the
///    copy that follows.
///
/// A matched hash is the same (key, version, tombstone) on both sides, up to a 64-bit collision, which
/// the digests already accept (so is a key found for an `Older`). Answers are checked: a hash twice, a
/// fetched record not asked for or outside the leaves, an `Older` in the second round or at a position
/// not asked throw `MerkleComparisonError.malformedAnswer`. A hash the co-replica no longer
/// holds when asked to fetch it (a concurrent write) is left out, as a listing read a moment later
/// would; the apply rule makes the resulting push harmless and a later comparison finds the new version.
public struct MerkleHashListing: Sendable {
    /// The second request: the leaves, each with its guard, and the hashes wanted.
    public struct Fetch: Sendable, Hashable {
        public var leaves: [Leaf]
        public var hashes: [UInt64]

        public init(leaves: [Leaf], hashes: [UInt64]) {
            self.leaves = leaves
            self.hashes = hashes
        }
    }

    /// A leaf to fetch from, and its guard: a wanted record is sent whole only if its hlc is above.
    public struct Leaf: Sendable, Hashable {
        public var node: Int
        public var valueAboveHlc: UInt64

        public init(node: Int, valueAboveHlc: UInt64) {
            self.node = node
            self.valueAboveHlc = valueAboveHlc
        }
    }

    /// A record the co-replica sent: whole (`record` non-nil) or as its entry only.
    public struct Fetched: Sendable, Hashable {
        public var entry: MerkleEntry
        public var record: StoredRecord?

        public init(entry: MerkleEntry, record: StoredRecord?) {
            precondition(record.map { $0.version == entry.version && $0.tombstone == entry.tombstone } ?? true)
            self.entry = entry
            self.record = record
        }
    }

    /// A record the co-replica sent without its key or value, being no newer than its leaf's guard: its
    /// position in the last fetch's `hashes`, and its version.
    public struct Older: Sendable, Hashable {
        public var index: Int
        public var version: Version
        public var tombstone: Bool

        public init(index: Int, version: Version, tombstone: Bool) {
            self.index = index
            self.version = version
            self.tombstone = tombstone
        }
    }

    /// Entry hashes one `take(_:older:)` computes at most to find the keys of `Older` answers (each
    /// tries every unmatched entry of the batch); past it, the rest are fetched whole instead. Only a
    /// batch of thousands of differing records a leaf comes near it.
    public static let keySearchHashesMax = 1 << 20

    public let tree: MerkleTree
    public let query: MerkleQuery
    private let spans: [TokenRangeSpan]
    private let local: [MerkleEntry]
    private var entries: [MerkleEntry] = []
    private var records: [[UInt8]: StoredRecord] = [:]
    /// The asker's entries the co-replica does not hold: where an `Older` finds its key.
    private var unmatched: [MerkleEntry] = []
    private var wanted: Set<UInt64> = []
    private var received: Set<UInt64> = []
    /// The hashes of the fetch in flight, for `Older.index`.
    private var asked: [UInt64] = []
    private var followUp = false

    /// - Parameters:
    ///   - query: a `.listing` query of `tree`.
    ///   - local: the asker's answer to it.
    public init(tree: MerkleTree, query: MerkleQuery, local: [MerkleEntry]) {
        precondition(query.kind == .listing && tree.isValid(query), "a listing by hashes answers a valid listing")
        self.tree = tree
        self.query = query
        self.local = local
        spans = query.nodes.map { tree.span(level: query.level, index: $0) }
    }

    /// Takes the co-replica's entry hashes of the leaves; returns what to fetch, nil if nothing.
    public mutating func fetch(remoteHashes: [UInt64]) throws(MerkleComparisonError) -> Fetch? {
        var remote = Set<UInt64>(minimumCapacity: remoteHashes.count)
        for hash in remoteHashes where !remote.insert(hash).inserted {
            throw .malformedAnswer("remote entry-hash listing has hash \(hash) twice")
        }
        var guards = [UInt64](repeating: 0, count: spans.count)
        var held = Set<UInt64>(minimumCapacity: local.count)
        for entry in local {
            let hash = entry.hash
            held.insert(hash)
            if remote.contains(hash) {
                entries.append(entry)
            } else if let leaf = spans.firstIndex(where: { $0.contains(entry.token) }) {
                unmatched.append(entry)
                guards[leaf] = max(guards[leaf], entry.version.hlc)
            }
        }
        wanted = remote.subtracting(held)
        guard !wanted.isEmpty else { return nil }
        asked = remoteHashes.filter { wanted.contains($0) }
        return Fetch(leaves: zip(query.nodes, guards).map { Leaf(node: $0, valueAboveHlc: $1) }, hashes: asked)
    }

    /// Takes the answer to the last fetch: the records sent whole or as their entries, and those sent as
    /// `Older`, whose keys are found among the asker's entries the co-replica lacks. Returns a second
    /// fetch, every record whole (guards 0), of the `Older` ones no such key matches (a key the asker
    /// lacks, older than its leaf's guard); nil when the listing is complete (`remoteListing`).
    public mutating func take(
        _ fetched: [Fetched],
        older: [Older]
    ) throws(MerkleComparisonError) -> Fetch? {
        for item in fetched {
            try receive(item.entry)
            if let record = item.record { records[item.entry.key] = record }
        }
        var again: [UInt64] = []
        var budget = Self.keySearchHashesMax
        for item in older {
            guard asked.indices.contains(item.index), !followUp else {
                throw .malformedAnswer("remote fetch answer has an older entry at \(item.index), not asked for so")
            }
            let hash = asked[item.index]
            var key: [UInt8]?
            if budget >= unmatched.count {
                budget -= unmatched.count
                key =
                    unmatched.first {
                        MerkleEntry.hash(key: $0.key, version: item.version, tombstone: item.tombstone) == hash
                    }?.key
            }
            if let key {
                try receive(MerkleEntry(key: key, version: item.version, tombstone: item.tombstone))
            } else if !again.contains(hash) {
                again.append(hash)
            }
        }
        guard !again.isEmpty else { return nil }
        followUp = true
        asked = again
        return Fetch(leaves: query.nodes.map { Leaf(node: $0, valueAboveHlc: 0) }, hashes: again)
    }

    private mutating func receive(_ entry: MerkleEntry) throws(MerkleComparisonError) {
        let hash = entry.hash
        guard wanted.contains(hash), received.insert(hash).inserted else {
            throw .malformedAnswer("remote fetch answer has \(entry), not asked for or twice")
        }
        guard spans.contains(where: { $0.contains(entry.token) }) else {
            throw .malformedAnswer("remote fetch answer has \(entry) outside the listed nodes")
        }
        entries.append(entry)
    }

    /// The co-replica's listing of the leaves, rebuilt from the matched entries and the fetched ones,
    /// and the whole records among them by key.
    public func remoteListing() -> (answer: MerkleAnswer, records: [[UInt8]: StoredRecord]) {
        (MerkleAnswer(entries: entries), records)
    }
}
