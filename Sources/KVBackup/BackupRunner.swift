import Foundation
import KVCore
import KVTLS

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What one backup did.
public struct BackupReport: Sendable {
    public var manifest: BackupManifest
    /// Distinct files copied into `files/` (the rest were there already, from an earlier backup or
    /// another node).
    public var filesCopied = 0
    public var filesSkipped = 0
    /// Of those, RocksDB table files (`*.sst`): the data. An unchanged cluster's second backup copies
    /// none; its small other files (manifest, options, log) may differ.
    public var tableFilesCopied = 0
    public var tableFilesSkipped = 0
    /// Files whose copy continued a `.partial` an interrupted backup left.
    public var filesResumed = 0
    /// Bytes received from the nodes.
    public var bytesCopied: UInt64 = 0
    /// Bytes of the files that were there already (and of the part of a resumed file).
    public var bytesSkipped: UInt64 = 0
}

/// `kvctl backup`: one backup of every node of the cluster into a destination.
///
/// Every node takes its checkpoint first, all at once (so their times are close, and the cut late);
/// then each distinct file missing from `files/` is copied from one node that holds it, in chunks,
/// into `files/<sha256>.partial` (resumed from its end when an earlier backup was interrupted),
/// checked against its SHA-256 and renamed; the checkpoints are released, also when something
/// failed; the manifest is written last.
public struct BackupRunner: Sendable {
    public var source: any BackupSource
    public var destination: BackupDestination
    /// Bytes asked per read (at most `Limits.backupChunkBytesMax`).
    public var chunkBytes = Limits.backupChunkBytesMax
    /// The most bytes per second read from each node (nil: as fast as it goes), so that a backup
    /// leaves the nodes' disks and cores to their clients (`kvctl backup --rate`).
    public var bytesPerSecondPerNode: Int?
    /// Progress lines (to stderr in kvctl).
    public var progress: @Sendable (String) -> Void = { _ in }
    /// Whether the backup builds on the destination's latest backup of the same cluster, when there
    /// is one: each node then checkpoints only the records and hints newer than that backup's cut,
    /// found through its version index, instead of every table file (`kvctl backup --full` turns it
    /// off). A restore reads the backups it builds on with it.
    public var incremental = true
    /// How far before the base's cut an incremental backup starts: a write stamped a little before
    /// the cut by a client whose clock lags, or delayed in the network, can reach its replicas after
    /// their checkpoints; it is in neither backup unless the next one reaches back for it. Writes of
    /// this span are copied twice, which costs little.
    public var incrementalOverlap: Duration = .seconds(60)

    public init(source: any BackupSource, destination: BackupDestination) {
        self.source = source
        self.destination = destination
    }

    /// Runs one backup.
    ///
    /// - Parameter id: the backup's id (a new one by default): also the checkpoints' name on the nodes.
    public func run(id: String = BackupTime.newBackupID()) async throws -> BackupReport {
        guard BackupDestination.isValidBackupID(id) else { throw BackupError("'\(id)' is not a valid backup id") }
        let lock = try destination.lock()
        defer { withExtendedLifetime(lock) {} }
        let startedAt = BackupTime.iso8601(millis: UInt64(max(0, Date().timeIntervalSince1970 * 1000)))
        let map = try await source.clusterMap()
        let members = map.nodes.filter { $0.state != .removed }.map(\.id)
        guard !members.isEmpty else { throw BackupError("the cluster map lists no node") }
        let base =
            incremental
            ? try destination.manifests().last { $0.clusterID == map.clusterID }
            : nil
        let since = base.map { base in
            let overlap = min(incrementalOverlap.wholeMillisecondsClamped, 1 << 47) << 16
            return base.cut > overlap ? base.cut - overlap : 0
        }
        if let base, let since {
            progress(
                "incremental on backup \(base.id): the records newer than \(BackupTime.iso8601(hlc: since)) (its cut less \(incrementalOverlap))"
            )
        }

        var taken: [NodeCheckpoint] = []
        do {
            taken = try await takeCheckpoints(id: id, nodes: members, since: since)
            progress(
                "checkpoints taken on \(taken.count) nodes: \(taken.reduce(0) { $0 + $1.files.count }) files, \(taken.reduce(UInt64(0)) { $0 &+ $1.files.reduce(0) { $0 &+ $1.bytes } }) bytes"
            )
            var report = try await copy(id: id, checkpoints: taken)
            await release(id: id, nodes: members)
            let finishedAt = BackupTime.iso8601(millis: UInt64(max(0, Date().timeIntervalSince1970 * 1000)))
            let manifest = BackupManifest(
                id: id, startedAt: startedAt, finishedAt: finishedAt, clusterID: map.clusterID,
                clusterMap: .init(map),
                nodes: taken.map {
                    NodeRecord(node: $0.node, hlc: $0.hlc, epoch: $0.epoch, files: $0.files, since: $0.since)
                }, base: base?.id)
            try destination.write(manifest)
            report.manifest = manifest
            return report
        } catch {
            // Every node, not only those that answered: a checkpoint may exist where the answer was lost.
            await release(id: id, nodes: members)
            throw error
        }
    }

    private typealias NodeRecord = BackupManifest.NodeRecord

    private func takeCheckpoints(id: String, nodes: [String], since: UInt64?) async throws -> [NodeCheckpoint] {
        let source = self.source
        return try await withThrowingTaskGroup(of: (Int, NodeCheckpoint).self) { group in
            for (index, node) in nodes.enumerated() {
                group.addTask {
                    do {
                        let checkpoint = try await source.checkpoint(id: id, node: node, since: since)
                        guard checkpoint.node == node else {
                            throw BackupError("\(node) answered with the checkpoint of \(checkpoint.node)")
                        }
                        return (index, checkpoint)
                    } catch let error as BackupError {
                        throw error
                    } catch {
                        throw BackupError("\(node): cannot take a checkpoint: \(error)")
                    }
                }
            }
            var results = [NodeCheckpoint?](repeating: nil, count: nodes.count)
            for try await (index, checkpoint) in group { results[index] = checkpoint }
            return results.compactMap { $0 }
        }
    }

    /// Copies every distinct file missing from the destination, each from the first node listing it;
    /// the nodes in parallel, each node's files one after the other.
    private func copy(id: String, checkpoints: [NodeCheckpoint]) async throws -> BackupReport {
        try destination.prepare()
        var report = BackupReport(
            manifest: BackupManifest(
                id: id, startedAt: "", finishedAt: "", clusterID: "",
                clusterMap: .init(ClusterMap(clusterID: "", epoch: 0, replicationFactor: 1, nodes: [])), nodes: []))
        var planned = Set<String>()
        var work: [(node: String, files: [BackupManifest.FileRecord])] = []
        for checkpoint in checkpoints {
            var files: [BackupManifest.FileRecord] = []
            for file in checkpoint.files where planned.insert(file.sha256).inserted {
                if isPresent(file) {
                    report.filesSkipped += 1
                    report.bytesSkipped &+= file.bytes
                    if file.isTableFile { report.tableFilesSkipped += 1 }
                } else {
                    files.append(file)
                }
            }
            work.append((checkpoint.node, files))
        }
        let results = try await withThrowingTaskGroup(of: [FileCopy].self) { group in
            for (node, files) in work where !files.isEmpty {
                group.addTask {
                    var copies: [FileCopy] = []
                    var limit = bytesPerSecondPerNode.map { ByteRateLimit(bytesPerSecond: max(1, $0), now: .now) }
                    for file in files {
                        copies.append(try await copyFile(file, id: id, node: node, limit: &limit))
                    }
                    progress("\(node): \(files.count) files copied")
                    return copies
                }
            }
            var all: [FileCopy] = []
            for try await copies in group { all += copies }
            return all
        }
        for copy in results {
            report.filesCopied += 1
            if copy.isTableFile { report.tableFilesCopied += 1 }
            if copy.resumedFrom > 0 { report.filesResumed += 1 }
            report.bytesCopied &+= copy.bytesReceived
            report.bytesSkipped &+= copy.resumedFrom
        }
        return report
    }

    /// Whether `files/<sha256>` holds a file of that size (its content is what `verify` checks: a
    /// file is only renamed there after its checksum matched).
    private func isPresent(_ file: BackupManifest.FileRecord) -> Bool {
        var info = stat()
        guard lstat(destination.filePath(sha256: file.sha256), &info) == 0 else { return false }
        return (info.st_mode & S_IFMT) == S_IFREG && UInt64(clamping: info.st_size) == file.bytes
    }

    private struct FileCopy: Sendable {
        var isTableFile: Bool
        var resumedFrom: UInt64
        var bytesReceived: UInt64
    }

    /// Copies one file into `files/<sha256>.partial` from where an earlier attempt stopped, checks it
    /// and renames it into place. A `.partial` whose content turns out wrong is removed and copied
    /// again once from the start.
    private func copyFile(
        _ file: BackupManifest.FileRecord, id: String, node: String, limit: inout ByteRateLimit?
    ) async throws -> FileCopy {
        guard BackupDestination.isSHA256(file.sha256) else { throw BackupError("\(node) listed a bad checksum") }
        // Offsets become `off_t`: a size past it is a hostile or broken listing, never a real file.
        guard file.bytes <= UInt64(Int64.max) else {
            throw BackupError("\(node) listed \(file.name) with \(file.bytes) bytes")
        }
        let partial = destination.partialPath(sha256: file.sha256)
        var received: UInt64 = 0
        var resumedFrom: UInt64 = 0
        for attempt in 0..<2 {
            let descriptor = open(partial, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else {
                throw BackupError("cannot open \(partial): \(String(cString: strerror(errno)))")
            }
            var info = stat()
            guard fstat(descriptor, &info) == 0 else {
                close(descriptor)
                throw BackupError("cannot read \(partial): \(String(cString: strerror(errno)))")
            }
            var offset = UInt64(clamping: info.st_size)
            if offset > file.bytes || attempt > 0 {
                guard ftruncate(descriptor, 0) == 0 else {
                    close(descriptor)
                    throw BackupError("cannot truncate \(partial): \(String(cString: strerror(errno)))")
                }
                offset = 0
            }
            if attempt == 0 { resumedFrom = offset }
            do {
                while offset < file.bytes {
                    let want = Int(
                        min(UInt64(max(1, min(chunkBytes, Limits.backupChunkBytesMax))), file.bytes - offset))
                    if let delay = limit?.delay(now: .now), delay > .zero {
                        try await Task.sleep(for: delay)
                    }
                    let chunk = try await source.read(id: id, file: file.name, offset: offset, length: want, node: node)
                    limit?.spend(chunk.count, now: .now)
                    guard !chunk.isEmpty else {
                        throw BackupError(
                            "\(node): \(file.name) ended at \(offset) bytes; it was listed with \(file.bytes)")
                    }
                    guard chunk.count <= want else {
                        throw BackupError("\(node) answered \(chunk.count) bytes of \(file.name) for \(want) asked")
                    }
                    try Self.write(chunk, to: descriptor, at: offset, path: partial)
                    offset += UInt64(chunk.count)
                    received &+= UInt64(chunk.count)
                }
                guard fsync(descriptor) == 0 else {
                    throw BackupError("cannot fsync \(partial): \(String(cString: strerror(errno)))")
                }
                close(descriptor)
            } catch {
                close(descriptor)
                throw error
            }
            let hashed = try SHA256Digest.hash(file: partial)
            if hashed.bytes == file.bytes && hashed.digest.hexString == file.sha256 {
                guard rename(partial, destination.filePath(sha256: file.sha256)) == 0 else {
                    throw BackupError("cannot rename \(partial): \(String(cString: strerror(errno)))")
                }
                return FileCopy(isTableFile: file.isTableFile, resumedFrom: resumedFrom, bytesReceived: received)
            }
            progress("\(node): \(file.name) did not match its checksum; copying it again from the start")
        }
        unlink(partial)
        throw BackupError("\(node): \(file.name) does not match the checksum the node listed (copied twice)")
    }

    private static func write(_ bytes: [UInt8], to descriptor: Int32, at offset: UInt64, path: String) throws {
        var done = 0
        while done < bytes.count {
            let written = bytes.withUnsafeBytes { buffer in
                pwrite(descriptor, buffer.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            }
            if written < 0 {
                if errno == EINTR { continue }
                throw BackupError("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            done += written
        }
    }

    /// Tells every node to remove the checkpoint; a node that does not answer removes it itself
    /// once it has been unused for an hour, or when it restarts.
    private func release(id: String, nodes: [String]) async {
        let source = self.source
        let progress = self.progress
        await withTaskGroup(of: Void.self) { group in
            for node in nodes {
                group.addTask {
                    do {
                        try await source.release(id: id, node: node)
                    } catch {
                        progress(
                            "\(node): cannot release checkpoint \(id) (the node removes it within an hour): \(error)")
                    }
                }
            }
        }
    }
}
