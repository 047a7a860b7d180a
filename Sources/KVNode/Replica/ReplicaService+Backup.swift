import KVCore
import KVRPC
import KVStorage
import KVTLS
import KVWire
import NIOCore

/// Backups (`kvctl backup`): a checkpoint of the store, its files read in bounded chunks, and its
/// removal. Admin certificates only (`RPCAuthorization`). Every store and file call runs through the
/// storage queue on the node's thread pool, never on an event loop.
extension ReplicaService {
    /// Answers `BackupCheckpoint`, `BackupChanges`, `BackupRead` and `BackupRelease`.
    func serveBackup(_ request: Message) async throws -> Message {
        guard let store = store as? RocksDBStore else {
            throw RPCError.remote(.invalidRequest, message: "this node's store takes no checkpoints")
        }
        switch request {
        case .backupCheckpointRequest(let request):
            return try await checkpoint(id: request.id, since: nil, store: store)
        case .backupChangesRequest(let request):
            return try await checkpoint(id: request.id, since: request.since, store: store)
        case .backupReadRequest(let request):
            let (id, file, offset) = (request.id, request.file, request.offset)
            let length = Int(min(request.length, UInt32(Limits.backupChunkBytesMax)))
            let data = try await onStorageQueue {
                try store.checkpoints.read(id: id, name: file, offset: offset, length: length)
            }
            return .backupReadResponse(BackupReadResponse(data: ByteBuffer(bytes: data)))
        case .backupReleaseRequest(let request):
            let id = request.id
            let released = try await onStorageQueue { store.checkpoints.release(id: id) }
            return .backupReleaseResponse(BackupReleaseResponse(released: released))
        default:
            throw RPCError.remote(.invalidRequest, message: "\(request.type) is not a backup request")
        }
    }

    /// A full checkpoint, or with `since` one of the records changed after that HLC value (any value:
    /// it only bounds a comparison).
    private func checkpoint(id: String, since: UInt64?, store: RocksDBStore) async throws -> Message {
        guard CheckpointRegistry.isValidID(id) else {
            throw RPCError.remote(.invalidRequest, message: "a backup id is 1...64 letters, digits, '-' or '_'")
        }
        // Read before the checkpoint: every write applied by now is in it (later ones may be too).
        let hlc = tick(observing: 0)
        let epoch = membership.current.epoch
        let checkpoint = try await onStorageQueue {
            let hash = { (path: String) in try SHA256Digest.hash(file: path).digest }
            if let since {
                return try store.createChangesCheckpoint(id: id, since: since, hash: hash)
            }
            return try store.createCheckpoint(id: id, hash: hash)
        }
        let files = checkpoint.files.map {
            BackupFile(name: $0.name, bytes: $0.bytes, sha256: ByteBuffer(bytes: $0.sha256))
        }
        guard files.count <= Limits.listCountMax else {
            // Deleting the folder is file I/O: on the storage queue, like the rest.
            _ = try? await onStorageQueue { store.checkpoints.release(id: id) }
            throw RPCError.remote(.internal, message: "the checkpoint has more than \(Limits.listCountMax) files")
        }
        return .backupCheckpointResponse(
            BackupCheckpointResponse(id: id, node: nodeID, hlc: hlc, epoch: epoch, files: files))
    }

    /// Runs a checkpoint call on the storage queue, answering a bad id or file `invalidRequest` and an
    /// I/O failure `storageFailure`.
    private func onStorageQueue<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        do {
            return try await storageQueue.run(body)
        } catch let error as CheckpointError {
            throw RPCError.remote(error.isInvalidRequest ? .invalidRequest : .storageFailure, message: "\(error)")
        } catch let error as RPCError {
            throw error
        } catch is CancellationError {
            throw RPCError.remote(.shuttingDown, message: "the node is shutting down")
        }
    }
}
