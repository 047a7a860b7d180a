import KVCore

/// Repairs one token range between two replicas: drives a `MerkleComparison` with `local` as its
/// local side and `peer` as its remote side, then copies each differing record to the side that
/// lacks it or holds it older: `push` keys are read from `local` and written to `peer` (a `Put` with
/// origin `antiEntropy` when the peer is remote), `pull` keys are read from `peer` and written to
/// `local`. Writes go through the receiving replica's apply rule, so a version only ever moves forward
/// and a record changed meanwhile is never overwritten by an older one.
///
/// `local` is usually this node's own store; for a range this node does not replicate (a mark left by
/// a hint it held), both sides are remote replicas.
///
/// Every exchange waits for the shared `ByteRateLimiter` first and is charged to it afterwards. A
/// failure (a peer down or timing out, an error answer, a malformed answer) ends the session; the
/// report then carries the reason and what was done until then.
struct AntiEntropySession: Sendable {
    let range: TokenRangeSpan
    let local: any AntiEntropyReplica
    let peer: any AntiEntropyReplica
    let limiter: ByteRateLimiter
    /// Records copied at once (reads and writes in flight).
    let concurrency: Int
    /// Tombstones older than this are not copied to a side that holds nothing for their key
    /// (`MerkleComparison.purgeHorizon`).
    let purgeHorizon: Version?

    /// What one session did.
    struct Report: Sendable, Hashable {
        var range: TokenRangeSpan
        var peer: String
        /// Merkle queries asked (of both sides; the root included).
        var queries = 0
        /// Records `peer` applied from `local`.
        var keysSent = 0
        /// Records `local` applied from `peer`.
        var keysReceived = 0
        /// Bytes over the network: request and response frames of every RPC of the session.
        var bytes = 0
        /// Why the session stopped early; nil when it completed.
        var failure: String?
    }

    func run() async -> Report {
        var report = Report(range: range, peer: peer.nodeID)
        var comparison = MerkleComparison(range: range, purgeHorizon: purgeHorizon)
        let tree = comparison.tree
        var action = comparison.start()
        do {
            while case .query(let query) = action {
                try await limiter.waitForCredit()
                async let ours = local.answer(query, in: tree)
                let theirs = try await peer.answer(query, in: tree)
                let mine = try await ours
                report.bytes += theirs.bytes + mine.bytes
                limiter.spend(theirs.bytes + mine.bytes)
                action = try comparison.handle(local: mine.answer, remote: theirs.answer)
            }
            report.queries = comparison.queriesAsked
            guard case .finish(let difference) = action else { preconditionFailure("a comparison ends in finish") }
            try await copy(
                difference.push, from: local, to: peer, applied: &report.keysSent, bytes: &report.bytes)
            try await copy(
                difference.pull, from: peer, to: local, applied: &report.keysReceived, bytes: &report.bytes)
        } catch let error as MerkleComparisonError {
            report.queries = comparison.queriesAsked
            report.failure = "\(peer.nodeID): \(error)"
        } catch {
            report.queries = comparison.queriesAsked
            report.failure = error is CancellationError ? "cancelled" : "\(error)"
        }
        return report
    }

    /// Reads each entry's record from `source` and writes it to `target`, `concurrency` at a time,
    /// adding to `applied` each record `target` applied (as it happens, so a failure keeps the count of
    /// what was done). A record `source` no longer holds is skipped.
    private func copy(
        _ entries: [MerkleEntry],
        from source: any AntiEntropyReplica,
        to target: any AntiEntropyReplica,
        applied: inout Int,
        bytes: inout Int
    ) async throws {
        guard !entries.isEmpty else { return }
        let limiter = self.limiter
        try await withThrowingTaskGroup(of: (applied: Bool, bytes: Int).self) { group in
            var next = 0
            func startOne() {
                let key = entries[next].key
                next += 1
                group.addTask {
                    try await limiter.waitForCredit()
                    let (record, readBytes) = try await source.read(key)
                    guard let record else {
                        limiter.spend(readBytes)
                        return (false, readBytes)
                    }
                    let (written, writeBytes) = try await target.write(key, record)
                    limiter.spend(readBytes + writeBytes)
                    return (written, readBytes + writeBytes)
                }
            }
            while next < min(concurrency, entries.count) { startOne() }
            while let result = try await group.next() {
                applied += result.applied ? 1 : 0
                bytes += result.bytes
                if next < entries.count { startOne() }
            }
        }
    }
}
