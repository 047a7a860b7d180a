import Foundation

/// `kvctl backup prune --keep N`: the oldest backups removed, then the files no remaining backup
/// lists.
extension BackupDestination {
    /// What a prune removes (or removed).
    public struct PrunePlan: Sendable, Hashable {
        /// Backups removed, oldest first.
        public var backups: [String] = []
        /// Files of `files/` (by SHA-256) that no kept backup lists.
        public var files: [String] = []
        public var bytes: UInt64 = 0
    }

    /// Which backups and files `prune(keep:)` removes: all but the newest `keep` backups, and every
    /// file in `files/` that none of those lists. `.partial` files (copies an interrupted backup
    /// resumes) are kept.
    public func prunePlan(keep: Int) throws -> PrunePlan {
        guard keep >= 1 else { throw BackupError("--keep must be at least 1") }
        let manifests = try manifests()
        let kept = manifests.suffix(keep)
        var plan = PrunePlan()
        plan.backups = manifests.dropLast(keep).map(\.id)
        let referenced = Set(kept.flatMap { $0.files.map(\.sha256) })
        let names = (try? FileManager.default.contentsOfDirectory(atPath: filesDirectory)) ?? []
        for name in names.sorted() where Self.isSHA256(name) && !referenced.contains(name) {
            plan.files.append(name)
            let size = (try? FileManager.default.attributesOfItem(atPath: filePath(sha256: name))[.size]) as? NSNumber
            plan.bytes &+= size?.uint64Value ?? 0
        }
        return plan
    }

    /// Removes all but the newest `keep` backups and the files only they listed, holding the
    /// destination's lock (so no backup runs meanwhile). The manifests go first: a prune cut short
    /// leaves unreferenced files, which the next prune removes, never a manifest naming a missing file.
    @discardableResult
    public func prune(keep: Int) throws -> PrunePlan {
        let lock = try lock()
        defer { withExtendedLifetime(lock) {} }
        let plan = try prunePlan(keep: keep)
        for id in plan.backups {
            try FileManager.default.removeItem(atPath: manifestPath(backup: id))
            try FileManager.default.removeItem(atPath: "\(backupsDirectory)/\(id)")
        }
        for sha256 in plan.files {
            try FileManager.default.removeItem(atPath: filePath(sha256: sha256))
        }
        return plan
    }
}
