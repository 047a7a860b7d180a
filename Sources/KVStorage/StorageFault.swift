import Foundation
import Synchronization

/// The first failure of a store's own writes (its write-ahead log, its files), kept until the node
/// restarts: from then on every write is refused with it, before RocksDB is called.
///
/// A disk that fails (an I/O error, a file system remounted read-only) fails one write or one fsync,
/// and the RocksDB writer that made it keeps the error: the next use of that writer makes Debian's
/// librocksdb (built with its assertions on) abort the process, as the next log append after a full
/// disk did (`DiskRoom`). The writer that aborted a failing node every time was RocksDB's own info
/// `LOG`, which is why `RocksDBEngine` has it write only its header; this keeps the store's own
/// writes and fsyncs away from a writer in error. PostgreSQL and etcd stop at a failed fsync for
/// another reason that holds here too: after one, the kernel may have dropped the unwritten pages,
/// and a later fsync that succeeds proves nothing about them. So the node writes nothing more; it keeps serving reads, its
/// replicas and hints take its writes, and a restart replays its log from the disk
/// (docs/operations.md, "A failed disk").
///
/// Only RocksDB's `IO error` and `Corruption` answers trip it; a write refused before RocksDB
/// (`DiskRoom`, a record too large) or one that would have stalled does not.
public final class StorageFault: Sendable {
    /// The directory the store writes to, for the messages.
    let path: String
    private let tripped = Atomic<Bool>(false)
    private let first = Mutex<StorageFailure?>(nil)

    init(path: String) {
        self.path = path
    }

    /// The failure that stopped the store's writes; nil while none did.
    public var failure: StorageFailure? {
        guard tripped.load(ordering: .acquiring) else { return nil }
        return first.withLock { $0 }
    }

    /// Throws the refusal of every write once the store's writes failed.
    func check() throws(StorageError) {
        guard tripped.load(ordering: .acquiring), let failure else { return }
        throw failure.refusal
    }

    /// Keeps `error`, a write's or an fsync's answer from RocksDB, when it is the first failure of the
    /// disk; hands `error` back for the caller to throw.
    @discardableResult
    func record(_ error: StorageError) -> StorageError {
        guard Self.stopsWrites(error) else { return error }
        first.withLock { first in
            if first == nil {
                first = StorageFailure(error: error, atMillis: UInt64(max(0, Date().timeIntervalSince1970 * 1000)))
            }
        }
        tripped.store(true, ordering: .releasing)
        return error
    }

    /// Whether RocksDB's answer `error` says the disk or the files failed.
    static func stopsWrites(_ error: StorageError) -> Bool {
        error.code == .corruption || error.reason.hasPrefix("IO error")
    }
}

/// The failure of a store's writes that `StorageFault` kept.
public struct StorageFailure: Sendable, Hashable {
    /// RocksDB's answer to the write or fsync that failed.
    public var error: StorageError
    /// When, in milliseconds since the Unix epoch.
    public var atMillis: UInt64

    /// The error every later write is refused with.
    public var refusal: StorageError {
        let at = Date(timeIntervalSince1970: Double(atMillis) / 1000).formatted(.iso8601)
        return .ioError(
            "the node's storage failed at \(at) (\(error.reason)): it refuses writes until it is restarted "
                + "(docs/operations.md, 'A failed disk')",
            path: error.path)
    }
}
