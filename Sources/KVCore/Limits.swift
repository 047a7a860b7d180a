/// Every bound the system enforces, in one place, so that a queue, a buffer or a field that could grow
/// without limit has a name someone can look up (TigerBeetle's "put a limit on everything").
public enum Limits {
    /// Largest frame accepted on the wire: the `u32` length prefix plus what it counts.
    public static let frameBytesMax = 16 << 20
    /// Largest key, in bytes.
    public static let keyBytesMax = 64 << 10
    /// Largest value, in bytes: a frame minus generous room for the key and the other fields.
    public static let valueBytesMax = frameBytesMax - keyBytesMax - 4096
    /// Keys of one `GetBatchRequest` or writes of one `PutBatchRequest` (protocol version 4).
    public static let batchKeysMax = 1024
    /// Bytes of records one `GetBatchResponse` carries at most (its keys past them are answered
    /// `overloaded`, to be asked again), and of writes the SDK puts in one `PutBatchRequest`: half a
    /// frame, so that the rest of the answer always fits.
    public static let batchAnswerBytesMax = frameBytesMax / 2
    /// The longest time to live a write may carry: 10 years.
    public static let timeToLiveMax: Duration = .seconds(10 * 366 * 86_400)
    /// Largest name on the wire (node id, cluster id, certificate name).
    public static let nameBytesMax = 256
    /// Largest address on the wire (`host:port`).
    public static let addressBytesMax = 1024
    /// Largest human-readable message carried by an `Error` frame.
    public static let errorMessageBytesMax = 4096
    /// Requests one connection may have in flight before the server answers `overloaded`.
    public static let requestsInFlightPerConnectionMax = 1024
    /// Requests of one connection a server answers from tasks at once (those it does not answer on the
    /// event loop: reads past memory, administration, transfers); the next waits, and the connection
    /// is read no further meanwhile, so that answers cannot pile up faster than they are counted.
    public static let requestTasksPerConnectionMax = 32
    /// Bytes of request frames one connection may have in flight (received, not answered yet) before
    /// the server answers `overloaded`: four frames of the largest size.
    public static let inFlightBytesPerConnectionMax = 64 << 20
    /// Bytes of request frames one server may have in flight over all its connections before it
    /// answers `overloaded`: 1 GiB.
    public static let inFlightBytesPerServerMax = 1 << 30
    /// Frames over this many bytes (length prefix included) count in a server's memory bounds while
    /// they arrive (`receivingBytesPerServerMax`) and while its answers wait for the network (the
    /// connection's and the server's bytes in flight); smaller ones are bounded by the connections.
    public static let largeFrameBytes = 64 << 10
    /// Bytes of large frames (over 64 KiB) one server holds while they are still being received, over
    /// all its connections; a frame past it waits for room, its connection's reads held: 256 MiB.
    public static let receivingBytesPerServerMax = 256 << 20
    /// Connections one server holds open at once, over all peers; past it a new one is closed at once.
    public static let connectionsMax = 4096
    /// Connections one server holds open at once with one certificate (name and role). The SDK opens
    /// one connection per node per client, so this is how many clients may share a certificate.
    public static let connectionsPerIdentityMax = 512
    /// Connections one server lets handshake (TLS, then `Hello`) at once; past it a new one is closed
    /// at once, so a flood of half-open sockets costs no key exchange.
    public static let handshakesInFlightMax = 64
    /// Protocol violations one connection may commit that leave the frame stream intact (an unknown
    /// message type, a response sent as a request, a request its role may not send), each answered
    /// with an `Error`; one more closes the connection.
    public static let protocolViolationsPerConnectionMax = 64
    /// Jobs a node lets wait for or run on its storage thread pool at once on behalf of requests; past
    /// it a request is answered `overloaded` at once.
    public static let storageQueueMax = 4096
    /// Keys of batch requests (`GetBatch`, `PutBatch`, `HintBatch`) one client has in flight to one
    /// node at once; a batch request past it waits in the client until earlier ones are answered
    /// (`InFlightWindow`). Half a node's `storageQueueMax` (each key of a write batch is a job of its
    /// own there), so that one client's batches alone never fill a node's storage queue and come back
    /// `overloaded`, and the other half stays for other clients and single requests. Twice
    /// `batchKeysMax`: two full batch requests in flight keep a node busy while the next waits.
    public static let batchKeysInFlightPerNodeMax = storageQueueMax / 2
    /// Items in one list on the wire (tokens, hashes, listing entries).
    public static let listCountMax = 65536
    /// Nodes in one cluster map.
    public static let nodesMax = 4096
    /// Keyspaces a cluster holds at once, and ids it may ever give (dropped keyspaces keep theirs).
    public static let keyspacesMax = 256
    public static let keyspaceIDsMax = 4096
    /// Virtual-node tokens of one node.
    public static let tokensPerNodeMax = 4096
    /// Virtual-node tokens of a whole ring (a ring's preference table holds N entries a token): 1,024
    /// nodes of 256 tokens, or 4,096 of 64.
    public static let tokensTotalMax = 1 << 18
    /// Largest replication factor a ring may have.
    public static let replicationFactorMax = 16
    /// Signatures of one map's proof: one a voter, and a map has at most `nodesMax` members.
    public static let mapSignaturesMax = nodesMax
    /// Largest DER certificate carried in a map vote's signature.
    public static let certificateBytesMax = 16 << 10
    /// Largest signature carried in a map vote (an ECDSA P-256 signature is at most 72 bytes).
    public static let signatureBytesMax = 1024
    /// Nodes named by one Merkle query: a `.children` answer then holds at most 1024 hashes (one a node,
    /// at fan-out 2).
    public static let merkleNodesPerQueryMax = 1024
    /// Bytes of the node list of one Merkle query (`proto-spec/MERKLE.md`, "Node lists"): at most 5
    /// bytes a node.
    public static let merkleNodeListBytesMax = 5 * merkleNodesPerQueryMax
    /// Leaves a Merkle comparison asks to list in one query, to keep a listing answer small (a leaf
    /// is one segment: about keys / 2^20 entries; 8 bytes each in a listing by entry hashes).
    public static let merkleLeavesPerListingMax = 256
    /// Record bytes (keys and values) an anti-entropy session sends a replica in one
    /// `MerkleApplyRequest`, or asks back in one `MerkleFetchResponse` (a record larger goes alone).
    public static let merkleRecordBytesPerFrameMax = 1 << 20
    /// Bytes of a checkpoint file one `BackupReadRequest` may ask for (and one `BackupReadResponse`
    /// carries): a node answers at most this much, whatever the request says.
    public static let backupChunkBytesMax = 1 << 20
    /// Bytes of a backup id (`BackupCheckpointRequest.id`): letters, digits, `-` and `_`.
    public static let backupIDBytesMax = 64
}
