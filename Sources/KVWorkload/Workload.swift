/// The YCSB core workloads that QuorumKV can run (all but E, which needs range scans).
///
/// Each has YCSB's operation mix and default key distribution (`workloads/workloada` … `workloadf` in
/// the YCSB repository).
package enum Workload: String, CaseIterable, Sendable {
    /// Update heavy: 50 % reads, 50 % updates (a session store recording recent actions).
    case a
    /// Read mostly: 95 % reads, 5 % updates (photo tagging).
    case b
    /// Read only (a user profile cache).
    case c
    /// Read latest: 95 % reads, 5 % inserts, the newest keys read most (status updates).
    case d
    /// Read-modify-write: 50 % reads, 50 % read-modify-writes (a user database).
    case f

    /// The workload named `name` (`a` to `f`, either case).
    ///
    /// - Throws: `WorkloadError.needsRangeScans` for `e`, which is refused rather than approximated;
    ///   `WorkloadError.unknown` for any other name.
    package init(name: String) throws(WorkloadError) {
        let lowered = name.lowercased()
        if lowered == "e" { throw .needsRangeScans }
        guard let workload = Workload(rawValue: lowered) else { throw .unknown(name) }
        self = workload
    }

    /// The operation shares.
    package var mix: OperationMix {
        switch self {
        case .a: OperationMix([.read: 0.5, .update: 0.5])
        case .b: OperationMix([.read: 0.95, .update: 0.05])
        case .c: OperationMix([.read: 1])
        case .d: OperationMix([.read: 0.95, .insert: 0.05])
        case .f: OperationMix([.read: 0.5, .readModifyWrite: 0.5])
        }
    }

    /// YCSB's request distribution for the workload: `latest` for D, `zipfian` for the others.
    package var defaultDistribution: KeyDistribution {
        self == .d ? .latest : .zipfian
    }
}
