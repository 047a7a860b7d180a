/// What a replica holds for one key: the newest version it has seen, whether that version is a
/// delete, the value (empty for a tombstone) and when the value expires (a write with a time to live).
public struct StoredRecord: Sendable, Hashable {
    public var version: Version
    public var tombstone: Bool
    public var value: [UInt8]
    /// Wall-clock milliseconds since 1970 from which the record reads as deleted; 0: never. Set once by
    /// the writer and carried with the version everywhere (replicas, hints, repairs, streams), so
    /// every replica holding this version expires it at the same moment: no replica keeps a timer.
    public var expiresAtMillis: UInt64

    public init(version: Version, tombstone: Bool, value: [UInt8], expiresAtMillis: UInt64 = 0) {
        precondition(!tombstone || value.isEmpty, "a tombstone carries no value")
        precondition(!tombstone || expiresAtMillis == 0, "a tombstone does not expire")
        self.version = version
        self.tombstone = tombstone
        self.value = value
        self.expiresAtMillis = expiresAtMillis
    }

    /// The record these fields make, checked as every record from a peer is before it is made: a
    /// tombstone carries no value and does not expire (`init` traps on either).
    public static func checked(
        version: Version, tombstone: Bool, value: [UInt8], expiresAtMillis: UInt64
    ) throws(MalformedRecord) -> StoredRecord {
        guard !tombstone || value.isEmpty else { throw MalformedRecord("a tombstone carries no value") }
        guard !tombstone || expiresAtMillis == 0 else { throw MalformedRecord("a tombstone does not expire") }
        return StoredRecord(version: version, tombstone: tombstone, value: value, expiresAtMillis: expiresAtMillis)
    }

    /// The expiry of a write stamped `version` with time to live `ttl`: the version's milliseconds
    /// plus the TTL, so every replica and hint of that version expires at the same moment (0 without
    /// a TTL). The TTL is checked by the caller (`Limits.timeToLiveMax`); the sum saturates.
    public static func expiry(of version: Version, timeToLive ttl: Duration?) -> UInt64 {
        guard let ttl, ttl > .zero else { return 0 }
        let millis = UInt64(clamping: ttl.wholeMillisecondsClamped)
        let (sum, overflow) = version.millis.addingReportingOverflow(max(1, millis))
        return overflow ? .max : sum
    }

    /// Whether the record reads as deleted at `nowMillis`: a tombstone, or a value past its expiry.
    /// An expired record is a tombstone at its own version: it still outranks older versions (so an
    /// older copy elsewhere cannot come back), and it is purged as tombstones are.
    public func isDeleted(atMillis nowMillis: UInt64) -> Bool {
        tombstone || (expiresAtMillis != 0 && nowMillis >= expiresAtMillis)
    }
}

/// Fields no write could have made into a record (`StoredRecord.checked`).
public struct MalformedRecord: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// What applying a write to a replica did.
public enum ApplyOutcome: Sendable, Hashable {
    /// The write is now the replica's version (also when it already held exactly this version:
    /// retries are idempotent).
    case applied
    /// The replica holds a newer version, returned here; the write changed nothing.
    case superseded(current: Version)
}

extension ApplyOutcome {
    /// The apply rule, written once for every store: a record is written only over an older version
    /// or none. Returns what the store answers *without* writing — `.superseded` over a newer version,
    /// `.applied` over exactly this one (an idempotent retry) — or `nil` when the store must write
    /// and then answer `.applied`.
    public static func withoutWriting(over current: Version?, offered: Version) -> ApplyOutcome? {
        guard let current, current >= offered else { return nil }
        return current == offered ? .applied : .superseded(current: current)
    }
}
