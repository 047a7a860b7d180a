import CRocksDB
public import KVCore
import Synchronization

/// The Merkle segments of a RocksDB store, in the `merkle` column family (layout: `MerkleCodec`).
///
/// `apply` writes a record and its segment's new hash in one write batch, under the segment's lock
/// stripe, then updates the in-memory copy (`merkle`); so the copy, the stored segments and `data`
/// agree after every write and after any crash. The copy is read from `merkle` at open, one scan of at
/// most 2^20 small keys; a folder whose segments are missing (new, or from before them) or damaged is
/// rebuilt from a full scan of `data` instead, and `merkleRebuildAtOpen` reports it. Folders from
/// before `merkle` kept the segments in `meta`; the open moves them.
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

    /// Loads the stored segments, or rebuilds them if they are missing or damaged: called once, by
    /// `init`. Segments a folder kept in `meta`, before they had a family of their own, are moved to
    /// `merkle` as they are, without a rebuild.
    func loadMerkleSegments() throws(StorageError) {
        var stored = try storedSegments(in: merkleFamily)
        var inMeta = false
        if case .absent = stored {
            stored = try storedSegments(in: metaFamily)
            inMeta = true
        }
        let reason: String
        switch stored {
        case .loaded(let hashes):
            if inMeta { try withOpenHandles { () throws(StorageError) in try replaceStoredSegments(hashes) } }
            let segments = MerkleSegments(sparseHashes: hashes)
            merkle.withLock { $0 = segments }
            return
        case .absent: reason = "no Merkle segments stored: a new folder, or one written before them"
        case .invalid: reason = "Merkle segments marked invalid"
        case .damaged: reason = "a stored Merkle segment does not decode"
        }
        let rebuild = try withOpenHandles { () throws(StorageError) -> MerkleRebuild in
            try rebuildMerkleSegmentsLocked(reason: reason)
        }
        merkleOpenRebuild.withLock { $0 = rebuild }
    }

    /// What a family holds of this keyspace's segments.
    private enum StoredSegments {
        case absent, invalid, damaged
        case loaded([Int: UInt64])
    }

    private func storedSegments(in family: OpaquePointer) throws(StorageError) -> StoredSegments {
        try withOpenHandles { () throws(StorageError) -> StoredSegments in
            let state = try read(family, metaPrefix + MerkleCodec.stateKey) {
                (bytes) throws(StorageError) -> [UInt8] in Array(bytes)
            }
            guard let state else { return .absent }
            guard state == MerkleCodec.stateValid else { return .invalid }
            var hashes: [Int: UInt64] = [:]
            var damaged = false
            try scan(family, prefix: metaPrefix + MerkleCodec.segmentPrefix) {
                (key, value) throws(StorageError) -> Bool in
                let segmentKey = UnsafeRawBufferPointer(rebasing: key[metaPrefix.count...])
                guard let (segment, hash) = MerkleCodec.decode(key: segmentKey, value: value) else {
                    damaged = true
                    return false
                }
                hashes[segment] = hash
                return true
            }
            return damaged ? .damaged : .loaded(hashes)
        }
    }

    /// Recomputes the segments from `data` and replaces the stored ones. The caller makes sure no write
    /// runs meanwhile (all stripes held, or `init`).
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
        try replaceStoredSegments(hashes)
        let segments = MerkleSegments(sparseHashes: hashes)
        merkle.withLock { $0 = segments }
        return MerkleRebuild(reason: reason, records: records, segments: hashes.count, duration: clock.now - started)
    }

    /// Replaces this keyspace's stored segments with `hashes`, marked valid, in one batch, which also
    /// deletes any the folder kept in `meta`. The handles are held open.
    private func replaceStoredSegments(_ hashes: [Int: UInt64]) throws(StorageError) {
        try writeBatch { batch in
            for family in [merkleFamily, metaFamily] {
                Self.deleteRange(batch, family, prefix: metaPrefix + MerkleCodec.segmentPrefix)
            }
            Self.delete(batch, metaFamily, metaPrefix + MerkleCodec.stateKey)
            for (segment, hash) in hashes {
                Self.put(
                    batch, merkleFamily, metaPrefix + MerkleCodec.segmentKey(segment), MerkleCodec.encodeHash(hash))
            }
            Self.put(batch, merkleFamily, metaPrefix + MerkleCodec.stateKey, MerkleCodec.stateValid)
        }
    }

    /// Hands the key bytes, version, tombstone flag and expiry of every record in `range` to `body`, by
    /// token then key: one ordered scan of `data`, two when the range wraps past zero.
    func scanRecords(
        in range: TokenRangeSpan,
        _ body: (UnsafeRawBufferPointer, Version, Bool, UInt64) -> Void
    ) throws(StorageError) {
        for interval in range.tokenIntervals {
            let until = interval.upperBound == .max ? nil : MerkleCodec.encodeHash(interval.upperBound + 1)
            try scan(
                dataFamily, prefix: [], from: MerkleCodec.encodeHash(interval.lowerBound), until: until,
                copyingValuesUnder: stripes
            ) {
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

    /// Writes `value` under a key of `merkle` (of `meta`, where folders kept the segments before
    /// `merkle` existed, when `inMeta`), or deletes it when nil, bypassing every codec and the in-memory
    /// copy: for tests that damage the stored segments or make a folder of that older layout.
    package func writeRawMerkleForTesting(key: [UInt8], value: [UInt8]?, inMeta: Bool = false) throws(StorageError) {
        let family = inMeta ? metaFamily : merkleFamily
        try withOpenHandles { () throws(StorageError) in
            if let value {
                try write(family, metaPrefix + key, value)
            } else {
                try delete(family, metaPrefix + key)
            }
        }
    }

    /// This keyspace's keys and values in `merkle` (or `meta`) that start with `merkle.` (the segments
    /// and their state), bypassing every codec: for tests of the move out of `meta`.
    package func rawMerkleEntriesForTesting(inMeta: Bool = false) throws(StorageError) -> [([UInt8], [UInt8])] {
        try withOpenHandles { () throws(StorageError) -> [([UInt8], [UInt8])] in
            var entries: [([UInt8], [UInt8])] = []
            try scan(inMeta ? metaFamily : merkleFamily, prefix: metaPrefix + Array(MerkleCodec.reservedPrefix.utf8)) {
                (key, value) throws(StorageError) -> Bool in
                entries.append((Array(key[metaPrefix.count...]), Array(value)))
                return true
            }
            return entries
        }
    }

    /// Writes a record to `data` alone, as a store from before Merkle segments did: for tests of the
    /// rebuild at open.
    package func writeRawRecordForTesting(key: [UInt8], record: StoredRecord) throws(StorageError) {
        let token = Token(key: key)
        try withOpenHandles { () throws(StorageError) in
            try stripes.withLock(forSegment: MerkleSegments.segment(of: token)) { () throws(StorageError) in
                try write(dataFamily, RecordCodec.dataKey(key), RecordCodec.encode(record))
                headers.remember(RecordCodec.header(of: record), keyspace: keyspaceID, key: key, token: token)
            }
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
