import KVWorkload

/// What a run does, from `--workload`, `--mode` and `--distribution`: its operation mix, how it
/// picks keys, and whether the keys are written first.
struct LoadPlan: Sendable {
    /// The run's name in reports: `put`, `get` or `mixed` for a mode, `ycsb-a` … for a YCSB workload.
    var label: String
    /// The YCSB workload; nil for a mode.
    var workload: Workload?
    /// The operation shares.
    var mix: OperationMix
    /// How keys are picked.
    var distribution: KeyDistribution
    /// Whether every key is written before the run (unless `--skip-load`): all but a put mode.
    var loadsKeys: Bool

    /// The modes kvbench had before the YCSB workloads: puts, gets, or half of each, uniform keys.
    static let modeNames = ["put", "get", "mixed"]

    /// The plan of mode `name` (one of `modeNames`).
    static func mode(_ name: String, distribution: KeyDistribution?) -> LoadPlan {
        let mix: OperationMix =
            switch name {
            case "put": OperationMix([.update: 1])
            case "get": OperationMix([.read: 1])
            default: OperationMix([.read: 0.5, .update: 0.5])
            }
        return LoadPlan(
            label: name, workload: nil, mix: mix, distribution: distribution ?? .uniform, loadsKeys: name != "put")
    }

    /// The plan of YCSB workload `workload`, with its default distribution unless one is given.
    static func ycsb(_ workload: Workload, distribution: KeyDistribution?) -> LoadPlan {
        LoadPlan(
            label: "ycsb-\(workload.rawValue)", workload: workload, mix: workload.mix,
            distribution: distribution ?? workload.defaultDistribution, loadsKeys: true)
    }

    /// Whether the report breaks the run down by operation type (more than one type can run).
    var reportsOperations: Bool { workload != nil || mix.shares.count > 1 }
}
