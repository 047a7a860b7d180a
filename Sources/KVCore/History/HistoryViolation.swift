/// One place where a history breaks the register property that overlapping quorums (R+W>N, 2W>N)
/// promise, with the few operations that show it.
public struct HistoryViolation: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// A read that started after a write of its key was acknowledged returned an older version.
        case staleRead
        /// A read returned a version that no write or delete of its key attempted before the read completed.
        case phantomRead
        /// Of two acknowledged writes of a key, the one invoked after the other was acknowledged has
        /// the older (or the same) version.
        case writesOutOfOrder
        /// A read returned a version that a write attempted, but with another value.
        case valueMismatch
    }

    public var kind: Kind
    /// The minimal offending sub-history: the operations that together break the property (two, or
    /// the read alone for a phantom nobody wrote), in time order (by invocation, then id).
    public var operations: [HistoryOperation]

    public init(kind: Kind, operations: [HistoryOperation]) {
        self.kind = kind
        self.operations = operations.sorted { ($0.invokedAt, $0.id) < ($1.invokedAt, $1.id) }
    }

    /// One paragraph a developer can act on: what happened, to which key, with versions and times,
    /// and where to look.
    public var description: String {
        let read = operations.first { $0.kind == .read }
        let other = operations.first { $0.kind != .read }
        let key = HistoryText.bytes(operations.first?.key ?? [])
        switch kind {
        case .staleRead:
            guard let read, let write = other, case .read(let got, let value) = read.outcome,
                case .wrote(let newer) = write.outcome, let acknowledged = write.completedAt
            else { return "stale read of key \(key): \(operations)" }
            let tombstone = write.kind == .delete ? "tombstone " : ""
            return """
                stale read of key \(key): \(HistoryText.operation(read)) returned \
                \(HistoryText.readResult(got, value)), but \(HistoryText.operation(write)) was acknowledged \
                with \(tombstone)version \(newer) at \(acknowledged), before the read was invoked at \
                \(read.invokedAt). With R+W>N the read quorum must include a replica holding \(newer) or newer: \
                check that the write really reached W replicas before it was acknowledged, and that the read \
                waited for R replies and answered with the newest version among them.
                """
        case .phantomRead:
            guard let read, case .read(let got, let value) = read.outcome else {
                return "phantom read of key \(key): \(operations)"
            }
            let start =
                "phantom read of key \(key): \(HistoryText.operation(read)) returned \(HistoryText.readResult(got, value))"
            if let write = other {
                return """
                    \(start), which only \(HistoryText.operation(write)) produced, and that write was invoked \
                    after the read had completed. A read cannot see the future: check that replies are matched \
                    to the right request id and key, and that versions are not reused across writes.
                    """
            }
            return """
                \(start), which no write or delete of this key attempted before the read completed \
                (no acknowledged write has that version, and no write with that \(value == nil ? "tombstone" : "value") \
                was invoked in time). A replica served a version nobody wrote: check version stamping, the \
                record encoding in storage and on the wire, and that replies are matched to the right key.
                """
        case .valueMismatch:
            guard let read, let write = other, case .read(let got, let value) = read.outcome,
                case .wrote(let version) = write.outcome
            else { return "value mismatch on key \(key): \(operations)" }
            let wrote: String
            switch write.kind {
            case .write(let written): wrote = "value \(HistoryText.bytes(written))"
            default: wrote = "a tombstone"
            }
            return """
                value mismatch on key \(key): \(HistoryText.operation(read)) returned \
                \(HistoryText.readResult(got, value)), but \(HistoryText.operation(write)) wrote version \
                \(version) with \(wrote). One version must always carry one value: check that a retried or \
                re-stamped write never reuses a version for other data, and how replicas encode records and \
                tombstones.
                """
        case .writesOutOfOrder:
            guard operations.count == 2, case .wrote(let first) = operations[0].outcome,
                case .wrote(let second) = operations[1].outcome, let acknowledged = operations[0].completedAt
            else { return "writes out of order on key \(key): \(operations)" }
            return """
                writes out of order on key \(key): \(HistoryText.operation(operations[1])) got version \(second), \
                not newer than version \(first) of \(HistoryText.operation(operations[0])), which was \
                acknowledged at \(acknowledged), before the later write was invoked at \(operations[1].invokedAt). \
                Last writer wins lets the older version hide the later write: check that replies carry the \
                replica's clock, that the client advances its HLC on receipt, and that a superseded write is \
                re-stamped past the replica's version before it is acknowledged.
                """
        }
    }
}
