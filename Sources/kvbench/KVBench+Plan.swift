import ArgumentParser
import KVWorkload

extension KVBench {
    /// The run's plan from `--workload`, `--mode` and `--distribution`, or a `ValidationError`
    /// naming the option at fault.
    ///
    /// `--workload put|get|mixed` stays the mode it was before the YCSB workloads (scripts use it);
    /// `--workload e` is refused with the reason; a workload and a mode together are refused.
    func plan() throws -> LoadPlan {
        var keyDistribution: KeyDistribution?
        if let name = distribution {
            guard let named = KeyDistribution(name: name) else {
                throw ValidationError("--distribution must be uniform, zipfian or latest, not '\(name)'")
            }
            keyDistribution = named
        }
        if let mode {
            guard LoadPlan.modeNames.contains(mode) else {
                throw ValidationError("--mode must be put, get or mixed, not '\(mode)'")
            }
            if let workload {
                throw ValidationError(
                    "--workload \(workload) and --mode \(mode) together: a run has one mix, give one of them")
            }
            return .mode(mode, distribution: keyDistribution)
        }
        guard let workload else { return .mode("put", distribution: keyDistribution) }
        if LoadPlan.modeNames.contains(workload) { return .mode(workload, distribution: keyDistribution) }
        do {
            return .ycsb(try Workload(name: workload), distribution: keyDistribution)
        } catch {
            throw ValidationError("--workload: \(error)")
        }
    }
}
