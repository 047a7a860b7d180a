/// The bytes RocksDB moved since the store opened, from its statistics (tickers): what the node
/// wrote and read through it, and what its background work (log, flushes, compactions) wrote and
/// read on disk; and how its point reads were served (block cache, Bloom filters). Read by
/// `RocksDBStore.engineFigures()`.
public struct EngineTraffic: Sendable, Hashable {
    /// Keys and values written through puts and write batches (`rocksdb.bytes.written`, before
    /// compression).
    public var writtenBytes: UInt64 = 0
    /// Keys and values read by gets and iterators (`rocksdb.bytes.read` + `rocksdb.db.iter.bytes.read`).
    public var readBytes: UInt64 = 0
    /// Bytes appended to the write-ahead log (`rocksdb.wal.bytes`).
    public var walWrittenBytes: UInt64 = 0
    /// Bytes of table files written by memtable flushes (`rocksdb.flush.write.bytes`).
    public var flushWrittenBytes: UInt64 = 0
    /// Bytes compactions read and wrote (`rocksdb.compact.read.bytes`, `rocksdb.compact.write.bytes`).
    public var compactionReadBytes: UInt64 = 0
    public var compactionWrittenBytes: UInt64 = 0
    /// Table blocks found in the block cache and read from a file (`rocksdb.block.cache.hit`,
    /// `rocksdb.block.cache.miss`): counts, not bytes.
    public var blockCacheHits: UInt64 = 0
    public var blockCacheMisses: UInt64 = 0
    /// Table files a point read skipped because their Bloom filter said the key is not there
    /// (`rocksdb.bloom.filter.useful`).
    public var bloomFilterSkips: UInt64 = 0

    public init() {}

    /// Reads the tickers from the text `rocksdb_options_statistics_get_string` returns, whose ticker
    /// lines read `rocksdb.bytes.written COUNT : 1234` (histogram lines, and tickers not named here,
    /// are skipped); nil when none of these tickers is there.
    public init?(statistics text: String) {
        var found = false
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " COUNT : ", maxSplits: 1)
            guard parts.count == 2, let value = UInt64(parts[1]) else { continue }
            switch parts[0] {
            case "rocksdb.bytes.written": writtenBytes = value
            case "rocksdb.bytes.read", "rocksdb.db.iter.bytes.read": readBytes &+= value
            case "rocksdb.wal.bytes": walWrittenBytes = value
            case "rocksdb.flush.write.bytes": flushWrittenBytes = value
            case "rocksdb.compact.read.bytes": compactionReadBytes = value
            case "rocksdb.compact.write.bytes": compactionWrittenBytes = value
            case "rocksdb.block.cache.hit": blockCacheHits = value
            case "rocksdb.block.cache.miss": blockCacheMisses = value
            case "rocksdb.bloom.filter.useful": bloomFilterSkips = value
            default: continue
            }
            found = true
        }
        guard found else { return nil }
    }
}
