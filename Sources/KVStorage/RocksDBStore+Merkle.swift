import CRocksDB
public import KVCore
import Synchronization

/// The Merkle segments of a RocksDB store, in the `meta` column family (layout: `MerkleCodec`).
///
/// `apply` writes a record and its segment's new hash in one write batch, under the segment's lock
/// stripe, then updates the in-memory copy (`merkle`); so the copy, the stored segments and `data`
/// agree after every write and after any crash. The copy is read from `meta` at open, one scan of at
/// most 2^20 small keys; a folder whose segments are missing (new, or from before them) or damaged is
/// rebuilt from a full scan of `data` instead, and `merkleRebuildAtOpen` reports it.
extension RocksDBStore: MerkleStore {
    /// The rebuild `init` had to do, if any: nil when the stored segments were loaded as they were.
    public var merkleRebuildAtOpen: MerkleRebuild? {
        merkleOpenRebuild.withLock { $0 }
    }

    public func merkleDigest(of range: TokenRangeSpan) throws(StorageError) -> UInt64 {
        let split = MerkleRangeSplit(range)
        return try withOpenHandles { () throws(StorageError) -> UInt64 in
            var result = merkle.withLock {
                $0.xor(segmentsFrom: split.wholeSegmentsStart, count: split.wholeSegmentCount)
            }
            for piece in split.partialPieces {
                try scanRecords(in: piece) { key, version, tombstone, _ in
                    result ^= MerkleEntry.hash(key: key, version: version, tombstone: tombstone)
                }
            }
            return result
        }
    }

    public func merkleListing(of range: TokenRangeSpan) throws(StorageError) -> [MerkleEntry] {
        try withOpenHandles { () throws(StorageError) -> [MerkleEntry] in
            var entries: [MerkleEntry] = []
            try scanRecords(in: range) { key, version, tombstone, _ in
                entries.append(MerkleEntry(key: Array(key), version: version, tombstone: tombstone))
            }
            return entries
        }
    }

    public func merkleSegments() throws(StorageError) -> MerkleSegments {
        try withOpenHandles { () throws(StorageError) -> MerkleSegments in merkle.withLock { $0 } }
    }

    /// Holds every lock stripe meanwhile, so no write runs between the scan and the new segments.
    @discardableResult
    public func rebuildMerkleSegments() throws(StorageError) -> MerkleRebuild {
        try withOpenHandles { () throws(StorageError) -> MerkleRebuild in
            try stripes.withAllLocks { () throws(StorageError) -> MerkleRebuild in
                try rebuildMerkleSegmentsLocked(reason: "asked for")
            }
        }
    }

    /// Loads the stored segments, or rebuilds them if they are missing or damaged: called once, by `init`.
    func loadMerkleSegments() throws(StorageError) {
        let state = try withOpenHandles { () throws(StorageError) -> [UInt8]? in
            try read(metaFamily, metaPrefix + MerkleCodec.stateKey) { (bytes) throws(StorageError) -> [UInt8] in
                Array(bytes)
            }
        }
        var reason: String?
        var hashes: [Int: UInt64] = [:]
        if state == nil {
            reason = "no Merkle segments stored: a new folder, or one written before them"
        } else if state != MerkleCodec.stateValid {
            reason = "Merkle segments marked invalid"
        } else {
            var damaged = false
            try withOpenHandles { () throws(StorageError) in
                try scan(metaFamily, prefix: metaPrefix + MerkleCodec.segmentPrefix) {
                    (key, value) throws(StorageError) -> Bool in
                    let segmentKey = UnsafeRawBufferPointer(rebasing: key[metaPrefix.count...])
                    guard let (segment, hash) = MerkleCodec.decode(key: segmentKey, value: value) else {
                        damaged = true
                        return false
                    }
                    hashes[segment] = hash
                    return true
                }
            }
            if damaged { reason = "a stored Merkle segment does not decode" }
        }
        if let reason {
            let rebuild = try withOpenHandles { () throws(StorageError) -> MerkleRebuild in
                try rebuildMerkleSegmentsLocked(reason: reason)
            }
            merkleOpenRebuild.withLock { $0 = rebuild }
        } else {
            let segments = MerkleSegments(sparseHashes: hashes)
            merkle.withLock { $0 = segments }
        }
    }

    /// Recomputes the segments from `data` and replaces the stored ones in one batch. The caller makes
    /// sure no write runs meanwhile (all stripes held, or `init`).
    private func rebuildMerkleSegmentsLocked(reason: String) throws(StorageError) -> MerkleRebuild {
        let clock = ContinuousClock()
        let started = clock.now
        var hashes: [Int: UInt64] = [:]
        var records = 0
        try scan(dataFamily, prefix: []) { (key, value) throws(StorageError) -> Bool in
            guard key.count >= 8 else {
                throw .corruption("data key of \(key.count) bytes has no token")
            }
            let token = key.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let header = try RecordCodec.decodeHeader(value)
            hashes[MerkleSegments.segment(of: Token(token)), default: 0] ^= MerkleEntry.hash(
                key: UnsafeRawBufferPointer(rebasing: key[8...]), version: header.version,
                tombstone: header.tombstone)
            records += 1
            return true
        }
        hashes = hashes.filter { $0.value != 0 }
        try writeBatch { batch in
            let start = metaPrefix + MerkleCodec.segmentPrefix
            let end = Self.successor(of: start)!
            start.withUnsafeBytes { start in
                end.withUnsafeBytes { end in
                    rocksdb_writebatch_delete_range_cf(
                        batch, metaFamily, start.cChars, start.count, end.cChars, end.count)
                }
            }
            for (segment, hash) in hashes {
                Self.put(batch, metaFamily, metaPrefix + MerkleCodec.segmentKey(segment), MerkleCodec.encodeHash(hash))
            }
            Self.put(batch, metaFamily, metaPrefix + MerkleCodec.stateKey, MerkleCodec.stateValid)
        }
        let segments = MerkleSegments(sparseHashes: hashes)
        merkle.withLock { $0 = segments }
        return MerkleRebuild(reason: reason, records: records, segments: hashes.count, duration: clock.now - started)
    }

    /// Hands the key bytes, version, tombstone flag and expiry of every record in `range` to `body`, by
    /// token then key: one ordered scan of `data`, two when the range wraps past zero.
    func scanRecords(
        in range: TokenRangeSpan,
        _ body: (UnsafeRawBufferPointer, Version, Bool, UInt64) -> Void
    ) throws(StorageError) {
        for interval in range.tokenIntervals {
            let until = interval.upperBound == .max ? nil : MerkleCodec.encodeHash(interval.upperBound + 1)
            try scan(dataFamily, prefix: [], from: MerkleCodec.encodeHash(interval.lowerBound), until: until) {
                (key, value) throws(StorageError) -> Bool in
                guard key.count >= 8 else {
                    throw .corruption("data key of \(key.count) bytes has no token")
                }
                let header = try RecordCodec.decodeHeader(value)
                body(
                    UnsafeRawBufferPointer(rebasing: key[8...]), header.version, header.tombstone,
                    header.expiresAtMillis)
                return true
            }
        }
    }

    /// Writes `value` under a `meta` key, or deletes it when nil, bypassing every codec and the
    /// in-memory copy: for tests that damage the stored segments.
    package func writeRawMetaForTesting(key: [UInt8], value: [UInt8]?) throws(StorageError) {
        try withOpenHandles { () throws(StorageError) in
            if let value {
                try write(metaFamily, key, value)
            } else {
                try delete(metaFamily, key)
            }
        }
    }

    /// Writes a record to `data` alone, as a store from before Merkle segments did: for tests of the
    /// rebuild at open.
    package func writeRawRecordForTesting(key: [UInt8], record: StoredRecord) throws(StorageError) {
        try withOpenHandles { () throws(StorageError) in
            try write(dataFamily, RecordCodec.dataKey(key), RecordCodec.encode(record))
        }
    }
}

extension RocksDBStore {
    /// Runs `body` holding the stripe `key`'s writes take, as a writer in the middle of its batch
    /// would: for tests of `applyWithoutBlocking`, which must decline instead of waiting for it.
    package func withStripeHeldForTesting<Result: Sendable>(key: [UInt8], _ body: () throws -> Result) rethrows
        -> Result
    {
        try stripes.withLock(forSegment: MerkleSegments.segment(of: Token(key: key))) { () -> Result in try body() }
    }
}
