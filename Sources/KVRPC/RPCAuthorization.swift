public import KVCore
public import KVWire

/// Which message types each role may send, as DESIGN.md's security model fixes it, with one change:
/// clients may send `Hint`, because the SDK coordinates hinted handoff (docs/design-notes.md).
///
/// Clients read, write, hand off hints and ask for the ring; nodes also compare Merkle trees and
/// stream ranges (`MerkleExchange`, `MerkleFetch`, `MerkleApply`, `Stream`) and vote on cluster maps
/// (`MapPrepare`, `MapAccept`, `MapCommit`); admins may send everything, including `Admin`.
public enum RPCAuthorization {
    /// Whether a message type is a request at all (responses, `Hello` and `Error` are not, once the
    /// handshake is done).
    public static func isRequest(_ type: MessageType) -> Bool {
        switch type {
        case .putRequest, .getRequest, .clusterMapRequest, .pingRequest, .hintRequest, .merkleExchangeRequest,
            .merkleFetchRequest, .merkleApplyRequest, .streamRequest, .adminRequest, .mapPrepareRequest,
            .mapAcceptRequest, .mapCommitRequest, .backupCheckpointRequest, .backupReadRequest, .backupReleaseRequest,
            .backupChangesRequest, .heartbeatRequest, .getBatchRequest, .putBatchRequest, .hintBatchRequest:
            true
        default:
            false
        }
    }

    /// Whether a `Put` of this origin may come from `role`: hint replay and anti-entropy writes are
    /// nodes' work (and admins'); a client writes and repairs what it read. What a request may do
    /// follows from the certificate, not from what the request says about itself.
    public static func permits(_ role: Role, toSend origin: PutOrigin) -> Bool {
        switch origin {
        case .client, .readRepair: true
        case .hintReplay, .antiEntropy: role == .node || role == .admin
        }
    }

    public static func permits(_ role: Role, toSend type: MessageType) -> Bool {
        switch type {
        case .putRequest, .getRequest, .clusterMapRequest, .pingRequest, .heartbeatRequest, .hintRequest,
            .getBatchRequest, .putBatchRequest, .hintBatchRequest:
            // Clients send hints too: the SDK coordinates hinted handoff (docs/design-notes.md). A
            // batch is client writes (origin `client`) and reads, as its keys' own requests would be.
            return true
        case .merkleExchangeRequest, .merkleFetchRequest, .merkleApplyRequest, .streamRequest:
            // Admins too (they may send everything): `kvctl restore` writes a backup's records with
            // their own versions to each replica as `MerkleApply` batches, through the apply rule,
            // so it can only add versions, never roll one back.
            return role == .node || role == .admin
        case .mapPrepareRequest, .mapAcceptRequest, .mapCommitRequest:
            // Cluster-map changes: proposed by admins (kvctl cluster …); nodes may push chosen maps.
            return role == .node || role == .admin
        case .adminRequest, .backupCheckpointRequest, .backupChangesRequest, .backupReadRequest,
            .backupReleaseRequest:
            // Backups read every file of a node: admins only.
            return role == .admin
        default:
            // Responses, Hello and Error are never requests after the handshake.
            return false
        }
    }
}
