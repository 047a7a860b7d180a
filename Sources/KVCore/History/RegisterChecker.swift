/// Checks a history against the per-key register property that overlapping quorums promise.
///
/// Every key is checked on its own. With R+W>N and 2W>N:
/// - ``HistoryViolation/Kind-swift.enum/staleRead``: a read that *started* after a write or delete
///   of the same key was *acknowledged* returns an older version (absent is older than everything).
///   Operations that overlap in time are concurrent and never stale.
/// - ``HistoryViolation/Kind-swift.enum/phantomRead``: a read returns a version that no write or
///   delete of that key attempted (acknowledged, failed or pending) before the read completed.
/// - ``HistoryViolation/Kind-swift.enum/valueMismatch``: a read returns the version a write was
///   acknowledged with, but another value (or a value where a delete wrote it, or the reverse).
/// - ``HistoryViolation/Kind-swift.enum/writesOutOfOrder``: two acknowledged writes where one was
///   acknowledged before the other was invoked, yet the later has a version `<=` the earlier's.
///
/// A history only records the version a write was *acknowledged* with, so a version nobody was
/// acknowledged with is matched by value: it may come from a failed or pending write or delete with
/// the same value (or tombstone), or from an earlier attempt of an acknowledged write with the same
/// value that was re-stamped upwards after a `superseded` reply (so a version below its
/// acknowledged one), provided that write was invoked before the read completed. Reads and writes
/// that failed or are pending constrain nothing else: they may or may not have taken effect.
///
/// With `tombstonesMayBePurged`, a read that returns *absent* (no version) is not stale when a delete
/// of the key (acknowledged, failed or pending) was invoked no earlier than the write the read must
/// not be older than, and before the read completed: the replicas may have purged that delete's
/// tombstone, and absent is what a delete leaves. Absent after an acknowledged value that no delete
/// followed stays stale.
///
/// A write with a time to live (``HistoryOperation/expiresAt``) deletes its value when it expires: a
/// read may return the version it was acknowledged with and no value (expired, as a tombstone reads)
/// from its `expiresAt` on, not before; a version nobody was acknowledged with and no value may come
/// from any write with a time to live invoked before the read completed (an earlier attempt, or a
/// failed or pending write); and with `tombstonesMayBePurged`, such a write invoked no earlier than
/// the write the read must not be older than, and expired before the read completed, makes *absent*
/// as good as a delete does (the replicas purge expired values as they purge tombstones).
///
/// Cost: O(n log n) per key (sorting the acknowledged writes by completion and binary searching
/// them for each read and write), plus, for each read of *absent* that would be stale otherwise, a
/// scan of the writes with a time to live invoked in its window; a violation is reported once per
/// offending read or write.
public enum RegisterChecker {
    public static func check(_ operations: [HistoryOperation], tombstonesMayBePurged: Bool = false)
        -> [HistoryViolation]
    {
        var byKey: [[UInt8]: [Int]] = [:]
        var keys: [[UInt8]] = []
        for (index, op) in operations.enumerated() {
            if byKey[op.key] == nil { keys.append(op.key) }
            byKey[op.key, default: []].append(index)
        }
        var violations: [HistoryViolation] = []
        for key in keys {
            let ops = byKey[key]!.map { operations[$0] }
            violations.append(contentsOf: KeyHistory(ops, tombstonesMayBePurged: tombstonesMayBePurged).violations())
        }
        return violations
    }
}

/// The history of one key, indexed for the checks.
private struct KeyHistory {
    /// What a read's value must equal to match a write: the value written, or `nil` for a tombstone.
    typealias Content = [UInt8]?

    let ops: [HistoryOperation]
    /// Absent matches a delete (`RegisterChecker.check(_:tombstonesMayBePurged:)`).
    let tombstonesMayBePurged: Bool
    /// Acknowledged writes and deletes with their versions.
    var acknowledged: [(index: Int, version: Version)] = []
    /// Acknowledged writes and deletes that completed, by completion time, with the index (into
    /// `ops`) of the newest version among this one and those before it.
    var byCompletion: [(at: UInt64, newest: Int)] = []
    /// Who was acknowledged with each version (the first, if a broken history repeats one).
    var owner: [Version: Int] = [:]
    /// For each content, the earliest invocation of a failed or pending write of it.
    var unacknowledgedSince: [Content: UInt64] = [:]
    /// When each delete was invoked, in order.
    var deletesInvoked: [UInt64] = []
    /// The writes with a time to live, by invocation: when each was invoked and may read as expired.
    var expiring: [(invokedAt: UInt64, expiresAt: UInt64)] = []
    /// For each content, the acknowledged writes of it by invocation, with the newest version so far.
    var acknowledgedByContent: [Content: [(at: UInt64, newest: Version)]] = [:]

    init(_ ops: [HistoryOperation], tombstonesMayBePurged: Bool) {
        self.ops = ops
        self.tombstonesMayBePurged = tombstonesMayBePurged
        for (index, op) in ops.enumerated() {
            precondition(op.outcomeFitsKind, "operation \(op.id) cannot end with \(op.outcome)")
            let content: Content
            switch op.kind {
            case .read: continue
            case .write(let value):
                content = value
                if let expiresAt = op.expiresAt { expiring.append((op.invokedAt, expiresAt)) }
            case .delete:
                content = nil
                deletesInvoked.append(op.invokedAt)
            }
            switch op.outcome {
            case .wrote(let version):
                acknowledged.append((index, version))
                if owner[version] == nil { owner[version] = index }
                acknowledgedByContent[content, default: []].append((op.invokedAt, version))
            case .failed, .pending:
                unacknowledgedSince[content] = min(unacknowledgedSince[content] ?? .max, op.invokedAt)
            case .read:
                continue
            }
        }

        deletesInvoked.sort()
        expiring.sort { $0.invokedAt < $1.invokedAt }
        let completed = acknowledged.filter { ops[$0.index].completedAt != nil }
            .sorted { (ops[$0.index].completedAt!, $0.index) < (ops[$1.index].completedAt!, $1.index) }
        var newest: (index: Int, version: Version)?
        byCompletion.reserveCapacity(completed.count)
        for write in completed {
            if newest == nil || write.version > newest!.version { newest = write }
            byCompletion.append((ops[write.index].completedAt!, newest!.index))
        }
        for content in acknowledgedByContent.keys {
            acknowledgedByContent[content]!.sort { $0.at < $1.at }
            var newest = Version.zero
            for position in acknowledgedByContent[content]!.indices {
                newest = max(newest, acknowledgedByContent[content]![position].newest)
                acknowledgedByContent[content]![position].newest = newest
            }
        }
    }

    /// The acknowledged write with the newest version among those acknowledged strictly before `time`.
    func newestAcknowledged(before time: UInt64) -> Int? {
        var low = 0
        var high = byCompletion.count
        while low < high {
            let middle = (low + high) / 2
            if byCompletion[middle].at < time { low = middle + 1 } else { high = middle }
        }
        return low == 0 ? nil : byCompletion[low - 1].newest
    }

    func version(_ index: Int) -> Version {
        guard case .wrote(let version) = ops[index].outcome else { preconditionFailure("not an acknowledged write") }
        return version
    }

    func violations() -> [HistoryViolation] {
        var found: [HistoryViolation] = []
        for op in ops {
            switch (op.kind, op.outcome) {
            case (.read, .read(let version, let value)):
                checkRead(op, version, value, into: &found)
            case (_, .wrote(let version)):
                if let earlier = newestAcknowledged(before: op.invokedAt), version <= self.version(earlier) {
                    found.append(HistoryViolation(kind: .writesOutOfOrder, operations: [ops[earlier], op]))
                }
            default:
                break
            }
        }
        return found
    }

    /// Whether a delete was invoked within `start...end`.
    func deleteInvoked(from start: UInt64, through end: UInt64) -> Bool {
        var low = 0
        var high = deletesInvoked.count
        while low < high {
            let middle = (low + high) / 2
            if deletesInvoked[middle] < start { low = middle + 1 } else { high = middle }
        }
        return low < deletesInvoked.count && deletesInvoked[low] <= end
    }

    /// Whether a write with a time to live was invoked within `start...end` and may read as expired
    /// by `end`.
    func expiredWrite(from start: UInt64, through end: UInt64) -> Bool {
        var low = 0
        var high = expiring.count
        while low < high {
            let middle = (low + high) / 2
            if expiring[middle].invokedAt < start { low = middle + 1 } else { high = middle }
        }
        return expiring[low...].prefix { $0.invokedAt <= end }.contains { $0.expiresAt <= end }
    }

    func checkRead(_ read: HistoryOperation, _ got: Version?, _ value: [UInt8]?, into found: inout [HistoryViolation]) {
        let readEnd = read.completedAt ?? .max
        if let write = newestAcknowledged(before: read.invokedAt), got.map({ $0 < version(write) }) ?? true,
            !(got == nil && tombstonesMayBePurged
                && (deleteInvoked(from: ops[write].invokedAt, through: readEnd)
                    || expiredWrite(from: ops[write].invokedAt, through: readEnd)))
        {
            found.append(HistoryViolation(kind: .staleRead, operations: [ops[write], read]))
        }
        guard let got else { return }
        let content: Content = value
        if let index = owner[got] {
            let write = ops[index]
            if write.invokedAt > readEnd {
                found.append(HistoryViolation(kind: .phantomRead, operations: [read, write]))
                return
            }
            let written: Content
            switch write.kind {
            case .write(let bytes): written = bytes
            default: written = nil
            }
            // An expired value reads as deleted, from its expiry on.
            let expired = content == nil && write.expiresAt.map { $0 <= readEnd } ?? false
            if written != content && !expired {
                found.append(HistoryViolation(kind: .valueMismatch, operations: [write, read]))
            }
            return
        }
        if let since = unacknowledgedSince[content], since <= readEnd { return }
        if content == nil, let first = expiring.first, first.invokedAt <= readEnd { return }
        if let writes = acknowledgedByContent[content] {
            // An earlier attempt of a write later re-stamped upwards: invoked in time, acknowledged above `got`.
            var low = 0
            var high = writes.count
            while low < high {
                let middle = (low + high) / 2
                if writes[middle].at <= readEnd { low = middle + 1 } else { high = middle }
            }
            if low > 0, writes[low - 1].newest > got { return }
        }
        found.append(HistoryViolation(kind: .phantomRead, operations: [read]))
    }
}
