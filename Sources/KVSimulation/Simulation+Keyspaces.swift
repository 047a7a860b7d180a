import KVCore
import KVNode
import KVStorage

/// Keyspaces in the simulator (`SimulationConfiguration.keyspaces()`): the first map holds `cache` and
/// `accounts` beside `default`, created by the production `ClusterChange.createKeyspace`. Each keyspace's
/// ring is the map as the keyspace sees it (`ClusterMap.viewed(as:)`), its levels the keyspace's, and
/// a node serves each request from what the production `NodeKeyspaces` gives it for the keyspace.
/// The invariants look at the keyspaces' store views directly (`InMemoryStore.keyspace(_:)`), not
/// through `NodeKeyspaces`, so that a node serving a keyspace from the wrong store is noticed.
extension Simulation {
    /// The first map with the run's two extra keyspaces: `cache` (N=3, or every node on fewer, levels
    /// one/one) and `accounts` (N=5, or every node on fewer, levels quorum/quorum).
    static func creatingKeyspaces(in map: ClusterMap) -> ClusterMap {
        // Both live on the main ring (all the nodes, without `rings()`).
        let owners = map.nodes.count { $0.ring.isEmpty }
        let changes: [ClusterChange] = [
            .createKeyspace(
                "cache",
                KeyspaceSettings(placement: .simple(replicas: min(3, owners)), readLevel: .one, writeLevel: .one)),
            .createKeyspace(
                "accounts",
                KeyspaceSettings(
                    placement: .simple(replicas: min(5, owners)), readLevel: .quorum, writeLevel: .quorum)),
        ]
        var next = map
        for change in changes {
            do {
                next = try next.applying(change)
            } catch {
                preconditionFailure("the run's keyspaces do not fit the first map: \(error)")
            }
        }
        return next
    }

    /// The first map with `rings()`'s split keyspace `users` (`simple:3`, levels quorum/quorum): keys
    /// below `k5` on the main ring, the others on ring `east`.
    static func creatingSplitKeyspace(in map: ClusterMap) -> ClusterMap {
        let split = KeyspaceSplit(lowKey: SimulationConfiguration.usersSplitKey, ring: SimulationConfiguration.eastRing)
        do {
            return try map.applying(
                .createKeyspace(
                    SimulationConfiguration.usersKeyspace,
                    KeyspaceSettings(placement: .simple(replicas: 3), splits: [split])))
        } catch {
            preconditionFailure("the run's split keyspace does not fit the first map: \(error)")
        }
    }

    /// The keyspace names client operations pick from, by the seed (`default` alone without keyspaces
    /// or rings); a split keyspace's part is then the key's (`part(of:key:client:)`).
    var operationKeyspaceNames: [String] {
        [Keyspace.defaultName] + (configuration.runsKeyspaces ? ["cache", "accounts"] : [])
            + (configuration.runsRings ? [SimulationConfiguration.usersKeyspace] : [])
    }

    /// Whether values name their keyspace (or part): with keyspaces or rings.
    var valuesNameKeyspaces: Bool { configuration.runsKeyspaces || configuration.runsRings }

    /// The id of the part of keyspace `name` that holds `key`, by client `index`'s map (the fixed first
    /// map without membership), as the SDK picks it (`ClusterMap.keyspace(named:forKey:)`).
    func part(of name: String, key: [UInt8], client index: Int) -> UInt32 {
        let map = configuration.membershipProfile == nil ? membership.firstMap : membership.clients[index]
        guard let part = map.keyspace(named: name, forKey: key) else {
            preconditionFailure("epoch \(map.epoch) has no keyspace \(name) for \(KVSimulation.show(key))")
        }
        return part.id
    }

    /// Whether `key` belongs to keyspace `id` (to that part, for a split keyspace; parts never change in
    /// a run).
    func holds(_ id: UInt32, key: [UInt8]) -> Bool {
        id == Keyspace.defaultID || membership.latest.holds(keyspace(id), key: key)
    }

    /// At the end, with rings: no node holds a key in the store view of a part of a split keyspace that
    /// is not the key's (values never cross parts; within a part, `checkPlacementAtEnd` keeps them on
    /// the part's ring).
    func checkPartsHoldOnlyTheirKeys() {
        guard configuration.runsRings else { return }
        for keyspace in keyspaceIDs {
            for number in 0..<configuration.keys {
                let key = Array("k\(number)".utf8)
                guard !holds(keyspace, key: key) else { continue }
                for node in nodes.indices {
                    if let record = try? view(node, keyspace).get(key: key) {
                        violate(
                            "at the end \(nodes[node].id) holds \(describe(key, keyspace: keyspace)) at \(record.version), a key of another part"
                        )
                    }
                }
            }
        }
    }

    /// Node `index` serves its keyspaces with the production `NodeKeyspaces` over its store and its
    /// current replica (at the start and after each restart, as kvd builds it at its start).
    func serveKeyspaces(_ index: Int) {
        let keyspaces = NodeKeyspaces(root: nodes[index].store, replica: nodes[index].replica)
        keyspaces.servesEveryKeyspaceFromRoot = configuration.mutation == .keyspacesShareDefaultStore
        nodes[index].keyspaces = keyspaces
    }

    /// The ids of the run's keyspaces, the default first.
    var keyspaceIDs: [UInt32] { keyspaceIDs(of: membership.latest) }

    /// The ids of `map`'s keyspaces, the default first: the lanes a node moves ranges in, in the order
    /// `kvd`'s `RangeStreamer` takes them.
    func keyspaceIDs(of map: ClusterMap) -> [UInt32] {
        KeyspaceTransfers(map: map).keyspaces.map(\.id)
    }

    /// `map` as keyspace `id` sees it (the production `ClusterMap.viewed(as:)`): its rings, admission,
    /// movements and transfers are the keyspace's. The default keyspace sees the map itself.
    func viewed(_ map: ClusterMap, as id: UInt32) -> ClusterMap {
        guard let keyspace = map.keyspace(id: id) else {
            preconditionFailure("epoch \(map.epoch) has no keyspace \(id)")
        }
        return map.viewed(as: keyspace)
    }

    /// " in keyspace NAME" for the trace, empty for the default keyspace.
    func inKeyspace(_ id: UInt32) -> String {
        id == Keyspace.defaultID ? "" : " in keyspace \(partName(id))"
    }

    /// Keyspace `id` of the latest map.
    func keyspace(_ id: UInt32) -> Keyspace {
        guard let keyspace = membership.latest.keyspace(id: id) else {
            preconditionFailure("the run has no keyspace \(id)")
        }
        return keyspace
    }

    /// Keyspace `id`'s ring: the fixed ring for the default keyspace (with membership, the latest map's
    /// ring), otherwise the ring of the latest map as the keyspace sees it.
    func ring(ofKeyspace id: UInt32) -> Ring {
        guard id != Keyspace.defaultID else { return ring }
        return membership.ring(of: viewed(membership.latest, as: id))
    }

    /// Node `node`'s store of keyspace `id` as it truly is (for the invariants).
    func view(_ node: Int, _ id: UInt32) -> InMemoryStore {
        do {
            return try nodes[node].store.keyspace(id)
        } catch {
            preconditionFailure("\(nodes[node].id) has no view of keyspace \(id): \(error)")
        }
    }

    /// What node `node` serves keyspace `id` with (the production `NodeKeyspaces`), by its committed map.
    func served(_ node: Int, _ id: UInt32) -> NodeKeyspaces.Served {
        let map = membership.acceptors[node].committed
        do {
            guard let served = try nodes[node].keyspaces.served(id, in: map) else {
                preconditionFailure("\(nodes[node].id)'s map \(map.epoch) has no keyspace \(id)")
            }
            return served
        } catch {
            preconditionFailure("\(nodes[node].id) cannot serve keyspace \(id): \(error)")
        }
    }

    /// The level of a write in keyspace `id`: the configuration's for the default keyspace (the run
    /// names it on every call), the keyspace's own otherwise (as an SDK call that names none).
    func writeLevel(ofKeyspace id: UInt32) -> ConsistencyLevel {
        id == Keyspace.defaultID ? .count(configuration.writeQuorum) : keyspace(id).writeLevel
    }

    /// The level of a read in keyspace `id` asking `replicas` (as `writeLevel(ofKeyspace:)`).
    func readLevel(ofKeyspace id: UInt32, replicas: Int) -> ConsistencyLevel {
        id == Keyspace.defaultID ? .count(min(configuration.readQuorum, replicas)) : keyspace(id).readLevel
    }

    /// W of keyspace `id`: the acknowledgements its writes wait for.
    func writeQuorum(ofKeyspace id: UInt32) -> Int {
        let replicationFactor = ring(ofKeyspace: id).replicationFactor
        return (try? writeLevel(ofKeyspace: id).required(replicationFactor: replicationFactor)) ?? replicationFactor
    }

    /// R of keyspace `id`.
    func readQuorum(ofKeyspace id: UInt32) -> Int {
        let replicationFactor = ring(ofKeyspace: id).replicationFactor
        let level = readLevel(ofKeyspace: id, replicas: replicationFactor)
        return (try? level.required(replicationFactor: replicationFactor)) ?? replicationFactor
    }

    /// The key the history (and so the register check) knows `key` of keyspace `id` by: the same
    /// bytes in two keyspaces are two registers.
    func historyKey(_ key: [UInt8], keyspace id: UInt32) -> [UInt8] {
        id == Keyspace.defaultID ? key : Array("\(keyspace(id).name)/".utf8) + key
    }

    /// `key` for the trace, with its keyspace unless the default.
    func describe(_ key: [UInt8], keyspace id: UInt32) -> String {
        id == Keyspace.defaultID ? KVSimulation.show(key) : "\(partName(id))/\(KVSimulation.show(key))"
    }

    /// The prefix of every value written in keyspace `id` in a run with keyspaces.
    func valuePrefix(ofKeyspace id: UInt32) -> [UInt8] {
        Array("\(partName(id)):".utf8)
    }

    /// Keyspace `id`'s name, with `@LOWKEY` for a part of a split keyspace other than the first.
    func partName(_ id: UInt32) -> String {
        let keyspace = keyspace(id)
        return keyspace.lowKey.isEmpty ? keyspace.name : "\(keyspace.name)@\(Keyspace.describe(key: keyspace.lowKey))"
    }

    /// A value read in keyspace `id` must have been written in it: values name their keyspace.
    func checkValueKeyspace(_ value: [UInt8], read key: [UInt8], in id: UInt32, operation: Int) {
        guard valuesNameKeyspaces else { return }
        let prefix = valuePrefix(ofKeyspace: id)
        guard !value.starts(with: prefix) else { return }
        let writer = String(decoding: value.prefix { $0 != UInt8(ascii: ":") }, as: UTF8.self)
        violate(
            "op\(operation): a read of \(describe(key, keyspace: id)) returned \(String(decoding: value, as: UTF8.self)), written in keyspace '\(writer)'"
        )
    }
}
