import KVCore
import KVWire
import NIOCore

/// Where one keyspace part's reads and writes go and what they default to: the part's id (carried by
/// every request), its ring and the ring of the change in progress, its levels and its time to live.
///
/// A keyspace split by key range (`kvctl keyspace create --split`) has one part per range, each with
/// its own id and ring; a keyspace that is not split is one part. Built once per installed map for
/// every part in it (`KVClient.Topology`), so an operation picks the route of its key's part
/// (`ClusterMap.keyspace(named:forKey:)`) and runs the one coordination path every keyspace shares.
/// The default keyspace's levels are nil: the client configuration's `readConsistency` and
/// `writeConsistency` (today's behaviour); another keyspace's are those of the cluster map.
struct KeyspaceRoute: Sendable {
    let id: UInt32
    let name: String
    /// The ring reads use, and writes with `next`.
    let ring: Ring
    /// The keyspace's ring once the change in progress is done; nil when nothing is changing. Writes
    /// go to the replicas of both rings meanwhile.
    let next: Ring?
    /// The level of a read or write that names none; nil: the client configuration's.
    let readLevel: ConsistencyLevel?
    let writeLevel: ConsistencyLevel?
    /// The time to live of a put that names none; nil: it never expires.
    let timeToLive: Duration?

    /// The default keyspace of `map`: the map's own placement, the configuration's levels, no TTL.
    init(defaultOf map: ClusterMap) throws(RingError) {
        id = Keyspace.defaultID
        name = Keyspace.defaultName
        ring = try map.ring()
        next = map.isChanging ? try map.nextRing() : nil
        readLevel = nil
        writeLevel = nil
        timeToLive = nil
    }

    /// The route of `keyspace`, a part of one of `map`'s keyspaces other than the default.
    ///
    /// - Throws: when its rule makes no ring of the map's nodes, or its TTL is out of range (a map
    ///   comes from peers: nothing in it is trusted unchecked).
    init(_ keyspace: Keyspace, of map: ClusterMap) throws(KVClientError) {
        precondition(keyspace.id != Keyspace.defaultID, "the default keyspace's route is init(defaultOf:)")
        do {
            ring = try map.ring(of: keyspace)
            next = map.isChanging ? try map.nextRing(of: keyspace) : nil
        } catch {
            throw .invalidArgument("keyspace '\(keyspace.name)' is not a valid ring in epoch \(map.epoch): \(error)")
        }
        if let ttl = keyspace.timeToLive, ttl <= .zero || ttl > Limits.timeToLiveMax {
            throw .invalidArgument(
                "keyspace '\(keyspace.name)' has a time to live of \(ttl), not in (0, \(Limits.timeToLiveMax)]")
        }
        id = keyspace.id
        name = keyspace.name
        readLevel = keyspace.readLevel
        writeLevel = keyspace.writeLevel
        timeToLive = keyspace.timeToLive
    }

    /// The routes of every keyspace part of `map` that is not dropped, by id, the default's included; a
    /// part that cannot be used holds the reason, which its operations throw.
    static func routes(of map: ClusterMap) throws(RingError) -> [UInt32: Result<KeyspaceRoute, KVClientError>] {
        var routes = [
            Keyspace.defaultID: Result<KeyspaceRoute, KVClientError>.success(try KeyspaceRoute(defaultOf: map))
        ]
        for keyspace in map.keyspaces where !keyspace.dropped && keyspace.id != Keyspace.defaultID {
            routes[keyspace.id] = Result { () throws(KVClientError) in try KeyspaceRoute(keyspace, of: map) }
        }
        return routes
    }

    // MARK: - The requests of this keyspace: each carries its id.

    func getRequest(_ key: [UInt8]) -> Message {
        .getRequest(GetRequest(key: ByteBuffer(bytes: key), keyspace: id))
    }

    /// A read repair's write-back of `record` under `key`.
    func repairRequest(_ key: [UInt8], _ record: StoredRecord) -> Message {
        .putRequest(PutRequest(key: key, record, origin: .readRepair, keyspace: id))
    }

    /// A client's write of `record`, made with the map of `epoch`.
    func putRequest(_ record: Record, epoch: UInt64) -> Message {
        .putRequest(
            PutRequest(
                key: record.key, value: record.value, version: record.version, tombstone: record.tombstone,
                origin: .client,
                epoch: epoch, expiresAtMillis: record.expiresAtMillis, keyspace: id))
    }

    /// The hint a fallback keeps for `target`.
    func hintRequest(for target: String, _ record: Record) -> Message {
        .hintRequest(HintRequest(target: target, record: record, keyspace: id))
    }
}
