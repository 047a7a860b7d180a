import Foundation
import KVCore
import KVTLS

/// `kvctl backup verify`: every file of every backup (or of one) read back and checked against its
/// manifest.
extension BackupDestination {
    /// A file of a backup that is missing or differs from its manifest.
    public struct VerifyProblem: Sendable, Hashable, CustomStringConvertible {
        public var backup: String
        public var node: String
        /// The file's name in the node's checkpoint.
        public var file: String
        /// Where it should be: `files/<sha256>`.
        public var path: String
        public var reason: String

        public var description: String { "\(backup) \(node) \(file) (\(path)): \(reason)" }
    }

    /// What `verify` checked and found.
    public struct VerifyReport: Sendable {
        public var backups: [String] = []
        /// Distinct files read (a file shared by several backups or nodes is read once).
        public var filesChecked = 0
        public var bytesChecked: UInt64 = 0
        public var problems: [VerifyProblem] = []
        /// The keyspaces of each backup checked, by backup id (`default` first, then those its map
        /// names), each with the ids of its parts.
        public var keyspaces: [String: [RestoreKeyspace]] = [:]
        /// With `deep`: what each node's checkpoint held, read back whole (`readBack`).
        public var readBack: [ReadBack] = []

        public var ok: Bool { problems.isEmpty }
    }

    /// Reads every file of backup `id` (every backup when nil) and checks its size and SHA-256, and
    /// that the keyspaces its manifest names are ones a restore can use (`keyspaceProblems(of:)`).
    /// With `deep`, also rebuilds each node's checkpoint and reads it whole (`readBack`).
    ///
    /// - Throws: when there is no such backup, or a manifest cannot be read.
    public func verify(backup id: String? = nil, deep: Bool = false) throws -> VerifyReport {
        let manifests = try id.map { [try manifest($0)] } ?? manifests()
        var report = VerifyReport()
        // Each distinct content once: why it is bad, or nil when it is good.
        var verdicts: [String: String?] = [:]
        for manifest in manifests {
            report.backups.append(manifest.id)
            report.keyspaces[manifest.id] = RestoreKeyspace.all(in: manifest)
            for reason in Self.keyspaceProblems(of: manifest) {
                report.problems.append(
                    VerifyProblem(
                        backup: manifest.id, node: "-", file: "manifest.json",
                        path: "\(backupsDirectory)/\(manifest.id)/manifest.json", reason: reason))
            }
            for node in manifest.nodes {
                for file in node.files {
                    let path = filePath(sha256: file.sha256)
                    let verdict: String?
                    if let known = verdicts[file.sha256] {
                        verdict = known
                    } else {
                        verdict = check(file, at: path, report: &report)
                        verdicts[file.sha256] = verdict
                    }
                    if let verdict {
                        report.problems.append(
                            VerifyProblem(
                                backup: manifest.id, node: node.node, file: file.name, path: path, reason: verdict))
                    }
                }
            }
        }
        if deep { try readBack(manifests, into: &report) }
        return report
    }

    /// What is wrong with the keyspaces `manifest` names: an id given twice (or 0, the default's), a
    /// name that is not one, a keyspace without a first part, settings or a low key that do not parse
    /// (a restore could not create it in a target lacking it). Empty when all is well.
    public static func keyspaceProblems(of manifest: BackupManifest) -> [String] {
        var problems: [String] = []
        var ids = Set<UInt32>([Keyspace.defaultID])
        for part in manifest.clusterMap.keyspaces ?? [] {
            if !ids.insert(part.id).inserted { problems.append("keyspace id \(part.id) is named twice or is 0") }
            if !Keyspace.isValidName(part.name) || part.name == Keyspace.defaultName {
                problems.append("'\(part.name)' is not a keyspace name")
            }
            if part.settings == nil {
                problems.append(
                    "keyspace '\(part.name)' (id \(part.id)) has settings that do not parse: placement \(part.placement), read \(part.readLevel), write \(part.writeLevel)"
                )
            }
            if part.lowKeyBytes == nil {
                problems.append("keyspace '\(part.name)' (id \(part.id)) has a low key that is not hex")
            }
        }
        for (name, parts) in manifest.clusterMap.keyspacesByName where !parts.contains(where: { $0.lowKey.isEmpty }) {
            problems.append("keyspace '\(name)' has no first part (one with an empty low key)")
        }
        return problems
    }

    private func check(_ file: BackupManifest.FileRecord, at path: String, report: inout VerifyReport) -> String? {
        guard Self.isSHA256(file.sha256) else { return "the manifest's checksum is not a SHA-256" }
        guard FileManager.default.fileExists(atPath: path) else { return "missing" }
        let hashed: (digest: [UInt8], bytes: UInt64)
        do {
            hashed = try SHA256Digest.hash(file: path)
        } catch {
            return "unreadable: \(error.reason)"
        }
        report.filesChecked += 1
        report.bytesChecked &+= hashed.bytes
        if hashed.bytes != file.bytes { return "holds \(hashed.bytes) bytes, the manifest says \(file.bytes)" }
        if hashed.digest.hexString != file.sha256 { return "checksum mismatch (SHA-256 \(hashed.digest.hexString))" }
        return nil
    }
}
