import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The room a node keeps free on its data folder's file system: records and hints are refused with
/// `diskFull` while fewer than `reserveBytes` are free, before RocksDB itself runs out.
///
/// RocksDB out of room is worse than a refusal: a flush that fails leaves the store refusing every
/// write until it resumes, and a write-ahead log append that fails makes Debian's librocksdb (built
/// with its assertions on) abort the process on the next append. The reserve keeps room for what
/// RocksDB writes on its own: a new log file (preallocated), memtable flushes, compactions. Deletes,
/// metadata and range drops are not refused: they are small, or free room.
///
/// The free bytes are read with `statvfs` at most every `readingLifetime`, so a write costs a lock
/// and a clock read; a writer would have to fill the reserve within that time to get past it.
public final class DiskRoom: Sendable {
    /// The default reserve: twice the write-ahead log's bound (`RocksDBStore.walBytesMaxDefault`).
    public static let reserveBytesDefault: UInt64 = 512 << 20
    /// How long a reading of the free bytes stands.
    static let readingLifetime: Duration = .milliseconds(100)

    let path: String
    /// 0: nothing is refused.
    let reserveBytes: UInt64
    private let reading = Mutex<(free: UInt64?, at: ContinuousClock.Instant)?>(nil)

    init(path: String, reserveBytes: UInt64) {
        self.path = path
        self.reserveBytes = reserveBytes
    }

    /// The bytes free for an unprivileged writer on the file system of `path` (`statvfs`'s
    /// `f_bavail`); nil when it cannot be read.
    public static func bytesFree(_ path: String) -> UInt64? {
        var status = statvfs()
        guard statvfs(path, &status) == 0 else { return nil }
        return UInt64(status.f_bavail).multipliedReportingOverflow(by: UInt64(status.f_frsize)).partialValue
    }

    /// Throws `diskFull` while fewer than `reserveBytes` are free (nothing when the free bytes cannot
    /// be read: the write then meets RocksDB's own answer).
    func check() throws(StorageError) {
        guard reserveBytes > 0 else { return }
        let now = ContinuousClock.now
        let free = reading.withLock { reading -> UInt64? in
            if let reading, now - reading.at < Self.readingLifetime { return reading.free }
            let free = Self.bytesFree(path)
            reading = (free, now)
            return free
        }
        guard let free, free < reserveBytes else { return }
        throw .diskFull(
            "\(free) bytes free, below the node's reserve of \(reserveBytes) (--disk-reserve-bytes): "
                + "writes of records and hints are refused until there is room",
            path: path)
    }
}
