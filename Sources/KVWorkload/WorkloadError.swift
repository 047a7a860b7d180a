/// A workload that cannot run on QuorumKV, or a name that is not a workload.
package enum WorkloadError: Error, Equatable, CustomStringConvertible {
    /// YCSB's workload E scans short key ranges; QuorumKV hashes keys over the ring and has no scans.
    case needsRangeScans
    /// Not one of `a` to `f`.
    case unknown(String)

    package var description: String {
        switch self {
        case .needsRangeScans:
            "workload e needs range scans, which QuorumKV does not have"
        case .unknown(let name):
            "no workload '\(name)': the YCSB core workloads are a, b, c, d, e and f"
        }
    }
}
