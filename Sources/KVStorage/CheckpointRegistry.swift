import Foundation
import KVCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One file of a checkpoint: its name in the checkpoint folder, its size and its SHA-256.
public struct CheckpointFile: Sendable, Hashable {
    public var name: String
    public var bytes: UInt64
    public var sha256: [UInt8]

    public init(name: String, bytes: UInt64, sha256: [UInt8]) {
        self.name = name
        self.bytes = bytes
        self.sha256 = sha256
    }
}

/// A checkpoint a store holds for a backup.
public struct Checkpoint: Sendable, Hashable {
    public var id: String
    /// The folder of the checkpoint (hard links to the store's table files, copies of the rest).
    public var path: String
    public var files: [CheckpointFile]
}

/// Why a checkpoint call failed: a bad id or file name, an unknown checkpoint, or I/O.
public struct CheckpointError: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String
    /// True when the caller asked for something the store does not hold or refuses (bad id, unknown
    /// checkpoint or file): not the store's failure.
    public var isInvalidRequest: Bool

    static func invalid(_ description: String) -> CheckpointError {
        CheckpointError(description: description, isInvalidRequest: true)
    }

    static func io(_ description: String) -> CheckpointError {
        CheckpointError(description: description, isInvalidRequest: false)
    }
}

/// The checkpoints a `RocksDBStore` holds for backups, under `<store>/checkpoints/<id>`: which exist,
/// their files and checksums, and when each was last used.
///
/// Only the files a checkpoint listed when it was made are ever read, by exact name, without
/// following symbolic links: a name from a peer never becomes a path outside the checkpoint. Table
/// files (`*.sst`) never change once written and their numbers are never reused, so their checksums
/// are computed once and remembered for later checkpoints (the second backup of an unchanged store
/// hashes only its few small other files).
public final class CheckpointRegistry: Sendable {
    /// The folder holding one folder per checkpoint.
    public let directory: String

    private struct Held {
        var checkpoint: Checkpoint
        var lastUsed: ContinuousClock.Instant
    }

    private struct State {
        var held: [String: Held] = [:]
        /// SHA-256 of table files by name, with their size.
        var tableDigests: [String: (bytes: UInt64, sha256: [UInt8])] = [:]
    }

    private let state = Mutex(State())
    /// Serializes making and removing checkpoints (RocksDB's checkpoint call and folder removal).
    private let changes = Mutex<Void>(())

    init(directory: String) {
        self.directory = directory
    }

    /// Whether `id` may name a checkpoint: 1…`Limits.backupIDBytesMax` ASCII letters, digits, `-`, `_`.
    public static func isValidID(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        return !bytes.isEmpty && bytes.count <= Limits.backupIDBytesMax
            && bytes.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
            }
    }

    /// The ids of the checkpoints held now.
    public var ids: [String] {
        state.withLock { $0.held.keys.sorted() }
    }

    /// Makes checkpoint `id` with `make(path)` (which must create the folder), lists its files and
    /// hashes them with `hash`; answers the existing one when `id` is held already.
    func create(
        id: String, make: (String) throws(StorageError) -> Void,
        hash: (String) throws -> [UInt8]
    ) throws(CheckpointError) -> Checkpoint {
        guard Self.isValidID(id) else { throw .invalid("a checkpoint id is 1...64 letters, digits, '-' or '_'") }
        return try changes.withLock { (_) throws(CheckpointError) -> Checkpoint in
            if let held = state.withLock({ state -> Checkpoint? in
                state.held[id]?.lastUsed = .now
                return state.held[id]?.checkpoint
            }) {
                return held
            }
            let path = "\(directory)/\(id)"
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                // A folder of that name no checkpoint holds is a leftover: RocksDB needs the path free.
                try? FileManager.default.removeItem(atPath: path)
                try make(path)
            } catch let error as StorageError {
                try? FileManager.default.removeItem(atPath: path)
                throw .io("cannot make checkpoint \(id): \(error)")
            } catch {
                try? FileManager.default.removeItem(atPath: path)
                throw .io("cannot make checkpoint \(id): \(error)")
            }
            do {
                let files = try list(path, hash: hash)
                let checkpoint = Checkpoint(id: id, path: path, files: files)
                state.withLock { state in
                    state.held[id] = Held(checkpoint: checkpoint, lastUsed: .now)
                    // Forget the digests of table files no checkpoint holds any more (compacted away).
                    let live = Set(state.held.values.flatMap { $0.checkpoint.files.map(\.name) })
                    state.tableDigests = state.tableDigests.filter { live.contains($0.key) }
                }
                return checkpoint
            } catch {
                try? FileManager.default.removeItem(atPath: path)
                throw .io("cannot list checkpoint \(id): \(error)")
            }
        }
    }

    private func list(_ path: String, hash: (String) throws -> [UInt8]) throws -> [CheckpointFile] {
        var files: [CheckpointFile] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: path).sorted() {
            let filePath = "\(path)/\(name)"
            var info = stat()
            guard lstat(filePath, &info) == 0 else { throw CheckpointError.io("\(filePath): \(errnoText())") }
            // A checkpoint holds regular files only; anything else is not part of a backup.
            guard (info.st_mode & S_IFMT) == S_IFREG else { continue }
            let bytes = UInt64(clamping: info.st_size)
            let cached: [UInt8]? =
                name.hasSuffix(".sst")
                ? state.withLock { state in
                    state.tableDigests[name].flatMap { $0.bytes == bytes ? $0.sha256 : nil }
                } : nil
            let sha256 = try cached ?? hash(filePath)
            if name.hasSuffix(".sst") {
                state.withLock { $0.tableDigests[name] = (bytes, sha256) }
            }
            files.append(CheckpointFile(name: name, bytes: bytes, sha256: sha256))
        }
        return files
    }

    /// Up to `length` (at most `Limits.backupChunkBytesMax`) bytes of file `name` of checkpoint `id`
    /// from `offset`: fewer only at the end of the file, none at or past it.
    ///
    /// - Throws: `CheckpointError` (invalid request) when the checkpoint is not held or does not list
    ///   a file of that name; (I/O) when the file cannot be read.
    public func read(id: String, name: String, offset: UInt64, length: Int) throws(CheckpointError) -> [UInt8] {
        let held = state.withLock { state -> Checkpoint? in
            state.held[id]?.lastUsed = .now
            return state.held[id]?.checkpoint
        }
        guard let held else { throw .invalid("no checkpoint '\(id)' on this node") }
        // Only a name the checkpoint listed: never a path, `..`, or anything else in the folder.
        guard let file = held.files.first(where: { $0.name == name }) else {
            throw .invalid("checkpoint '\(id)' has no file '\(name)'")
        }
        let path = "\(held.path)/\(file.name)"
        let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else { throw .io("\(path): \(errnoText())") }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw .io("\(path): \(errnoText())") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw .invalid("'\(name)' is not a regular file") }
        let size = UInt64(clamping: info.st_size)
        guard offset < size else { return [] }
        let count = Int(min(UInt64(max(0, min(length, Limits.backupChunkBytesMax))), size - offset))
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            // offset < size ≤ Int64.max, and done < count ≤ 1 MiB: no overflow.
            let position = off_t(offset) + off_t(done)
            let got = bytes.withUnsafeMutableBytes { buffer in
                pread(descriptor, buffer.baseAddress! + done, count - done, position)
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw .io("\(path): \(errnoText())")
            }
            if got == 0 { break }
            done += got
        }
        return done == count ? bytes : Array(bytes.prefix(done))
    }

    /// Removes checkpoint `id`; false when it was not held.
    @discardableResult
    public func release(id: String) -> Bool {
        changes.withLock { _ in
            let held = state.withLock { $0.held.removeValue(forKey: id) }
            guard let held else { return false }
            try? FileManager.default.removeItem(atPath: held.checkpoint.path)
            return true
        }
    }

    /// Removes the checkpoints not used (made or read) for `idle` or longer, and any folder under
    /// `directory` that is not a held checkpoint; returns the ids removed.
    @discardableResult
    public func removeIdle(longerThan idle: Duration, now: ContinuousClock.Instant = .now) -> [String] {
        changes.withLock { _ in
            let stale = state.withLock { state in
                state.held.filter { now - $0.value.lastUsed >= idle }.map(\.key)
            }
            var removed: [String] = []
            for id in stale {
                if let held = state.withLock({ $0.held.removeValue(forKey: id) }) {
                    try? FileManager.default.removeItem(atPath: held.checkpoint.path)
                    removed.append(id)
                }
            }
            let held = Set(state.withLock { Array($0.held.keys) })
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            where !held.contains(name) {
                try? FileManager.default.removeItem(atPath: "\(directory)/\(name)")
                removed.append(name)
            }
            return removed.sorted()
        }
    }

    /// Removes every checkpoint folder: a store just opened holds none (a checkpoint outlives only
    /// the process that made it, or a `kvctl backup` killed before releasing it).
    func removeAll() {
        changes.withLock { _ in
            state.withLock { $0.held.removeAll() }
            try? FileManager.default.removeItem(atPath: directory)
        }
    }
}

private func errnoText() -> String {
    String(cString: strerror(errno))
}
