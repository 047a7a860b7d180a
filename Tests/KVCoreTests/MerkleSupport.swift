import Foundation
import KVCore

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

/// Runs a comparison of `range` between two models to the end.
func compare(
    _ local: MerkleReplicaModel,
    _ remote: MerkleReplicaModel,
    range: TokenRangeSpan,
    purgeHorizon: Version? = nil
) throws -> (difference: MerkleDifference, queries: Int) {
    var comparison = MerkleComparison(range: range, purgeHorizon: purgeHorizon)
    var action = comparison.start()
    while case .query(let query) = action {
        action = try comparison.handle(
            local: local.answer(query, tree: comparison.tree), remote: remote.answer(query, tree: comparison.tree))
    }
    guard case .finish(let difference) = action else { fatalError("unreachable") }
    return (difference, comparison.queriesAsked)
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
