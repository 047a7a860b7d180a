import KVCore
import Synchronization

extension KVClient {
    /// Keyspace `name` of the cluster (`kvctl keyspace create`): its reads and writes go to its own
    /// ring, with its N, and use its read and write levels and time to live when a call names none.
    ///
    /// Opening a keyspace sends nothing; the name is looked up at each operation, in the map in use
    /// and, when that map does not know it, once in the cluster's latest map (a keyspace created after
    /// this client started works at once). An unknown or dropped keyspace fails the operation with
    /// ``KVClientError/isInvalidArgument``, naming it. `keyspace("default")` is the client's own
    /// keyspace.
    public func keyspace(_ name: String) -> KVKeyspace {
        KVKeyspace(name: name, client: self)
    }

    /// The map in use and the route of the part of keyspace `name` holding `key` in it; a keyspace
    /// that map does not know is looked for once more in the latest map of the cluster's nodes.
    func topologyAndRoute(_ name: String, key: [UInt8]) async throws -> (Topology, KeyspaceRoute) {
        let topology = try await currentTopology()
        if let route = try topology.route(name, forKey: key) { return (topology, route) }
        _ = try? await latestClusterMap()
        let latest = try await currentTopology()
        if let route = try latest.route(name, forKey: key) { return (latest, route) }
        throw Self.unknownKeyspace(name, in: latest.map)
    }

    /// The failure of an operation on a keyspace `map` does not have (or has dropped).
    static func unknownKeyspace(_ name: String, in map: ClusterMap) -> KVClientError {
        let known = ([Keyspace.defaultName] + map.keyspaces.filter { !$0.dropped }.map(\.name)).joined(separator: ", ")
        let dropped = map.keyspaces.contains { $0.dropped && $0.name == name }
        return .invalidArgument(
            (dropped ? "keyspace '\(name)' was dropped" : "no keyspace '\(name)' in the cluster map")
                + " (epoch \(map.epoch); keyspaces: \(known))")
    }

    /// The levels an operation in keyspace `name` uses when it names none, as the map in use says
    /// (the metrics' `consistency` label: nothing is looked up). Every part of a split keyspace has
    /// the same levels: its first part's are asked.
    func defaultLevels(of name: String) -> (read: ConsistencyLevel, write: ConsistencyLevel) {
        let route = topology.withLock { try? $0?.route(name, forKey: []) }
        return (
            route?.readLevel ?? configuration.readConsistency.level,
            route?.writeLevel ?? configuration.writeConsistency.level
        )
    }

    /// The metrics' `keyspace` label of an operation in keyspace `name`: the name when the map in use
    /// has that keyspace, else `unknown` (a caller's names must not grow the label set).
    func keyspaceLabel(_ name: String) -> String {
        // Every map has the default keyspace: no look-up for the common case.
        if name == Keyspace.defaultName { return name }
        let known = topology.withLock { topology in (try? topology?.route(name, forKey: [])) != nil }
        return known ? name : "unknown"
    }

    /// ` in keyspace 'NAME'` for an error about a key of `route`; nothing for the default keyspace.
    static func naming(_ route: KeyspaceRoute) -> String {
        route.id == Keyspace.defaultID ? "" : " in keyspace '\(route.name)'"
    }
}

extension KVClient.Topology {
    /// The route of the part of keyspace `name` that holds `key` (the map's own rule,
    /// `Keyspace.part(of:forKey:)`, on the parts indexed once per map); nil when this map has no such
    /// keyspace (or dropped it).
    ///
    /// - Throws: why that part of a keyspace of this map cannot be used (its rule makes no ring of the
    ///   nodes).
    func route(_ name: String, forKey key: [UInt8]) throws(KVClientError) -> KeyspaceRoute? {
        guard let part = Keyspace.part(of: parts[name] ?? [], forKey: key) else { return nil }
        return try routes[part.id]?.get()
    }
}
