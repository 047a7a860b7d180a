import Foundation
import KVCore
import Testing

/// One replica's records as anti-entropy sees them, with its segments kept incrementally: the model
/// the Merkle tests compare against brute force.
struct MerkleReplicaModel {
    var entries: [[UInt8]: MerkleEntry] = [:]
    var segments = MerkleSegments()
    /// Each key's token and its entry's hash, so brute force does not hash again and again.
    private var hashed: [[UInt8]: (token: Token, hash: UInt64)] = [:]

    /// Keeps `entry` if it is newer than the stored one (the replica's apply rule).
    mutating func apply(_ entry: MerkleEntry) {
        let old = entries[entry.key]
        if let old, old.version >= entry.version { return }
        entries[entry.key] = entry
        hashed[entry.key] = (entry.token, entry.hash)
        segments.update(old: old, new: entry)
    }

    /// Removes a key (a tombstone purge).
    mutating func purge(_ key: [UInt8]) {
        guard let old = entries.removeValue(forKey: key) else { return }
        hashed[key] = nil
        segments.update(old: old, new: nil)
    }

    /// XOR of the entry hashes in `span`, by brute force.
    func bruteDigest(_ span: TokenRangeSpan) -> UInt64 {
        hashed.values.reduce(0) { span.contains($1.token) ? $0 ^ $1.hash : $0 }
    }

    /// The digest as a store computes it: whole segments from `segments`, partial pieces by a scan.
    func digest(_ span: TokenRangeSpan) -> UInt64 {
        segments.digest(of: span) { piece in bruteDigest(piece) }
    }

    func listing(_ span: TokenRangeSpan) -> [MerkleEntry] {
        hashed.filter { span.contains($0.value.token) }.map { entries[$0.key]! }.sorted(
            by: MerkleEntry.clockwiseOrder(from: span))
    }

    func answer(_ query: MerkleQuery, tree: MerkleTree) -> MerkleAnswer {
        tree.answer(query, digest: digest, listing: listing)!
    }
}

/// Runs a comparison of `range` between two models to the end; with `byHashes`, the remote's listings
/// go through `MerkleHashListing` (entry hashes, then a fetch answered as `ReplicaService` does).
func compare(
    _ local: MerkleReplicaModel,
    _ remote: MerkleReplicaModel,
    range: TokenRangeSpan,
    purgeHorizon: Version? = nil,
    byHashes: Bool = false
) throws -> (difference: MerkleDifference, queries: Int) {
    var comparison = MerkleComparison(range: range, purgeHorizon: purgeHorizon)
    var action = comparison.start()
    while case .query(let query) = action {
        let mine = local.answer(query, tree: comparison.tree)
        var theirs = remote.answer(query, tree: comparison.tree)
        if byHashes && query.kind == .listing {
            let listed = try remote.listByHashes(query, tree: comparison.tree, local: mine.entries)
            #expect(Set(listed.answer.entries) == Set(theirs.entries), "the rebuilt listing is the remote's")
            for (key, record) in listed.records {
                #expect(local.entries[key].map { $0.version < record.version } ?? true, "a value sent in vain")
            }
            theirs = listed.answer
        }
        action = try comparison.handle(local: mine, remote: theirs)
    }
    guard case .finish(let difference) = action else { fatalError("unreachable") }
    return (difference, comparison.queriesAsked)
}

extension MerkleReplicaModel {
    /// This replica's side of a listing by entry hashes, against the asker's `local` entries.
    func listByHashes(
        _ query: MerkleQuery,
        tree: MerkleTree,
        local: [MerkleEntry]
    ) throws -> (answer: MerkleAnswer, records: [[UInt8]: StoredRecord]) {
        var listing = MerkleHashListing(tree: tree, query: query, local: local)
        let mine = answer(query, tree: tree).entries
        var next = try listing.fetch(remoteHashes: mine.map(\.hash))
        var rounds = 0
        while let fetch = next {
            rounds += 1
            #expect(rounds <= 2, "a second round fetches every record whole")
            #expect(fetch.leaves.map(\.node) == query.nodes)
            var fetched: [MerkleHashListing.Fetched] = []
            var older: [MerkleHashListing.Older] = []
            for leaf in fetch.leaves {
                let span = tree.span(level: query.level, index: leaf.node)
                for entry in mine where span.contains(entry.token) {
                    guard let index = fetch.hashes.firstIndex(of: entry.hash) else { continue }
                    guard leaf.valueAboveHlc == 0 || entry.version.hlc > leaf.valueAboveHlc else {
                        older.append(.init(index: index, version: entry.version, tombstone: entry.tombstone))
                        continue
                    }
                    let record = StoredRecord(
                        version: entry.version, tombstone: entry.tombstone, value: entry.tombstone ? [] : [1])
                    fetched.append(MerkleHashListing.Fetched(entry: entry, record: record))
                }
            }
            next = try listing.take(fetched, older: older)
        }
        return listing.remoteListing()
    }
}

extension SplitMix64 {
    /// A range that often starts or ends near `tokens` (so boundary segments hold records), sometimes
    /// wraps past zero, and is sometimes the whole ring or segment-aligned.
    mutating func merkleRange(near tokens: [Token]) -> TokenRangeSpan {
        func point(_ rng: inout SplitMix64) -> UInt64 {
            switch Int.random(in: 0..<6, using: &rng) {
            case 0: return UInt64.random(in: .min ... .max, using: &rng)
            case 1: return (UInt64.random(in: 0..<(1 << 20), using: &rng) << 44) &- 1  // segment-aligned
            case 2: return UInt64.random(in: 0..<(1 << 30), using: &rng)  // near zero
            case 3: return UInt64.max - UInt64.random(in: 0..<(1 << 30), using: &rng)
            default:
                let token = tokens.randomElement(using: &rng)!.value
                let delta = UInt64.random(in: 0..<(1 << UInt64.random(in: 0...44, using: &rng)), using: &rng)
                return Bool.random(using: &rng) ? token &+ delta : token &- delta
            }
        }
        if chance(0.05) {
            let point = point(&self)
            return TokenRangeSpan(start: point, end: point)
        }
        return TokenRangeSpan(start: point(&self), end: point(&self))
    }
}

/// Runs `body` on a thread of its own: a property test that computes for a second or more must not
/// hold one of the two cooperative threads the async tests share.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}
