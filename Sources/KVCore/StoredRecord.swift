/// What a replica holds for one key: the newest version it has seen, whether that version is a
/// delete, and the value (empty for a tombstone).
public struct StoredRecord: Sendable, Hashable {
    public var version: Version
    public var tombstone: Bool
    public var value: [UInt8]

    public init(version: Version, tombstone: Bool, value: [UInt8]) {
        precondition(!tombstone || value.isEmpty, "a tombstone carries no value")
        self.version = version
        self.tombstone = tombstone
        self.value = value
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
