/// One client operation as the checker sees it: what was asked, when, and how it ended.
///
/// Times are any monotonic unit shared by the whole history (simulated milliseconds, or
/// `ContinuousClock` nanoseconds); the checker only compares them. An operation that never
/// completed has `completedAt == nil` and outcome ``Outcome-swift.enum/pending``.
public struct HistoryOperation: Sendable, Hashable, CustomStringConvertible {
    /// What the client asked for.
    public enum Kind: Sendable, Hashable {
        case write(value: [UInt8])
        case delete
        case read
    }

    /// How the operation ended, as the client saw it.
    public enum Outcome: Sendable, Hashable {
        /// Never completed (the client crashed, or it is still running): it may or may not have
        /// taken effect.
        case pending
        /// Returned an error: it may or may not have taken effect (Dynamo has partial writes).
        case failed
        /// A write or delete acknowledged with this version.
        case wrote(Version)
        /// A read answered. Version `nil` means the key was absent; a deleted key reads as its
        /// tombstone's version with value `nil`.
        case read(Version?, value: [UInt8]?)
    }

    /// Unique within one history; ``HistoryRecorder`` numbers operations from 0 in invocation order.
    public var id: Int
    /// Who ran the operation (an SDK client's name); only shown in reports.
    public var client: String
    public var key: [UInt8]
    public var kind: Kind
    public var invokedAt: UInt64
    /// When the client saw the answer or the error; `nil` while pending.
    public var completedAt: UInt64?
    public var outcome: Outcome
    /// For a write with a time to live: the earliest time at which a reader may find the value it wrote
    /// expired (absent on the next purge, read as deleted before). For an acknowledged write that is
    /// when the fastest clock a reader may have reaches the expiry of the version it was acknowledged
    /// with; for one not acknowledged (whose version nobody was told) it may be its invocation time.
    /// Nil for a value that does not expire, a delete and a read.
    public var expiresAt: UInt64?

    public init(
        id: Int,
        client: String,
        key: [UInt8],
        kind: Kind,
        invokedAt: UInt64,
        completedAt: UInt64? = nil,
        outcome: Outcome = .pending,
        expiresAt: UInt64? = nil
    ) {
        self.id = id
        self.client = client
        self.key = key
        self.kind = kind
        self.invokedAt = invokedAt
        self.completedAt = completedAt
        self.outcome = outcome
        self.expiresAt = expiresAt
    }

    /// Whether `outcome` is one this kind of operation can end with: a read ends `read`, a write or
    /// delete ends `wrote`, and any operation can be `pending` or `failed`.
    public var outcomeFitsKind: Bool {
        switch (kind, outcome) {
        case (_, .pending), (_, .failed): true
        case (.read, .read): true
        case (.write, .wrote), (.delete, .wrote): true
        default: false
        }
    }

    /// `#12 read "user:1" by c2 [130, 140] → 0.6@1 "v1"`: one line for reports and logs.
    public var description: String {
        let what: String
        switch kind {
        case .write(let value):
            what =
                "write \(HistoryText.bytes(key)) = \(HistoryText.bytes(value))"
                + (expiresAt.map { " expiring from \($0)" } ?? "")
        case .delete: what = "delete \(HistoryText.bytes(key))"
        case .read: what = "read \(HistoryText.bytes(key))"
        }
        let end = completedAt.map { String($0) } ?? "…"
        let result: String
        switch outcome {
        case .pending: result = "pending"
        case .failed: result = "failed"
        case .wrote(let version): result = "acknowledged \(version)"
        case .read(nil, _): result = "absent"
        case .read(let version?, .none): result = "\(version) tombstone"
        case .read(let version?, let value?): result = "\(version) \(HistoryText.bytes(value))"
        }
        return "#\(id) \(what) by \(client) [\(invokedAt), \(end)] → \(result)"
    }
}
