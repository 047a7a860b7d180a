public import KVCore
import Synchronization

/// Removing tombstones for good: the last step of a delete, once every replica holds it. Expired
/// values (writes with a time to live) are tombstones at their own version and go the same way
/// (`TombstonePolicy.isPurgeable`), with no tombstone ever written for them.
///
/// Purging is only safe when no replica can still hold an older value of the key and no older write
/// can still arrive (a hint, a slow client): the caller decides that (anti-entropy confirmation and a
/// grace period longer than the hint window); the store only removes what it is told to, atomically
/// with its Merkle segment, and never a record that changed since it was listed.
public protocol TombstonePurging: AnyObject, Sendable {
    /// Deletes each tombstone in `range` whose version is below `cutoff`, and each value that expired
    /// before it, together with its Merkle entry (so the segments stay equal to a rebuild). A key
    /// written again since (a value, or a newer tombstone) is kept. Returns the number purged.
    func purgeTombstones(in range: TokenRangeSpan, before cutoff: Version) throws(StorageError) -> Int
}

extension RocksDBStore: TombstonePurging {
    public func purgeTombstones(in range: TokenRangeSpan, before cutoff: Version) throws(StorageError) -> Int {
        var candidates: [MerkleEntry] = []
        try withOpenHandles { () throws(StorageError) in
            try scanRecords(in: range) { key, version, tombstone, expiresAtMillis in
                if TombstonePolicy.isPurgeable(
                    version: version, tombstone: tombstone, expiresAtMillis: expiresAtMillis, below: cutoff)
                {
                    candidates.append(MerkleEntry(key: Array(key), version: version, tombstone: tombstone))
                }
            }
        }
        var purged = 0
        for entry in candidates {
            let dataKey = RecordCodec.dataKey(entry.key)
            let segment = MerkleSegments.segment(of: entry.token)
            try withOpenHandles { () throws(StorageError) in
                try stripes.withLock(forSegment: segment) { () throws(StorageError) in
                    let current = try currentHeader(entry.key, entry.token, dataKey, blocking: true) ?? nil
                    // Written again since the listing: not this record any more.
                    guard let current, current.version == entry.version, current.tombstone == entry.tombstone
                    else { return }
                    let delta = MerkleSegments.delta(old: entry, new: nil)
                    try writeBatch { batch in
                        Self.delete(batch, dataFamily, dataKey)
                        reindex(batch, dataKey: dataKey, old: entry.version, new: nil)
                        writeSegment(segment, xoring: delta, in: batch)
                    }
                    headers.remember(nil, keyspace: keyspaceID, key: entry.key, token: entry.token)
                    merkle.withLock { $0.xor(delta, intoSegment: segment) }
                    purged += 1
                }
            }
        }
        return purged
    }
}

extension InMemoryStore: TombstonePurging {
    public func purgeTombstones(in range: TokenRangeSpan, before cutoff: Version) throws(StorageError) -> Int {
        try state.withLock { (state) throws(StorageError) -> Int in
            guard !state.closed else { throw .closed }
            let purged = state.records.filter { key, record in
                TombstonePolicy.isPurgeable(
                    version: record.version, tombstone: record.tombstone, expiresAtMillis: record.expiresAtMillis,
                    below: cutoff) && range.contains(Token(key: key))
            }
            // Durable, as `RocksDBStore`'s synced batch is.
            for key in purged.keys {
                state.set(key, nil, durably: true)
            }
            return purged.count
        }
    }
}
