/// Every bound the system enforces, in one place, so that a queue, a buffer or a field that could grow
/// without limit has a name someone can look up (TigerBeetle's "put a limit on everything").
public enum Limits {
    /// Largest frame accepted on the wire: the `u32` length prefix plus what it counts.
    public static let frameBytesMax = 16 << 20
    /// Largest key, in bytes.
    public static let keyBytesMax = 64 << 10
    /// Largest value, in bytes: a frame minus generous room for the key and the other fields.
    public static let valueBytesMax = frameBytesMax - keyBytesMax - 4096
    /// Largest name on the wire (node id, cluster id, certificate name).
    public static let nameBytesMax = 256
    /// Largest address on the wire (`host:port`).
    public static let addressBytesMax = 1024
    /// Largest human-readable message carried by an `Error` frame.
    public static let errorMessageBytesMax = 4096
    /// Requests one connection may have in flight before the server answers `overloaded`.
    public static let requestsInFlightPerConnectionMax = 1024
    /// Items in one list on the wire (tokens, hashes, listing entries).
    public static let listCountMax = 65536
    /// Nodes in one cluster map.
    public static let nodesMax = 4096
    /// Virtual-node tokens of one node.
    public static let tokensPerNodeMax = 4096
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
}
