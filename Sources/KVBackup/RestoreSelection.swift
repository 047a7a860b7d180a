public import KVCore

/// Which records a restore writes: for each key, the newest version at or below T found on any
/// node's checkpoint (data or hints) of the chosen backup or of an earlier one. Pure, so that tests
/// drive it with records made by hand; `RestoreRunner` feeds it checkpoints.
///
/// The chosen backup is read first, every key once with all its copies (`chosen(key:records:)`).
/// A key with a copy newer than T becomes pending: an earlier backup may hold a version at or below
/// T newer than any the chosen backup holds (the key was overwritten after T). Earlier backups are
/// then read for the pending keys only (`earlier(key:records:)`), newest backup first. A key the
/// chosen backup does not hold at all is never taken from an earlier one: it was deleted and its
/// tombstone purged, and bringing it back would resurrect it.
///
/// Every record returned is written through the target's apply rule, so a later, newer return for
/// the same key replaces an earlier one.
public struct RestoreSelection: Sendable {
    public let asOf: UInt64

    /// The newest version kept so far of each pending key (nil while none is at or below T).
    public private(set) var pending: [[UInt8]: Kept?] = [:]
    /// Keys written from the chosen backup and not pending, by kind.
    public private(set) var settledValues = 0
    public private(set) var settledTombstones = 0
    /// Copies (data or hint, any node, any backup) newer than T, left out.
    public private(set) var recordsNewerSkipped = 0

    public struct Kept: Sendable, Hashable {
        public var version: Version
        public var tombstone: Bool
    }

    public init(asOf: UInt64) {
        self.asOf = asOf
    }

    /// The record to write for `key` given all the copies the chosen backup holds, or nil when none
    /// is at or below T.
    public mutating func chosen(key: [UInt8], records: [StoredRecord]) -> StoredRecord? {
        let newest = newestKept(records)
        if records.contains(where: { $0.version.hlc > asOf }) {
            pending[key] = .some(newest.map { Kept(version: $0.version, tombstone: $0.tombstone) })
        } else if let newest {
            if newest.tombstone { settledTombstones += 1 } else { settledValues += 1 }
        }
        return newest
    }

    /// Whether `key` is looked for in earlier backups.
    public func isPending(_ key: [UInt8]) -> Bool {
        pending[key] != nil
    }

    /// Whether earlier backups need reading at all.
    public var needsEarlierBackups: Bool { !pending.isEmpty }

    /// The record to write for pending `key` given the copies an earlier backup holds: its newest at
    /// or below T, when newer than what was kept so far; nil otherwise and for keys not pending.
    public mutating func earlier(key: [UInt8], records: [StoredRecord]) -> StoredRecord? {
        guard let kept = pending[key] else { return nil }
        guard let newest = newestKept(records) else { return nil }
        if let kept, kept.version >= newest.version { return nil }
        pending[key] = .some(Kept(version: newest.version, tombstone: newest.tombstone))
        return newest
    }

    /// Keys restored with a value, all backups read so far.
    public var valuesRestored: Int { settledValues + pending.values.count { $0?.tombstone == false } }
    /// Keys restored as tombstones (deleted at or before T).
    public var tombstonesRestored: Int { settledTombstones + pending.values.count { $0?.tombstone == true } }

    private mutating func newestKept(_ records: [StoredRecord]) -> StoredRecord? {
        var newest: StoredRecord?
        for record in records {
            guard record.version.hlc <= asOf else {
                recordsNewerSkipped += 1
                continue
            }
            if newest == nil || record.version > newest!.version { newest = record }
        }
        return newest
    }

    /// The state a restore leaves, key by key: `chosen` is every copy the chosen backup holds by
    /// key, `earlier` the same for the earlier backups, newest first. For tests and checks.
    public static func result(
        asOf: UInt64, chosen: [[UInt8]: [StoredRecord]], earlier: [[[UInt8]: [StoredRecord]]]
    ) -> [[UInt8]: StoredRecord] {
        var selection = RestoreSelection(asOf: asOf)
        var result: [[UInt8]: StoredRecord] = [:]
        for (key, records) in chosen {
            if let record = selection.chosen(key: key, records: records) { result[key] = record }
        }
        for backup in earlier {
            for (key, records) in backup {
                if let record = selection.earlier(key: key, records: records) { result[key] = record }
            }
        }
        return result
    }
}
