import Foundation
import KVTLS

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension BackupDestination {
    /// Rebuilds `node`'s checkpoint of backup `backup` in `folder` (created; it must not exist) from
    /// `files/<sha256>` under the names its manifest lists, checking each file's size and SHA-256.
    ///
    /// Table files (`*.sst`, nearly all the bytes, never written again by RocksDB) are hard links
    /// when `folder` is on the destination's file system; the other, small files are copies, so that
    /// nothing opening the folder can change a backed-up file.
    ///
    /// - Throws: naming the backup, node and file, when a file is missing or differs from its manifest.
    public func assembleCheckpoint(
        _ node: BackupManifest.NodeRecord, of backup: String, into folder: String
    ) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for file in node.files {
            let what = "backup \(backup), node \(node.node): \(file.name)"
            guard BackupDestination.isSHA256(file.sha256) else {
                throw BackupError("\(what): the manifest's checksum is not a SHA-256")
            }
            guard !file.name.isEmpty, !file.name.contains("/"), file.name != ".", file.name != ".." else {
                throw BackupError("\(what): the manifest names a file that is no plain file name")
            }
            let source = filePath(sha256: file.sha256)
            guard FileManager.default.fileExists(atPath: source) else {
                throw BackupError("\(what) (\(source)) is missing")
            }
            let target = "\(folder)/\(file.name)"
            if !(file.isTableFile && link(source, target) == 0) {
                do {
                    try FileManager.default.copyItem(atPath: source, toPath: target)
                } catch {
                    throw BackupError("\(what): cannot copy \(source) to \(target): \(error)")
                }
            }
            let hashed: (digest: [UInt8], bytes: UInt64)
            do {
                hashed = try SHA256Digest.hash(file: target)
            } catch {
                throw BackupError("\(what) (\(source)) is unreadable: \(error.reason)")
            }
            guard hashed.bytes == file.bytes, hashed.digest.hexString == file.sha256 else {
                throw BackupError(
                    "\(what) (\(source)) does not match its manifest: \(hashed.bytes) bytes with SHA-256 \(hashed.digest.hexString), listed with \(file.bytes) bytes and \(file.sha256)"
                )
            }
        }
    }
}
