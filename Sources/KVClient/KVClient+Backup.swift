import KVCore
import KVRPC
package import KVWire
import NIOCore

extension KVClient {
    // MARK: - Backups (admin)

    /// Asks `node` for a RocksDB checkpoint named `id` of its data, hints and metadata — with `since`,
    /// of only the records and hints with a version above that HLC value (`BackupChanges`, for an
    /// incremental backup) — and returns its files (names, sizes, SHA-256) with the node's clock and
    /// map epoch at that moment. Needs an admin certificate. The checkpoint stays on the node until
    /// `releaseCheckpoint` (or until it has gone unused for an hour, or the node restarts).
    package func takeCheckpoint(id: String, node: String, since: UInt64? = nil, timeout: Duration? = nil) async throws
        -> BackupCheckpointResponse
    {
        try requireAdmin("a backup")
        let request: Message =
            if let since {
                .backupChangesRequest(BackupChangesRequest(id: id, since: since))
            } else {
                .backupCheckpointRequest(BackupCheckpointRequest(id: id))
            }
        let answer = try await call(request, node: node, in: try await currentTopology(), timeout: timeout)
        guard case .backupCheckpointResponse(let response) = answer else {
            throw KVClientError.protocolViolation("\(node) answered BackupCheckpoint with \(answer.type)")
        }
        guard response.id == id, response.node == node else {
            throw KVClientError.protocolViolation(
                "\(node) answered BackupCheckpoint \(id) with checkpoint \(response.id) of \(response.node)")
        }
        observe(response.hlc)
        return response
    }

    /// Reads up to `length` bytes (at most `Limits.backupChunkBytesMax`) of file `file` of checkpoint
    /// `id` on `node`, from `offset`; fewer only at the end of the file. Needs an admin certificate.
    package func readCheckpoint(id: String, file: String, offset: UInt64, length: Int, node: String) async throws
        -> [UInt8]
    {
        try requireAdmin("a backup")
        let bounded = UInt32(clamping: max(0, min(length, Limits.backupChunkBytesMax)))
        let answer = try await call(
            .backupReadRequest(BackupReadRequest(id: id, file: file, offset: offset, length: bounded)), node: node,
            in: try await currentTopology())
        guard case .backupReadResponse(let response) = answer else {
            throw KVClientError.protocolViolation("\(node) answered BackupRead with \(answer.type)")
        }
        guard response.data.readableBytes <= Int(bounded) else {
            throw KVClientError.protocolViolation(
                "\(node) answered a read of \(bounded) bytes with \(response.data.readableBytes)")
        }
        return Array(response.data.readableBytesView)
    }

    /// Tells `node` to remove checkpoint `id`; false when it held none of that id. Needs an admin
    /// certificate.
    @discardableResult
    package func releaseCheckpoint(id: String, node: String) async throws -> Bool {
        try requireAdmin("a backup")
        let answer = try await call(
            .backupReleaseRequest(BackupReleaseRequest(id: id)), node: node, in: try await currentTopology())
        guard case .backupReleaseResponse(let response) = answer else {
            throw KVClientError.protocolViolation("\(node) answered BackupRelease with \(answer.type)")
        }
        return response.released
    }
}
