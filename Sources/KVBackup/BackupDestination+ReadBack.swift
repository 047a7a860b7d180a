import Foundation
import KVCore
import KVStorage

/// `kvctl backup verify --deep`: each node's checkpoint rebuilt, opened with RocksDB and read whole,
/// every record and hint decoded, as a restore reads them. The file checks of `verify` cannot see a
/// checkpoint whose files are each as the manifest says but which does not open (a file the manifest
/// does not list, damage RocksDB's own checks find) or holds a record that does not decode.
extension BackupDestination {
    /// What one node's checkpoint of a backup held, read back whole.
    public struct ReadBack: Sendable, Hashable {
        public var backup: String
        public var node: String
        /// Records (tombstones included) per keyspace id, for each keyspace whose `data` it holds.
        public var records: [UInt32: Int]
        /// Hints, of every keyspace and target.
        public var hints: Int
    }

    /// Records read per page: the reader's memory stays bounded whatever the checkpoint's size.
    static let readBackPageRecords = 4_096

    /// Rebuilds each node checkpoint of `manifests` in a work folder under the destination (removed
    /// after), opens it and reads every record of every keyspace and every hint. A node whose
    /// checkpoint cannot be rebuilt, opened or read whole is a problem in `report`; the others are
    /// in `report.readBack`. Nodes whose files `verify` already found bad are not read again.
    func readBack(_ manifests: [BackupManifest], into report: inout VerifyReport) throws {
        let work = "\(root)/.verify-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        guard !FileManager.default.fileExists(atPath: work) else {
            throw BackupError("the work folder \(work) exists already")
        }
        defer { try? FileManager.default.removeItem(atPath: work) }
        let damaged = Set(report.problems.map { "\($0.backup)/\($0.node)" })
        for manifest in manifests {
            for (index, node) in manifest.nodes.enumerated() where !damaged.contains("\(manifest.id)/\(node.node)") {
                let folder = "\(work)/\(manifest.id)/\(index)"
                do {
                    try assembleCheckpoint(node, of: manifest.id, into: folder)
                    report.readBack.append(try Self.readWhole(folder, backup: manifest.id, node: node.node))
                } catch {
                    report.problems.append(
                        VerifyProblem(
                            backup: manifest.id, node: node.node, file: "checkpoint",
                            path: "\(backupsDirectory)/\(manifest.id)/manifest.json",
                            reason: "the checkpoint does not read back: \(error)"))
                }
                try? FileManager.default.removeItem(atPath: folder)
            }
        }
    }

    /// Every record of every keyspace `folder` holds and every hint, decoded and counted.
    private static func readWhole(_ folder: String, backup: String, node: String) throws -> ReadBack {
        var counts = ReadBack(backup: backup, node: node, records: [:], hints: 0)
        for id in try RocksDBCheckpointReader.keyspaces(in: folder) {
            let reader = try RocksDBCheckpointReader(directory: folder, keyspace: id)
            defer { reader.close() }
            var after: [UInt8]? = nil
            var records = 0
            while true {
                let page = try reader.dataPage(after: after, recordsMax: readBackPageRecords)
                records += page.count
                guard page.count == readBackPageRecords, let last = page.last else { break }
                after = last.key
            }
            counts.records[id] = records
        }
        let reader = try RocksDBCheckpointReader(directory: folder)
        defer { reader.close() }
        counts.hints = try reader.allHints().count
        return counts
    }
}
