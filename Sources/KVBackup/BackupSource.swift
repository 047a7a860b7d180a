public import KVClient
public import KVCore
import KVTLS
import KVWire
import NIOCore

/// One node's checkpoint as a backup sees it.
public struct NodeCheckpoint: Sendable, Hashable {
    public var node: String
    public var hlc: UInt64
    public var epoch: UInt64
    public var files: [BackupManifest.FileRecord]
    /// For a checkpoint of changes, the HLC value it holds the records newer than; nil for a full one.
    public var since: UInt64?

    public init(node: String, hlc: UInt64, epoch: UInt64, files: [BackupManifest.FileRecord], since: UInt64? = nil) {
        self.node = node
        self.hlc = hlc
        self.epoch = epoch
        self.files = files
        self.since = since
    }
}

/// Where a backup's checkpoints come from: the cluster over RPC (`KVClient`), or a fake in tests.
public protocol BackupSource: Sendable {
    /// The latest cluster map.
    func clusterMap() async throws -> ClusterMap
    /// Asks `node` for checkpoint `id`: a full one, or with `since` one of the records and hints with
    /// a version above it (a node that cannot answers with a full one, `since` nil).
    func checkpoint(id: String, node: String, since: UInt64?) async throws -> NodeCheckpoint
    /// Up to `length` bytes of one file of checkpoint `id` on `node`, from `offset`.
    func read(id: String, file: String, offset: UInt64, length: Int, node: String) async throws -> [UInt8]
    /// Tells `node` to remove checkpoint `id`.
    func release(id: String, node: String) async throws
}

/// The cluster as a backup's source: `KVClient`'s admin calls (`BackupCheckpoint`, `BackupRead`,
/// `BackupRelease`), each node's answer checked before use.
public struct ClusterBackupSource: BackupSource {
    public let client: KVClient

    public init(client: KVClient) {
        self.client = client
    }

    public func clusterMap() async throws -> ClusterMap {
        try await client.latestClusterMap()
    }

    public func checkpoint(id: String, node: String, since: UInt64?) async throws -> NodeCheckpoint {
        // A checkpoint flushes memtables and hashes new table files: give it longer than a request.
        var since = since
        let response: BackupCheckpointResponse
        do {
            response = try await client.takeCheckpoint(id: id, node: node, since: since, timeout: .seconds(600))
        } catch let error as KVClientError where error.refusalCode == .unknownMessageType && since != nil {
            // A node older than incremental backups does not know `BackupChanges`: its full checkpoint.
            since = nil
            response = try await client.takeCheckpoint(id: id, node: node, timeout: .seconds(600))
        }
        var files: [BackupManifest.FileRecord] = []
        var names = Set<String>()
        for file in response.files {
            // What the node says is checked before it is used: the name only labels the file (it never
            // becomes a path here), the checksum names it and must be one.
            guard file.sha256.readableBytes == SHA256Digest.byteCount else {
                throw BackupError("\(node) listed \(file.name) with a checksum of \(file.sha256.readableBytes) bytes")
            }
            guard names.insert(file.name).inserted, !file.name.isEmpty else {
                throw BackupError("\(node) listed the file name '\(file.name)' twice or empty")
            }
            files.append(
                BackupManifest.FileRecord(
                    name: file.name, bytes: file.bytes, sha256: Array(file.sha256.readableBytesView).hexString))
        }
        return NodeCheckpoint(node: node, hlc: response.hlc, epoch: response.epoch, files: files, since: since)
    }

    public func read(id: String, file: String, offset: UInt64, length: Int, node: String) async throws -> [UInt8] {
        try await client.readCheckpoint(id: id, file: file, offset: offset, length: length, node: node)
    }

    public func release(id: String, node: String) async throws {
        try await client.releaseCheckpoint(id: id, node: node)
    }
}
