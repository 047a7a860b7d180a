/// One kind of request a workload makes, as YCSB names them.
package enum OperationType: String, CaseIterable, Sendable, Hashable {
    /// A get of a key that was loaded or inserted.
    case read
    /// A put of a new value for a key that exists.
    case update
    /// A put of a key that did not exist: the next one of the insert sequence.
    case insert
    /// A get and then a put of the same key, measured as one operation (its latency is the sum).
    case readModifyWrite = "read-modify-write"

    /// The name in reports: `read`, `update`, `insert` or `read-modify-write`.
    package var name: String { rawValue }
}
