import KVCluster
import KVCore

/// Clients that start after the changes (`MembershipProfile.lateClients`): once the main run's clients
/// are done and the membership settled, with the faults off (every node up, no drops, duplicates,
/// crashes or partitions), two new clients read and then write every key (of every keyspace):
///
/// - `fresh` holds the run's first map (epoch 1), as one built from an old cluster file, and like the
///   SDK fetches the current map from one of its nodes before its first operation;
/// - `sleeper` holds the map client c1 had when the operator proposed its first change (the first map
///   too, with the default profile: the most epochs behind), never fetches at its start and never
///   gossips: it learns newer maps only from `notReplica` refusals, and gets there through
///   `NewerMapRetry` (its first operation usually needs a retry).
///
/// Every one of their operations must succeed (a failure is a violation), and they are in the history
/// like every other operation, so the register check covers them.
extension Simulation {
    /// What the late clients' random stream is seeded with, xored with the run's seed: the main run
    /// drew from its own stream, which is left as it was.
    static let lateClientsSalt: UInt64 = 0x4C41_5445_434C_4E54

    /// Runs the late clients to the end; nothing when the membership did not settle (a violation
    /// already) or late clients are off.
    func runLateClients() {
        guard membership.quiet, !membership.settleFailed else { return }
        assert(nodes.allSatisfy(\.isUp) && blocked.isEmpty, "a node is down or cut off after the run")
        var none = FaultProfile.none
        none.delay = configuration.faults.delay
        faults = none
        random = SplitMix64(seed: configuration.seed ^ Self.lateClientsSalt)
        let first = membership.firstMap
        let slept = membership.sleeperMap ?? first
        statistics.sleeperLagEpochs = Int(membership.latest.epoch - slept.epoch)
        log(
            "late clients start at epoch \(membership.latest.epoch), faults off: fresh from epoch \(first.epoch), sleeper from epoch \(slept.epoch)"
        )
        let fresh = addLateClient("fresh", map: first)
        let sleeper = addLateClient("sleeper", map: slept)
        let known = first.nodes.map(\.id)
        clients[fresh].awaitsFirstMap = true
        noticeEpoch(.max, ofClient: fresh, from: nodeIndex(known[Int(random.next() % UInt64(known.count))]))
        queue.push(.startOperation(client: sleeper), at: now + random.next() % 20)
        _ = runEvents()
    }

    /// A client holding `map` that reads and then writes each key of each keyspace, with a writer id of
    /// its own. The keys come in a random order: the rings are the same in every run, so a fixed order
    /// would always begin with the same key, whose replicas may have barely changed.
    func addLateClient(_ name: String, map: ClusterMap) -> Int {
        let index = clients.count
        // Each part of a split keyspace with its own keys (parts never change in a run).
        let keys = keyspaceIDs.flatMap { keyspace in
            (0..<configuration.keys).filter { holds(keyspace, key: Array("k\($0)".utf8)) }.map { (keyspace, $0) }
        }
        var client = SimulatedClient(
            name: name, clock: ClientClock(writer: UInt64(index + 1)), skewMillis: 0, driftPPM: 0,
            remaining: 2 * keys.count)
        var order = Array(keys.indices)
        for position in order.indices.reversed() {
            order.swapAt(position, Int(random.next() % UInt64(position + 1)))
        }
        client.script = order.map { keys[$0] }.flatMap {
            keyspace, number -> [(keyspace: UInt32, operation: PlannedOperation)] in
            let key = Array("k\(number)".utf8)
            // With keyspaces, a value names its keyspace (`checkValueKeyspace`).
            let prefix = valuesNameKeyspaces ? valuePrefix(ofKeyspace: keyspace) : []
            return [
                (keyspace, .read(key: key, repair: random.chance(0.3) ? .blocking : .background)),
                (keyspace, .write(key: key, tombstone: false, value: prefix + Array("\(name)-k\(number)".utf8))),
            ]
        }
        client.late = LateClient(startEpoch: map.epoch)
        clients.append(client)
        membership.clients.append(map)
        membership.clientFollowers.append(MapFollowing())
        membership.clientFetches.append(0)
        return index
    }
}

/// What the invariants know of a late client.
struct LateClient {
    /// The epoch of the map it started with.
    var startEpoch: UInt64
}
