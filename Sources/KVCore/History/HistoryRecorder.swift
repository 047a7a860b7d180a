/// Builds a history from invoke/complete calls, made as operations start and end (by the simulator,
/// or by a test around real `KVClient` calls).
///
/// Misuse (completing an unknown or already completed operation, an outcome that does not fit the
/// operation, completing before invoking) is a bug in the caller and traps.
public struct HistoryRecorder: Sendable {
    private var recorded: [HistoryOperation] = []

    public init() {}

    /// Records that `client` started an operation at `at`; returns its id, to pass to ``complete(_:outcome:at:)``.
    public mutating func invoke(client: String, key: [UInt8], kind: HistoryOperation.Kind, at: UInt64) -> Int {
        let id = recorded.count
        recorded.append(HistoryOperation(id: id, client: client, key: key, kind: kind, invokedAt: at))
        return id
    }

    /// Records how operation `id` ended. An operation never completed stays ``HistoryOperation/Outcome-swift.enum/pending``.
    public mutating func complete(_ id: Int, outcome: HistoryOperation.Outcome, at: UInt64) {
        precondition(recorded.indices.contains(id), "operation \(id) was never invoked")
        precondition(recorded[id].completedAt == nil, "operation \(id) already completed")
        precondition(outcome != .pending, "an operation completes with an answer or .failed, not .pending")
        precondition(at >= recorded[id].invokedAt, "operation \(id) completed at \(at) before it was invoked")
        recorded[id].completedAt = at
        recorded[id].outcome = outcome
        precondition(recorded[id].outcomeFitsKind, "operation \(id) cannot end with \(outcome)")
    }

    /// Records that the value write `id` writes has a time to live: a reader may find it expired from
    /// `at` on (``HistoryOperation/expiresAt``). Called again (once the write was acknowledged and its
    /// version known), it replaces the time given before.
    public mutating func expires(_ id: Int, from at: UInt64) {
        precondition(recorded.indices.contains(id), "operation \(id) was never invoked")
        guard case .write = recorded[id].kind else { preconditionFailure("operation \(id) is not a write") }
        recorded[id].expiresAt = at
    }

    /// Every operation so far, in invocation order (ids are their indices).
    public var operations: [HistoryOperation] { recorded }
}
