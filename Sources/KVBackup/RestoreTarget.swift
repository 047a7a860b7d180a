public import KVClient
public import KVCore

/// Where a restore writes: the target cluster over RPC (`KVClient`), or a fake in tests.
public protocol RestoreTarget: Sendable {
    /// The latest cluster map of the target.
    func clusterMap() async throws -> ClusterMap
    /// Checks that `node` answers; the epoch of its map and the keys it holds (roughly).
    func ping(node: String) async throws -> (epoch: UInt64, keys: UInt64)
    /// Writes `records` of keyspace `keyspace` (a part's id) to `node` through its apply rule, each
    /// with its own version; how many it applied.
    func apply(_ records: [(key: [UInt8], record: StoredRecord)], keyspace: UInt32, node: String) async throws -> Int
    /// Makes `change` (a keyspace's creation) through the target's cluster-change path; the new map.
    func changeCluster(_ change: ClusterChange) async throws -> ClusterMap
}

/// The cluster `KVClient` is configured for as a restore's target: `MerkleApply` batches, admin only.
public struct ClusterRestoreTarget: RestoreTarget {
    public let client: KVClient
    /// How long one batch may take to be applied (a node fsyncs it once).
    public var batchTimeout: Duration = .seconds(60)

    public init(client: KVClient) {
        self.client = client
    }

    public func clusterMap() async throws -> ClusterMap {
        try await client.latestClusterMap()
    }

    public func ping(node: String) async throws -> (epoch: UInt64, keys: UInt64) {
        try await client.ping(node: node)
    }

    public func apply(_ records: [(key: [UInt8], record: StoredRecord)], keyspace: UInt32, node: String)
        async throws -> Int
    {
        try await client.applyRecords(records, keyspace: keyspace, node: node, timeout: batchTimeout)
    }

    public func changeCluster(_ change: ClusterChange) async throws -> ClusterMap {
        try await client.changeCluster(change)
    }
}
