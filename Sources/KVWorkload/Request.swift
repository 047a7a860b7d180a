/// One request of a workload: an operation and, except for inserts, the key it is on.
package enum Request: Sendable, Equatable {
    /// Get `key`.
    case read(key: Int)
    /// Put a new value for `key`.
    case update(key: Int)
    /// Put the next key of the insert sequence (`InsertSequence.issue()` names it).
    case insert
    /// Get `key`, then put a new value for it.
    case readModifyWrite(key: Int)

    /// The operation, for counting and reports.
    package var operation: OperationType {
        switch self {
        case .read: .read
        case .update: .update
        case .insert: .insert
        case .readModifyWrite: .readModifyWrite
        }
    }
}
