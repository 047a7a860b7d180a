import Foundation

/// `kvctl backup prune --keep N`: the oldest backups removed, then the files no remaining backup
/// lists and the `.partial` copies no backup resumed for a day.
extension BackupDestination {
    /// What a prune removes (or removed).
    public struct PrunePlan: Sendable, Hashable {
        /// Backups removed, oldest first.
        public var backups: [String] = []
        /// Files of `files/` (by SHA-256) that no kept backup lists.
        public var files: [String] = []
        /// `.partial` copies (by SHA-256) that no backup has touched for the partial age.
        public var partials: [String] = []
        /// Bytes of `files` and `partials` together.
        public var bytes: UInt64 = 0
    }

    /// How long an interrupted backup's `.partial` copies wait for a backup to resume them before a
    /// prune removes them (`kvctl backup prune --partial-age`).
    public static let partialAgeDefault: Duration = .seconds(24 * 3600)

    /// Which backups and files `prune(keep:)` removes: all but the newest `keep` backups and the
    /// backups those build on (an incremental backup is restored with its bases, down to a full
    /// one), every file in `files/` that no kept backup lists, and every `.partial` copy (what an
    /// interrupted backup resumes) not written for `partialAge`: a backup that was never run again
    /// must not leave its half-copied files on the destination for good.
    public func prunePlan(keep: Int, partialAge: Duration = partialAgeDefault) throws -> PrunePlan {
        guard keep >= 1 else { throw BackupError("--keep must be at least 1") }
        let manifests = try manifests()
        let byID = Dictionary(manifests.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let keptIDs = Set(manifests.suffix(keep).flatMap { $0.chain(in: byID).chain.map(\.id) })
        let kept = manifests.filter { keptIDs.contains($0.id) }
        var plan = PrunePlan()
        plan.backups = manifests.filter { !keptIDs.contains($0.id) }.map(\.id)
        let referenced = Set(kept.flatMap { $0.files.map(\.sha256) })
        let names = (try? FileManager.default.contentsOfDirectory(atPath: filesDirectory)) ?? []
        for name in names.sorted() where Self.isSHA256(name) && !referenced.contains(name) {
            plan.files.append(name)
            let size = (try? FileManager.default.attributesOfItem(atPath: filePath(sha256: name))[.size]) as? NSNumber
            plan.bytes &+= size?.uint64Value ?? 0
        }
        let suffix = ".partial"
        let ageSeconds = Double(partialAge.components.seconds)
        for name in names.sorted() where name.hasSuffix(suffix) && Self.isSHA256(String(name.dropLast(suffix.count))) {
            let sha256 = String(name.dropLast(suffix.count))
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: partialPath(sha256: sha256)),
                let modified = attributes[.modificationDate] as? Date,
                Date().timeIntervalSince(modified) >= ageSeconds
            else { continue }
            plan.partials.append(sha256)
            plan.bytes &+= (attributes[.size] as? NSNumber)?.uint64Value ?? 0
        }
        return plan
    }

    /// Removes all but the newest `keep` backups and the files only they listed, holding the
    /// destination's lock (so no backup runs meanwhile). The manifests go first: a prune cut short
    /// leaves unreferenced files, which the next prune removes, never a manifest naming a missing file.
    @discardableResult
    public func prune(keep: Int, partialAge: Duration = partialAgeDefault) throws -> PrunePlan {
        let lock = try lock()
        defer { withExtendedLifetime(lock) {} }
        let plan = try prunePlan(keep: keep, partialAge: partialAge)
        for id in plan.backups {
            try FileManager.default.removeItem(atPath: manifestPath(backup: id))
            try FileManager.default.removeItem(atPath: "\(backupsDirectory)/\(id)")
        }
        for sha256 in plan.files {
            try FileManager.default.removeItem(atPath: filePath(sha256: sha256))
        }
        for sha256 in plan.partials {
            try FileManager.default.removeItem(atPath: partialPath(sha256: sha256))
        }
        return plan
    }
}
