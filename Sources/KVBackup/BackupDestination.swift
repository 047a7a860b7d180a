import Foundation
import KVTLS

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A backup destination folder:
///
/// ```
/// DIR/files/<sha256>               every file of every backup, once, named by its content
/// DIR/files/<sha256>.partial       a file being copied (a backup interrupted resumes from its end)
/// DIR/backups/<id>/manifest.json   one per finished backup (BackupManifest), written last
/// DIR/.lock                        held (flock) by a running backup or prune
/// ```
///
/// Content addressing makes backups incremental and deduplicated: a file already in `files/` (by
/// checksum, so by name and content) is never copied again, whichever node or backup it came from.
public struct BackupDestination: Sendable {
    public let root: String

    public init(root: String) {
        self.root = root
    }

    public var filesDirectory: String { "\(root)/files" }
    public var backupsDirectory: String { "\(root)/backups" }

    public func filePath(sha256: String) -> String { "\(filesDirectory)/\(sha256)" }
    public func partialPath(sha256: String) -> String { "\(filesDirectory)/\(sha256).partial" }
    public func manifestPath(backup id: String) -> String { "\(backupsDirectory)/\(id)/manifest.json" }

    /// Creates the folders when missing.
    public func prepare() throws {
        try FileManager.default.createDirectory(atPath: filesDirectory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: backupsDirectory, withIntermediateDirectories: true)
    }

    /// Whether `id` could name a backup (and a checkpoint): 1…64 ASCII letters, digits, `-`, `_`.
    public static func isValidBackupID(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        return !bytes.isEmpty && bytes.count <= 64
            && bytes.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
            }
    }

    /// Whether `text` is a lowercase hex SHA-256 (64 digits), the only names `files/` holds.
    public static func isSHA256(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.count == 64
            && bytes.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    // MARK: Manifests

    /// Writes a finished backup's manifest: to a temporary file first, then renamed into place, so
    /// that a manifest is either whole or absent.
    public func write(_ manifest: BackupManifest) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(manifest)
        let folder = "\(backupsDirectory)/\(manifest.id)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let temporary = "\(folder)/manifest.json.tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data) else {
            throw BackupError("cannot write \(temporary)")
        }
        try Self.syncToDisk(path: temporary)
        guard rename(temporary, manifestPath(backup: manifest.id)) == 0 else {
            throw BackupError("cannot rename \(temporary): \(String(cString: strerror(errno)))")
        }
        try? Self.syncToDisk(path: folder)
    }

    /// The manifest of backup `id`.
    public func manifest(_ id: String) throws -> BackupManifest {
        guard Self.isValidBackupID(id) else { throw BackupError("'\(id)' is not a backup id") }
        let path = manifestPath(backup: id)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw BackupError("no backup '\(id)' in \(root) (no \(path))")
        }
        let manifest: BackupManifest
        do {
            manifest = try JSONDecoder().decode(BackupManifest.self, from: data)
        } catch {
            throw BackupError("\(path) is not a backup manifest: \(error)")
        }
        guard manifest.format <= BackupManifest.currentFormat else {
            throw BackupError(
                "\(path) has format \(manifest.format); this kvctl reads up to \(BackupManifest.currentFormat)")
        }
        guard manifest.id == id else { throw BackupError("\(path) names backup '\(manifest.id)'") }
        return manifest
    }

    /// The ids of the finished backups (those with a manifest), oldest first.
    public func backupIDs() throws -> [String] {
        try manifests().map(\.id)
    }

    /// Throws when the destination was never backed up to (no `backups` folder: a wrong path, most
    /// likely), naming it.
    public func requireBackups() throws(BackupError) {
        guard FileManager.default.fileExists(atPath: backupsDirectory) else {
            throw BackupError("\(root) holds no backups (no \(backupsDirectory))")
        }
    }

    /// Every finished backup's manifest, oldest first (`BackupManifest.isOlder(than:)`).
    public func manifests() throws -> [BackupManifest] {
        guard FileManager.default.fileExists(atPath: backupsDirectory) else { return [] }
        return try FileManager.default.contentsOfDirectory(atPath: backupsDirectory)
            .filter { Self.isValidBackupID($0) && FileManager.default.fileExists(atPath: manifestPath(backup: $0)) }
            .map { try manifest($0) }
            .sorted { $0.isOlder(than: $1) }
    }

    // MARK: Lock

    /// Takes the destination's lock (`DIR/.lock`, flock) for a backup or a prune, so that a prune
    /// never deletes what a running backup just copied; the kernel drops it when the process ends,
    /// however it ends.
    ///
    /// - Throws: at once when another process holds it.
    public func lock() throws -> DestinationLock {
        try prepare()
        let path = "\(root)/.lock"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw BackupError("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw BackupError("another backup or prune is using \(root) (\(path) is locked)")
        }
        return DestinationLock(descriptor: descriptor)
    }

    static func syncToDisk(path: String) throws {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw BackupError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else {
            throw BackupError("cannot fsync \(path): \(String(cString: strerror(errno)))")
        }
    }
}

/// The destination's lock, held until `release()` or the process ends.
public final class DestinationLock: Sendable {
    private let descriptor: Int32

    init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
    }
}

/// A backup failure, in one line.
public struct BackupError: Error, CustomStringConvertible, Sendable {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}
