/// Which backups a restore reads and the bound T it keeps writes up to.
///
/// The chosen backup (the latest in the destination by default) gives every key's state, read
/// together with the backups it builds on when it is incremental (`chain`); the earlier backups of
/// the same cluster, newest first, give the versions at or below T of the keys the chain holds only
/// newer (a key overwritten after T): point-in-time granularity for overwritten keys is the backup
/// schedule.
public struct RestorePlan: Sendable, Hashable {
    public var backup: BackupManifest
    /// `backup`, then the backup it builds on, and so on down to a full backup: read together, their
    /// checkpoints hold what a full backup taken at `backup`'s time would (each incremental one the
    /// records newer than its base's cut).
    public var chain: [BackupManifest]
    /// The backups of the same cluster taken before `backup`, newest first.
    public var earlier: [BackupManifest]
    /// T: the records with a version at or below it are kept.
    public var asOf: UInt64

    /// - Parameters:
    ///   - manifests: the destination's finished backups, in any order.
    ///   - id: the backup to restore; the latest when nil.
    ///   - asOf: T; the chosen backup's cut when nil.
    /// - Throws: when there is no backup, no backup `id`, or `asOf` is later than the chosen backup's
    ///   cut: a node's checkpoint may have been taken before a write at or below T reached it, and
    ///   no other checkpoint is sure to hold that write; when a backup of the chain is missing.
    public init(manifests: [BackupManifest], backup id: String?, asOf: AsOf?) throws {
        let sorted = manifests.sorted { $0.isOlder(than: $1) }
        let chosen: BackupManifest
        if let id {
            guard let found = sorted.first(where: { $0.id == id }) else {
                throw BackupError(
                    "no backup '\(id)' in the destination (backups: \(sorted.map(\.id).joined(separator: ", ")))")
            }
            chosen = found
        } else {
            guard let latest = sorted.last else { throw BackupError("the destination holds no finished backup") }
            chosen = latest
        }
        let bound = asOf?.hlc ?? chosen.cut
        if bound > chosen.cut {
            throw BackupError(
                "--as-of \(AsOf(hlc: bound)) is later than backup \(chosen.id)'s cut hlc:\(chosen.cut) (\(chosen.cutTime)): writes after the cut may be missing from some node's checkpoint; choose a later backup or an earlier time"
            )
        }
        backup = chosen
        let byID = Dictionary(sorted.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let (chain, brokenAt) = chosen.chain(in: byID)
        if let brokenAt {
            if chain.contains(where: { $0.id == brokenAt }) {
                throw BackupError("backup \(brokenAt) builds on itself through its bases: the manifests are damaged")
            }
            throw BackupError(
                "backup \(chain.last!.id) is incremental and builds on backup \(brokenAt), which the destination no longer holds; restore a full backup, or one whose bases are all there (kvctl backup list)"
            )
        }
        self.chain = chain
        let inChain = Set(chain.map(\.id))
        earlier = sorted.filter {
            $0.isOlder(than: chosen) && $0.clusterID == chosen.clusterID && !inChain.contains($0.id)
        }
        .reversed()
        self.asOf = bound
    }
}
