/// The asking side of a listing by entry hashes, sans I/O: what a `.listing` query of a
/// `MerkleComparison` costs when the co-replica answers 8 bytes per record instead of its key and
/// version (`proto-spec/MERKLE.md`, "Exchange").
///
/// 1. The co-replica answers the entry hashes of the leaves' records (`entryHashes`).
/// 2. Every hash that matches none of the asker's own entries of those leaves (`local`) is fetched
///    (`fetch(remoteHashes:)`): the co-replica sends those records whole, or only their key and version
///    when their hlc is not above the leaf's guard, the newest hlc of the asker's own entries there
///    that the co-replica lacks (most likely the same key, held newer: its value would be sent in vain).
/// 3. `remoteListing(fetched:)` rebuilds the co-replica's full listing, the asker's matched entries
///    plus the fetched ones, for `MerkleComparison.handle(local:remote:)`, and keeps the whole records
///    for the copy that follows.
///
/// A matched hash is the same (key, version, tombstone) on both sides, up to a 64-bit collision, which
/// the digests already accept. Answers are checked: a hash twice, a fetched record not asked for or
/// outside the leaves throw `MerkleComparisonError.malformedAnswer`. A hash the co-replica no longer
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

    public let tree: MerkleTree
    public let query: MerkleQuery
    private let spans: [TokenRangeSpan]
    private let local: [MerkleEntry]
    private var matched: [MerkleEntry] = []
    private var wanted: Set<UInt64> = []

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
                matched.append(entry)
            } else if let leaf = spans.firstIndex(where: { $0.contains(entry.token) }) {
                guards[leaf] = max(guards[leaf], entry.version.hlc)
            }
        }
        wanted = remote.subtracting(held)
        guard !wanted.isEmpty else { return nil }
        return Fetch(
            leaves: zip(query.nodes, guards).map { Leaf(node: $0, valueAboveHlc: $1) },
            hashes: remoteHashes.filter { wanted.contains($0) })
    }

    /// The co-replica's listing of the leaves, rebuilt from the matched entries and `fetched`, and the
    /// whole records among them by key.
    public func remoteListing(
        fetched: [Fetched]
    ) throws(MerkleComparisonError) -> (answer: MerkleAnswer, records: [[UInt8]: StoredRecord]) {
        var entries = matched
        var records: [[UInt8]: StoredRecord] = [:]
        var seen = Set<UInt64>(minimumCapacity: fetched.count)
        for item in fetched {
            let hash = item.entry.hash
            guard wanted.contains(hash), seen.insert(hash).inserted else {
                throw .malformedAnswer("remote fetch answer has \(item.entry), not asked for or twice")
            }
            guard spans.contains(where: { $0.contains(item.entry.token) }) else {
                throw .malformedAnswer("remote fetch answer has \(item.entry) outside the listed nodes")
            }
            entries.append(item.entry)
            if let record = item.record { records[item.entry.key] = record }
        }
        return (MerkleAnswer(entries: entries), records)
    }
}
