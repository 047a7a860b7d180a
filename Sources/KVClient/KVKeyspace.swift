package import KVCore

/// One keyspace of a cluster, opened with `KVClient.keyspace(_:)`: the client's data operations on
/// that keyspace's keys.
///
/// Its keys are its own: the same bytes in another keyspace are another key. Each operation is
/// coordinated as the client's own (quorums, read repair, hinted handoff, newer-map retries), on the
/// keyspace's ring with its N, and uses its read and write levels (`kvctl keyspace create --read/--write`)
/// and default time to live (`--ttl`) when the call names none. Copies share the client: open them
/// freely, keep them as long as the client. An unknown or dropped keyspace fails each operation with
/// ``KVClientError/isInvalidArgument``, naming it.
public struct KVKeyspace: Sendable {
    /// The keyspace's name, as the cluster map has it.
    public let name: String
    /// The client whose connections, clock and map the keyspace's operations use.
    public let client: KVClient

    init(name: String, client: KVClient) {
        self.name = name
        self.client = client
    }

    /// Writes `value` under `key`, acknowledged by `consistency` replicas (default: the keyspace's
    /// write level). It expires after `timeToLive`, or the keyspace's default TTL when nil (a keyspace
    /// without one: never).
    ///
    /// - Returns: the version the write was stored with.
    /// - Throws: ``KVClientError``, as ``KVClient/put(_:value:consistency:timeToLive:)``; also
    ///   `isInvalidArgument` when the cluster has no such keyspace.
    @discardableResult
    public func put(
        _ key: some KVBytes, value: some KVBytes, consistency: KVConsistency? = nil, timeToLive: Duration? = nil
    ) async throws -> KVVersion {
        KVVersion(
            try await client.put(
                key.kvArray, value: value.kvBuffer, consistency: consistency?.level, timeToLive: timeToLive, in: name))
    }

    /// Deletes `key` by writing a tombstone (default level: the keyspace's write level).
    ///
    /// - Returns: the version of the tombstone.
    /// - Throws: ``KVClientError``, as ``put(_:value:consistency:timeToLive:)``.
    @discardableResult
    public func delete(_ key: some KVBytes, consistency: KVConsistency? = nil) async throws -> KVVersion {
        KVVersion(try await client.delete(key.kvArray, consistency: consistency?.level, in: name))
    }

    /// Reads `key` from `consistency` replicas (default: the keyspace's read level) and returns the
    /// newest version they hold, repairing replicas that answered older (as ``KVClient/get(_:consistency:repair:)``).
    ///
    /// - Returns: the value and its version, or nil when the key does not exist, was deleted or expired.
    /// - Throws: ``KVClientError``, as ``KVClient/get(_:consistency:repair:)``; also
    ///   `isInvalidArgument` when the cluster has no such keyspace.
    public func get(_ key: some KVBytes, consistency: KVConsistency? = nil, repair: KVReadRepair? = nil)
        async throws -> KVValue?
    {
        try await client.get(key.kvArray, consistency: consistency?.level, repair: repair?.mode, in: name)
    }

    /// Reads many keys at once, each as ``get(_:consistency:repair:)`` reads it (its own quorum, its
    /// own newest version, its own repairs), for the round trips of a few: the keys' requests to each
    /// replica go together, as one batch per replica and wave, instead of one request per key.
    ///
    /// - Returns: each key's value and version, in the order of `keys` (nil: absent, deleted or expired).
    /// - Throws: ``KVClientError``: `isInvalidArgument` for a bad key or level (nothing was sent),
    ///   `isUnavailable` naming the keys whose quorum failed, after every key was tried (a key that
    ///   failed because the cluster changed meanwhile is tried once more on the newer map).
    public func get<Key: KVBytes>(keys: [Key], consistency: KVConsistency? = nil, repair: KVReadRepair? = nil)
        async throws -> [KVValue?]
    {
        try await client.get(keys: keys.map(\.kvArray), consistency: consistency?.level, repair: repair?.mode, in: name)
    }

    /// Writes many keys at once, each as ``put(_:value:consistency:timeToLive:)`` writes it (its own
    /// version and quorum, its own hints for replicas that did not acknowledge), for the round trips
    /// of a few, as ``get(keys:consistency:repair:)`` reads.
    ///
    /// - Returns: the version each write was stored with, in the order of `entries`.
    /// - Throws: ``KVClientError``, as ``get(keys:consistency:repair:)``; a write acknowledged stays
    ///   written when another key's fails.
    @discardableResult
    public func put<Key: KVBytes, Value: KVBytes>(
        _ entries: [(key: Key, value: Value)], consistency: KVConsistency? = nil, timeToLive: Duration? = nil
    ) async throws -> [KVVersion] {
        try await client.put(
            entries.map { ($0.key.kvArray, $0.value.kvBuffer) }, consistency: consistency?.level,
            timeToLive: timeToLive, in: name
        ).map(KVVersion.init)
    }

    /// What one replica holds for `key` in this keyspace, bypassing coordination (admin certificate).
    package func replicaRecord(_ key: [UInt8], node: String) async throws -> StoredRecord? {
        try await client.replicaRecord(key, node: node, in: name)
    }

    /// Writes `value` (or a tombstone) under `key` in this keyspace to one replica only, bypassing
    /// coordination (admin certificate).
    @discardableResult
    package func writeReplica(_ key: [UInt8], value: [UInt8], tombstone: Bool = false, node: String) async throws
        -> ApplyOutcome
    {
        try await client.writeReplica(key, value: value, tombstone: tombstone, node: node, in: name)
    }

    /// The replicas of `key` in this keyspace, in preference order (the ring, in the map in use, of
    /// the keyspace's part that holds `key`).
    package func replicas(ofKey key: [UInt8]) async throws -> [String] {
        try await client.topologyAndRoute(name, key: key).1.ring.preferenceList(forKey: key)
    }
}
