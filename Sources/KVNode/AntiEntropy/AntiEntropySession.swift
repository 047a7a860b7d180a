import KVCore

/// Repairs one token range between two replicas: drives a `MerkleComparison` with `local` as its
/// local side and `peer` as its remote side (whose listings go by entry hashes against the local
/// one's, and bring the records `local` lacks along: `MerkleHashListing`), then copies each differing
/// record to the side that lacks it or holds it older: `push` keys are read from `local` and written
/// to `peer` in batches (a `MerkleApply` when the peer is remote), `pull` keys are written to `local`
/// from the records the listings brought, or read from `peer` first when they did not. Writes go through the receiving replica's apply rule, so a version only ever moves forward
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
    /// Tombstones older than this, and values that expired before it, are not copied to a side that
    /// holds nothing for their key (`MerkleComparison.purgeHorizon`, `withoutPurgedExpiries`).
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
        // Whole records the peer sent with its listings: pulled without another read.
        var carried: [[UInt8]: StoredRecord] = [:]
        do {
            while case .query(let query) = action {
                try await limiter.waitForCredit()
                let (mine, theirs): (MerkleAnswer, MerkleAnswer)
                var bytes: Int
                if query.kind == .listing {
                    // The peer lists by entry hashes, against ours.
                    let ours = try await local.answer(query, in: tree)
                    let listing = try await peer.listing(query, in: tree, local: ours.answer.entries)
                    (mine, theirs, bytes) = (ours.answer, listing.answer, ours.bytes + listing.bytes)
                    carried.merge(listing.records) { $1 }
                } else {
                    async let ours = local.answer(query, in: tree)
                    let answer = try await peer.answer(query, in: tree)
                    let local = try await ours
                    (mine, theirs, bytes) = (local.answer, answer.answer, local.bytes + answer.bytes)
                }
                report.bytes += bytes
                limiter.spend(bytes)
                action = try comparison.handle(local: mine, remote: theirs)
            }
            report.queries = comparison.queriesAsked
            guard case .finish(let difference) = action else { preconditionFailure("a comparison ends in finish") }
            try await copy(
                difference.push, from: local, to: peer, carried: [:], applied: &report.keysSent, bytes: &report.bytes)
            try await copy(
                difference.pull, from: peer, to: local, carried: carried, applied: &report.keysReceived,
                bytes: &report.bytes)
        } catch let error as MerkleComparisonError {
            report.queries = comparison.queriesAsked
            report.failure = "\(peer.nodeID): \(error)"
        } catch {
            report.queries = comparison.queriesAsked
            report.failure = error is CancellationError ? "cancelled" : "\(error)"
        }
        return report
    }

    /// Reads each entry's record from `source` (`concurrency` reads at a time; none for a record in
    /// `carried` at the entry's version) and writes them to `target` in batches of at most
    /// `Limits.merkleRecordBytesPerFrameMax` bytes, adding to `applied` each record `target` applied (as
    /// it happens, so a failure keeps the count of what was done). A record `source` no longer holds is
    /// skipped.
    private func copy(
        _ entries: [MerkleEntry],
        from source: any AntiEntropyReplica,
        to target: any AntiEntropyReplica,
        carried: [[UInt8]: StoredRecord],
        applied: inout Int,
        bytes: inout Int
    ) async throws {
        let limiter = self.limiter
        var batch: [(key: [UInt8], record: StoredRecord)] = []
        var batchBytes = 0
        func flush() async throws -> (applied: Int, bytes: Int) {
            guard !batch.isEmpty else { return (0, 0) }
            try await limiter.waitForCredit()
            let written = try await target.write(batch: batch)
            limiter.spend(written.bytes)
            batch.removeAll(keepingCapacity: true)
            batchBytes = 0
            return written
        }
        let chunk = max(1, concurrency) * 16
        for start in stride(from: 0, to: entries.count, by: chunk) {
            let slice = entries[start..<min(start + chunk, entries.count)]
            var records: [(key: [UInt8], record: StoredRecord)] = []
            var toRead: [[UInt8]] = []
            for entry in slice {
                if let record = carried[entry.key], record.version == entry.version {
                    records.append((entry.key, record))
                } else {
                    toRead.append(entry.key)
                }
            }
            if !toRead.isEmpty {
                let read = try await withThrowingTaskGroup(of: (key: [UInt8], record: StoredRecord?, bytes: Int).self) {
                    group in
                    var next = 0
                    func startOne() {
                        let key = toRead[next]
                        next += 1
                        group.addTask {
                            try await limiter.waitForCredit()
                            let (record, readBytes) = try await source.read(key)
                            limiter.spend(readBytes)
                            return (key, record, readBytes)
                        }
                    }
                    while next < min(max(1, concurrency), toRead.count) { startOne() }
                    var results: [(key: [UInt8], record: StoredRecord?, bytes: Int)] = []
                    while let result = try await group.next() {
                        results.append(result)
                        if next < toRead.count { startOne() }
                    }
                    return results
                }
                for item in read {
                    bytes += item.bytes
                    if let record = item.record { records.append((item.key, record)) }
                }
            }
            if let purgeHorizon {
                records = try await withoutPurgedExpiries(records, target: target, horizon: purgeHorizon, bytes: &bytes)
            }
            for (key, record) in records {
                let size = key.count + record.value.count
                if batchBytes > 0 && batchBytes + size > Limits.merkleRecordBytesPerFrameMax {
                    let written = try await flush()
                    applied += written.applied
                    bytes += written.bytes
                }
                batch.append((key, record))
                batchBytes += size
            }
        }
        let written = try await flush()
        applied += written.applied
        bytes += written.bytes
        // A batch is charged after it went: the session ends once the rate has paid for it.
        try await limiter.waitForCredit()
    }

    /// `records` without the values that expired before `horizon` and that `target` holds nothing for
    /// (`TombstonePolicy.copiesOnlyOverARecord`, which says why), with a read of `target` each.
    private func withoutPurgedExpiries(
        _ records: [(key: [UInt8], record: StoredRecord)], target: any AntiEntropyReplica, horizon: Version,
        bytes: inout Int
    ) async throws -> [(key: [UInt8], record: StoredRecord)] {
        var kept: [(key: [UInt8], record: StoredRecord)] = []
        kept.reserveCapacity(records.count)
        for (key, record) in records {
            guard TombstonePolicy.copiesOnlyOverARecord(record, below: horizon) else {
                kept.append((key, record))
                continue
            }
            try await limiter.waitForCredit()
            let (held, readBytes) = try await target.read(key)
            limiter.spend(readBytes)
            bytes += readBytes
            if held != nil { kept.append((key, record)) }
        }
        return kept
    }
}
