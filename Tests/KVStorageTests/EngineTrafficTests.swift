import Foundation
import KVCore
import KVStorage
import Testing

/// `EngineTraffic`: RocksDB's byte tickers, read from its statistics text.
@Suite struct EngineTrafficTests {
    @Test func tickersAreReadFromTheStatisticsText() throws {
        let text = """
            rocksdb.block.cache.miss COUNT : 12
            rocksdb.block.cache.hit COUNT : 34
            rocksdb.bloom.filter.useful COUNT : 56
            rocksdb.bytes.written COUNT : 4096
            rocksdb.bytes.read COUNT : 100
            rocksdb.db.iter.bytes.read COUNT : 23
            rocksdb.wal.bytes COUNT : 5000
            rocksdb.flush.write.bytes COUNT : 700
            rocksdb.compact.read.bytes COUNT : 80
            rocksdb.compact.write.bytes COUNT : 90
            rocksdb.db.get.micros P50 : 1.0 P95 : 2.0 P99 : 3.0 P100 : 4.0 COUNT : 5 SUM : 6
            """
        let traffic = try #require(EngineTraffic(statistics: text))
        #expect(traffic.writtenBytes == 4096)
        #expect(traffic.readBytes == 123)
        #expect(traffic.walWrittenBytes == 5000)
        #expect(traffic.flushWrittenBytes == 700)
        #expect(traffic.compactionReadBytes == 80 && traffic.compactionWrittenBytes == 90)
        #expect(traffic.blockCacheHits == 34 && traffic.blockCacheMisses == 12 && traffic.bloomFilterSkips == 56)
        #expect(EngineTraffic(statistics: "rocksdb.bytes.written COUNT : lots\nnothing") == nil)
    }

    /// A real store's figures move with what it writes, reads and flushes.
    @Test func aStoreCountsItsWritesReadsAndFlushes() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path)
            defer { store.close() }
            let before = try #require(store.engineFigures()?.traffic)
            let value = String(repeating: "v", count: 1000)
            for index in 0..<100 {
                _ = try store.apply(key: key("key-\(index)"), record: record(UInt64(index + 1), value))
            }
            for index in 0..<100 {
                #expect(try store.get(key: key("key-\(index)")) != nil)
            }
            try store.flush()
            let after = try #require(store.engineFigures()?.traffic)
            #expect(after.writtenBytes >= before.writtenBytes + 100 * 1000, "\(after)")
            #expect(after.walWrittenBytes >= before.walWrittenBytes + 100 * 1000, "\(after)")
            #expect(after.readBytes >= before.readBytes + 100 * 1000, "\(after)")
            #expect(after.flushWrittenBytes > before.flushWrittenBytes, "\(after)")
        }
    }

    /// RocksDB's own log has its header only, not a line for each fsync, and rolls at 16 MB: Debian's
    /// librocksdb defaults to DEBUG, which logged every `FlushWAL` the WAL syncer asks for, hundreds
    /// a second under `sync` writes, into a file that never rolled while the node ran; and any line
    /// after one that a failing disk refused aborts it (`StorageFault`).
    @Test func theEngineLogHasNoLineForEachFsyncAndRolls() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, durability: .sync, walSync: .caller)
            for index in 0..<300 {
                _ = try store.apply(key: key("key-\(index)"), record: record(UInt64(index + 1), "v"))
                store.whenDurable { _ in }
            }
            #expect(store.walSyncCountForTesting >= 300)
            store.close()  // writes out what the log buffers
            let log = try String(contentsOfFile: path + "/LOG", encoding: .utf8)
            let fsyncLines = log.split(separator: "\n").filter { $0.contains("FlushWAL") }.count
            #expect(fsyncLines < 10, "\(fsyncLines) lines about FlushWAL for 300 fsyncs")
            let options = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasPrefix("OPTIONS-") }
            let text = try String(contentsOfFile: path + "/" + (try #require(options.first)), encoding: .utf8)
            #expect(text.contains("max_log_file_size=\(16 << 20)"), "\(text.prefix(2_000))")
            #expect(text.contains("info_log_level=HEADER_LEVEL"), "\(text.prefix(2_000))")
        }
    }

    /// The options every family is opened and created with, as RocksDB writes them in the folder's
    /// newest `OPTIONS-*` file: tables with a whole-key Bloom filter in every family (the block cache
    /// is checked by the next test); a Bloom filter in the memtables of the families read by key (the
    /// keyspaces' `data`, `hints`, `meta` and the unused `default`), not of the index families only
    /// scans read (RocksDB allocates one with every memtable), also in a keyspace created later and
    /// after a reopen.
    @Test func everyFamilyHasTheTableFiltersAndOnlyFamiliesReadByKeyAMemtableFilter() throws {
        try withTemporaryDirectory { path throws in
            var store = try RocksDBStore(directory: path, blockCacheBytes: 5 << 20)
            _ = try store.keyspace(7)
            store.close()
            store = try RocksDBStore(directory: path, blockCacheBytes: 5 << 20)
            store.close()
            let files = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasPrefix("OPTIONS-") }
            let newest = try #require(files.max { Int($0.dropFirst(8)) ?? 0 < Int($1.dropFirst(8)) ?? 0 })
            let text = try String(contentsOfFile: path + "/" + newest, encoding: .utf8)
            // Each section's `key=value` lines, by section header.
            var sections: [String: [String: String]] = [:]
            var section = ""
            for line in text.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                if line.hasPrefix("[") {
                    section = line
                } else if let equals = line.firstIndex(of: "=") {
                    let value = String(line[line.index(after: equals)...])
                    sections[section, default: [:]][String(line[..<equals])] = value
                }
            }
            let families = ["default", "data", "hints", "meta", "versions", "merkle", "data.7", "versions.7"]
            for family in families {
                let options = try #require(sections["[CFOptions \"\(family)\"]"], "\(family) in \(newest)")
                let table = try #require(sections["[TableOptions/BlockBasedTable \"\(family)\"]"], "\(family)")
                #expect(table["filter_policy"]?.contains("bloomfilter") == true, "\(family): \(table)")
                let ratio = Double(options["memtable_prefix_bloom_size_ratio"] ?? "") ?? -1
                let readByKey = !family.hasPrefix("versions") && family != "merkle"
                #expect(ratio == (readByKey ? 0.01 : 0), "\(family): memtable filter ratio \(ratio)")
                #expect(options["memtable_whole_key_filtering"] == (readByKey ? "true" : "false"), "\(family)")
            }
        }
    }

    /// Reads past the memtables: the tables carry Bloom filters, so a read of a key a table lacks skips
    /// it, and their blocks stay in a block cache of the size asked for, so a second read of a flushed
    /// key is served from memory (also by `getFromMemory`, the event loop's read, which never touches a
    /// file).
    @Test func flushedKeysAreReadThroughBloomFiltersAndTheBlockCache() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path, blockCacheBytes: 3 << 20)
            defer { store.close() }
            for index in 0..<500 {
                _ = try store.apply(key: key("key-\(index)"), record: record(UInt64(index + 1), "value-\(index)"))
            }
            try store.flush()
            let figures = try #require(store.engineFigures())
            #expect(figures.blockCacheCapacityBytes == 3 << 20, "\(figures)")
            let before = try #require(figures.traffic)
            for index in 0..<100 {
                #expect(try store.get(key: key("absent-\(index)")) == nil)
            }
            let skipped = try #require(store.engineFigures()?.traffic)
            #expect(skipped.bloomFilterSkips >= before.bloomFilterSkips + 90, "\(skipped)")
            #expect(try store.get(key: key("key-7"))?.value == Array("value-7".utf8))
            let warm = try #require(store.engineFigures())
            #expect(warm.blockCacheBytes > 0, "\(warm)")
            #expect(try store.getFromMemory(key: key("key-7"))??.value == Array("value-7".utf8))
            let after = try #require(store.engineFigures()?.traffic)
            #expect(after.blockCacheHits > warm.traffic?.blockCacheHits ?? .max, "\(after)")
        }
    }
}
