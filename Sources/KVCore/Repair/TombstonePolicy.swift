/// When a tombstone may be purged: the one rule `kvd`'s anti-entropy and the simulator's nodes apply.
///
/// A tombstone older than the grace period may go once its range was compared without error with
/// every co-replica: each of them then holds it, something newer, or nothing (it purged it already).
/// Nothing is purged while ranges move, since a node receiving a range is not among the co-replicas
/// compared, and a tombstone it has not received yet must not vanish from the others.
public struct TombstonePolicy: Sendable, Hashable {
    /// How old a tombstone must be before it may be purged; nil: never purged.
    public var grace: Duration?

    /// Test-only (a planted bug for the simulator's mutation check): purge on the timer alone, without
    /// the confirming comparison with every co-replica.
    package var purgesWithoutConfirmation = false

    public init(grace: Duration?) {
        self.grace = grace
    }

    /// Tombstones older than this version may be purged (and are not copied where their key is
    /// absent): the version of `grace` before `nowMillis`. Nil when tombstones are never purged,
    /// while `rangesMoving`, or when the clock is younger than the grace period.
    public func horizon(nowMillis: UInt64, rangesMoving: Bool) -> Version? {
        guard let graceMillis = grace?.wholeMillisecondsClamped, !rangesMoving, nowMillis > graceMillis else {
            return nil
        }
        return Version(hlc: (nowMillis - graceMillis) << 16, writer: 0)
    }

    /// Whether a record may be purged below `horizon`: a tombstone of an older version, or a value
    /// that expired before the horizon (so it has read as deleted for the whole grace period on every
    /// replica whose clock is within the skew bound; its version is older still). The one rule the
    /// stores apply.
    public static func isPurgeable(
        version: Version, tombstone: Bool, expiresAtMillis: UInt64, below horizon: Version
    ) -> Bool {
        if tombstone { return version < horizon }
        return expiresAtMillis != 0 && expiresAtMillis <= horizon.millis && version < horizon
    }

    /// Whether anti-entropy copies `record` to a replica only if that replica holds something for its
    /// key: a value that expired before `horizon` (`isPurgeable`). The comparison leaves out purgeable
    /// tombstones where the key is absent (`MerkleComparison.purgeHorizon`), but its entries carry no
    /// expiry, so such a value is checked against the replica's record instead. A replica that holds
    /// nothing may have purged it already: copying it back would have the replicas purging it in turn
    /// and copying it back to each other at every pass. A replica holding an older value still gets it,
    /// or that value would come back once the expired one is purged everywhere else.
    public static func copiesOnlyOverARecord(_ record: StoredRecord, below horizon: Version) -> Bool {
        !record.tombstone
            && isPurgeable(
                version: record.version, tombstone: false, expiresAtMillis: record.expiresAtMillis, below: horizon)
    }

    /// Whether a range's tombstones older than the horizon may be purged after a pass that compared it
    /// with every co-replica (`confirmed`), or failed to.
    public func mayPurge(confirmed: Bool) -> Bool {
        confirmed || purgesWithoutConfirmation
    }
}
