public import KVCore
import Synchronization

/// Removing tombstones for good: the last step of a delete, once every replica holds it.
///
/// Purging is only safe when no replica can still hold an older value of the key and no older write
/// can still arrive (a hint, a slow client): the caller decides that (anti-entropy confirmation and a
/// grace period longer than the hint window); the store only removes what it is told to, atomically
/// with its Merkle segment, and never a record that changed since it was listed.
public protocol TombstonePurging: AnyObject, Sendable {
    /// Deletes each tombstone in `range` whose version is below `cutoff`, together with its Merkle
    /// entry (so the segments stay equal to a rebuild). A key written again since (a value, or a newer
    /// tombstone) is kept. Returns the number of tombstones purged.
    func purgeTombstones(in range: TokenRangeSpan, before cutoff: Version) throws(StorageError) -> Int
}

extension RocksDBStore: TombstonePurging {
    public func purgeTombstones(in range: TokenRangeSpan, before cutoff: Version) throws(StorageError) -> Int {
        let candidates = try merkleListing(of: range).filter { $0.tombstone && $0.version < cutoff }
        var purged = 0
        for entry in candidates {
            let dataKey = RecordCodec.dataKey(entry.key)
            let segment = MerkleSegments.segment(of: entry.token)
            try withOpenHandles { () throws(StorageError) in
                try stripes.withLock(forSegment: segment) { () throws(StorageError) in
                    let current = try read(dataFamily, dataKey) {
                        (bytes) throws(StorageError) -> (version: Version, tombstone: Bool) in
                        try RecordCodec.decodeHeader(bytes)
                    }
                    // Written again since the listing: not this tombstone any more.
                    guard let current, current.tombstone, current.version == entry.version else { return }
                    let delta = MerkleSegments.delta(old: entry, new: nil)
                    try writeBatch { batch in
                        Self.delete(batch, dataFamily, dataKey)
                        reindex(batch, dataKey: dataKey, old: entry.version, new: nil)
                        writeSegment(segment, xoring: delta, in: batch)
                    }
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
                record.tombstone && record.version < cutoff && range.contains(Token(key: key))
            }
            // Durable, as `RocksDBStore`'s synced batch is.
            for key in purged.keys {
                state.set(key, nil, durably: true)
            }
            return purged.count
        }
    }
}
