public import KVCore

/// What one simulated run looks like. Everything not fixed here is drawn from the seed.
public struct SimulationConfiguration: Sendable {
    public var seed: UInt64
    /// Replica nodes; nil draws 4...8 from the seed.
    public var nodes: Int?
    /// SDK clients; nil draws 2...4 from the seed.
    public var clients: Int?
    /// N of the `simple` rule used when `placement` is nil (at most the number of nodes).
    public var replicationFactor = 3
    /// How the ring chooses each key's replicas (`Placement`); nil: `simple` with `replicationFactor`.
    public var placement: Placement?
    /// Zone names given to the nodes round-robin: n1 gets the first, n2 the second, and so on, starting
    /// over when the list runs out (so a list as long as the nodes names each node's zone). Empty: no
    /// zones. Joins of a membership profile name their zones themselves (`zones()` does).
    public var nodeZones: [String] = []
    public var readQuorum = 2
    public var writeQuorum = 2
    /// Operations each client runs, one after another.
    public var operationsPerClient = 40
    /// Distinct keys: few, so that clients contend.
    public var keys = 4
    /// Each request's deadline, in simulated time.
    public var requestDeadline: Duration = .milliseconds(400)
    public var supersededRetriesMax = 8
    /// Clients hand writes that replicas miss to fallback nodes, which replay them.
    public var hintedHandoff = true
    /// Hints count toward W (sloppy quorum). The register check is skipped then: a quorum read may
    /// miss a write acknowledged through hints until they are replayed, by design.
    public var sloppyQuorum = false
    /// Hints a node holds per target before it refuses more.
    public var hintQueueMax = 1_000
    /// Hints older than this (simulated time, by the holder's clock) are dropped unreplayed and counted.
    public var hintWindow: Duration = .seconds(600)
    /// How often each node starts a replay round per target, and how many hints a round takes.
    public var replayInterval: Duration = .milliseconds(200)
    public var replayBatch = 64
    public var replayConcurrency = 8
    /// At the end, with every node back, co-replicas compare Merkle trees and exchange what differs;
    /// then every replica of every range must hold the same data.
    public var antiEntropyAtEnd = true
    /// During the run, how often each node compares the ranges it replicates with their co-replicas
    /// (only when all of them are up, as a node's sessions fail otherwise); nil: only at the end.
    public var antiEntropyEvery: Duration?
    /// With mid-run anti-entropy, tombstones older than this (by the comparing node's clock) are purged
    /// after their range was compared with every co-replica; nil: never purged. Must exceed the hint
    /// window plus the request deadline and twice the clock skew.
    public var tombstoneGrace: Duration?
    /// Clients delete keys (8 % of their operations); false: their writes are all puts (so that only
    /// expired values, no tombstones, are purged).
    public var deletes = true
    /// The share of puts written with a time to live (`expiringWrites()`); 0: none, and nothing is
    /// drawn for it, so runs without it draw as before.
    public var expiringShare = 0.0
    /// The time to live of an expiring put, uniformly drawn in whole simulated milliseconds.
    public var timeToLive: ClosedRange<Duration> = .milliseconds(100) ... .seconds(3)
    /// Keyspaces `cache` and `accounts` created beside `default` before the run (`keyspaces()`); each
    /// client operation picks one of the three by the seed.
    public var runsKeyspaces = false
    /// Two rings and the split keyspace `users` (`rings()`): nodes n5…n8 are on ring `east`, the others
    /// on the main ring.
    public var runsRings = false
    /// Membership changes during the run (`membership()`): nil for a fixed cluster.
    public var membershipProfile: MembershipProfile?
    public var faults = FaultProfile()
    /// Test-only: break a production rule to prove the invariants notice (the "mutation check").
    package var mutation: Mutation?
    /// Events kept for the trace printed when a run fails.
    public var traceCapacity = 4000

    public init(seed: UInt64) {
        self.seed = seed
    }

    /// Mid-run anti-entropy (every 300 simulated ms per node) purging tombstones older than 2 s, with
    /// what makes that safe: a 500 ms hint window and clocks within 200 ms of true time, so that no
    /// hint or request older than a purged tombstone is still in flight (500 + 400 + 2 × 200 < 2,000).
    /// Nodes stay down up to 3 s, past the grace period.
    public mutating func purgeTombstones() {
        antiEntropyEvery = .milliseconds(300)
        tombstoneGrace = .seconds(2)
        hintWindow = .milliseconds(500)
        faults.clockSkewMax = .milliseconds(200)
        faults.clockDriftMaxPPM = 1_000
        faults.down = .milliseconds(50) ... .seconds(3)
    }

    /// A third of the puts written with a time to live of 0.1–3 s (simulated), with the expiry the SDK
    /// gives them (`StoredRecord.expiry(of:timeToLive:)`): reads find them expired by the SDK's rule
    /// (`ReadResult.live(atMillis:)`, by the reading client's clock); hints, read repair and
    /// anti-entropy copy them with their expiry; with `purgeTombstones()` the replicas purge them as
    /// they purge tombstones (`TombstonePolicy.isPurgeable`), and an older value must not come back.
    /// The register check knows from when each may read as expired (`HistoryOperation.expiresAt`):
    /// once the fastest clock the run may have reaches its expiry.
    public mutating func expiringWrites() {
        expiringShare = 0.3
    }

    /// Nodes in zones, with a placement that uses them, one of three by the seed: `spread:3/1` over
    /// zones a, b and c (one replica per zone); `zones:a=2,b=1` over a, b and c (c's nodes never hold a
    /// replica); `spread:3/1` over only a and b (too few zones: every list takes its third replica from a
    /// zone that already has one). Every key's replicas must keep the rule (`checkPlacement`).
    ///
    /// After `membership()`, the cluster starts on `simple:3` with its nodes already in zones; the joins
    /// name their nodes' zones, and the operator switches to the seed's rule after the first join (its
    /// ranges are streamed as for a change of N).
    public mutating func zones() {
        let rule: Placement
        switch seed % 3 {
        case 0:
            nodeZones = ["a", "b", "c"]
            rule = .spread(replicas: 3, perZone: 1)
        case 1:
            nodeZones = ["a", "b", "c"]
            rule = .zones(["a": 2, "b": 1])
        default:
            nodeZones = ["a", "b"]
            rule = .spread(replicas: 3, perZone: 1)
        }
        guard var profile = membershipProfile else {
            placement = rule
            return
        }
        profile.changes = profile.changes.map { change in
            guard case .join(let node, let address, let tokensPerNode, _, let ring) = change else { return change }
            return .join(
                node: node, address: address, tokensPerNode: tokensPerNode, zone: zone(ofNode: node), ring: ring)
        }
        let firstJoin = profile.changes.firstIndex { if case .join = $0 { true } else { false } }
        profile.changes.insert(.setPlacement(rule), at: firstJoin.map { $0 + 1 } ?? 0)
        membershipProfile = profile
    }

    /// Two keyspaces besides `default`, created in the first map by the production `createKeyspace`
    /// change: `cache` (`simple:3`, or N=nodes on fewer, levels one/one) and `accounts` (`simple:5`, or
    /// N=nodes on fewer, levels quorum/quorum). Client operations pick a keyspace each (by the seed) and
    /// use its ring, N and levels as the SDK does; nodes serve each from the keyspace's store view
    /// (`NodeKeyspaces`); hints, read repair and anti-entropy run per keyspace; every invariant is
    /// checked per keyspace, and the same keys are written in every keyspace, each value naming its
    /// keyspace, so that a read never returns another keyspace's value. With membership changes, each
    /// keyspace moves its own ranges on its own ring, as `kvd`'s range-streamer lanes do
    /// (`Simulation+Transfers.swift`), nodes admit requests by the keyspace's view of their map, and the
    /// late clients read and write every key of every keyspace.
    public mutating func keyspaces() {
        runsKeyspaces = true
    }

    /// Two rings: n1…n4 (and n9) on the main ring, n5…n8 on ring `east` (7 nodes and at least 12 keys,
    /// or 9 nodes with membership); besides the keyspaces of `keyspaces()`, keyspace `users` (`simple:3`, levels
    /// quorum/quorum) is split at key `k5` (`usersSplitKey`): keys below on the main ring, the others on
    /// `east`. Clients pick the part of each key as the SDK does (`ClusterMap.keyspace(named:forKey:)`),
    /// and each part is a keyspace of its own to the nodes (its id, store view, ring and transfers).
    ///
    /// After `membership()` (call it before `zones()`), 7 of the 9 nodes start as members and the
    /// operator makes, one at a time under traffic: n8 join `east` (receiving `users` from `k5`), the
    /// first part of `users` move from the main ring to `east` (`moveKeyspaceRange`), `users` change its
    /// placement to `simple:4` (`alterKeyspace`, streamed as a pending placement), n9 join the main
    /// ring and n2 leave it (in that order: `accounts` needs 4 nodes there).
    public mutating func rings() {
        runsRings = true
        guard var profile = membershipProfile else {
            nodes = 7
            // k0…k11: keys on both sides of the split (k0…k4 and k10, k11 below `k5`).
            keys = max(keys, 12)
            return
        }
        nodes = 9
        profile.initialMembers = 7
        let tokensPerNode = MembershipProfile.tokensPerNode
        profile.changes = [
            .join(node: "n8", address: "10.0.0.8:7000", tokensPerNode: tokensPerNode, ring: ring(ofNode: "n8")),
            .moveKeyspaceRange(Self.usersKeyspace, lowKey: [], ring: Self.eastRing),
            .alterKeyspace(Self.usersKeyspace, KeyspaceSettings(placement: .simple(replicas: 4))),
            .join(node: "n9", address: "10.0.0.9:7000", tokensPerNode: tokensPerNode, ring: ring(ofNode: "n9")),
            .leave(node: "n2"),
        ]
        membershipProfile = profile
    }

    /// The split keyspace of `rings()`, and the lowest key of its second part.
    public static let usersKeyspace = "users"
    public static let usersSplitKey = Array("k5".utf8)
    /// The second ring of `rings()`.
    public static let eastRing = "east"

    /// The ring of node `id` (`n1`, `n2`, …): `east` for n5…n8 with `rings()`, else the main ring.
    public func ring(ofNode id: String) -> String {
        guard runsRings, let number = Int(id.dropFirst()), (5...8).contains(number) else { return "" }
        return Self.eastRing
    }

    /// The zone of node `id` (`n1`, `n2`, …) by `nodeZones`; empty without zones.
    public func zone(ofNode id: String) -> String {
        guard !nodeZones.isEmpty, let number = Int(id.dropFirst()), number >= 1 else { return "" }
        return nodeZones[(number - 1) % nodeZones.count]
    }

    /// Joins and leaves while clients read and write under the usual faults: the cluster starts with 4
    /// of 6 nodes (N=3), then n5 joins, n2 leaves, n6 joins and n3 leaves, one change at a time, each
    /// decided by `MapProposer`/`MapAcceptor` messages, learned by gossip, its ranges streamed, verified
    /// and dropped. Clients refused with `notReplica` fetch the refusing node's map and retry on a
    /// newer map (`NewerMapRetry`). Once the membership settled, the late clients (a fresh one from the
    /// first map, a sleeper from an early one) read and write every key, and must succeed
    /// (`MembershipProfile.lateClients`). Hinted handoff is off (hints across ring changes are not
    /// modelled yet).
    public mutating func membership() {
        nodes = 6
        operationsPerClient = 200
        keys = 12
        hintedHandoff = false
        membershipProfile = MembershipProfile()
    }
}

/// How a membership run goes: which nodes start as members, the changes the operator makes, and how
/// fast maps spread.
public struct MembershipProfile: Sendable, Hashable {
    /// Nodes in the first map (`n1`...); the others exist but are not members yet.
    public var initialMembers = 4
    /// The changes the simulated operator makes, in order, each once the previous one completed.
    public var changes: [ClusterChange] = [
        .join(node: "n5", address: "10.0.0.5:7000", tokensPerNode: tokensPerNode),
        .leave(node: "n2"),
        .join(node: "n6", address: "10.0.0.6:7000", tokensPerNode: tokensPerNode),
        .leave(node: "n3"),
    ]
    /// How often each node pings every peer of its map with its epoch (and fetches a later map).
    public var nodeGossip: Duration = .milliseconds(300)
    /// How often each client pings one node of its map with its epoch.
    public var clientGossip: Duration = .milliseconds(300)
    /// How often a node looks at its map for ranges to receive or drop.
    public var streamTick: Duration = .milliseconds(50)
    /// Records per streamed page (small, so that ranges take several pages).
    public var pageRecordsMax = 3
    /// How often the operator looks whether it can start its next change.
    public var operatorTick: Duration = .milliseconds(250)
    /// Once clients are done, the change in progress has this long (simulated) to complete.
    public var settle: Duration = .seconds(30)
    /// Once the membership settled, with faults off, a fresh client holding the first map (which
    /// fetches the current map at its start, as the SDK does) and a sleeper holding a map several
    /// epochs old (which learns only from refusals) read and write every key; each of their
    /// operations must succeed (`Simulation+LateClients.swift`).
    public var lateClients = true

    public static let tokensPerNode = 8

    public init() {}
}

/// How hostile the simulated world is.
public struct FaultProfile: Sendable, Hashable {
    /// One-way message delay, uniformly drawn in whole simulated milliseconds.
    public var delay: ClosedRange<Duration> = .milliseconds(1) ... .milliseconds(40)
    public var dropProbability = 0.02
    public var duplicateProbability = 0.02
    /// Mean simulated time between node crashes (each node restarts after a time drawn from `down`);
    /// zero: no crashes.
    public var crashEvery: Duration = .milliseconds(1500)
    /// How long a crashed node stays down, uniformly drawn in whole simulated milliseconds.
    public var down: ClosedRange<Duration> = .milliseconds(50) ... .milliseconds(800)
    /// Mean simulated time between partitions (each heals after a time drawn from `partition`); zero:
    /// no partitions.
    public var partitionEvery: Duration = .seconds(2)
    /// How long a partition lasts, uniformly drawn in whole simulated milliseconds.
    public var partition: ClosedRange<Duration> = .milliseconds(50) ... .milliseconds(600)
    /// Largest clock offset of a node or client from true time, either way (whole milliseconds).
    public var clockSkewMax: Duration = .seconds(5)
    /// Largest clock drift of a node or client, in parts per million, either way: a clock at
    /// +20,000 ppm runs 2 % fast.
    public var clockDriftMaxPPM: Int64 = 20_000
    /// Chance that a client's clock jumps backwards (by up to the skew) before an operation; a
    /// restarted node's clock always may (by up to the skew).
    public var backwardsJumpProbability = 0.03

    public init() {}

    /// No faults: a perfect network, no crashes, synchronized clocks.
    public static var none: FaultProfile {
        var profile = FaultProfile()
        profile.dropProbability = 0
        profile.duplicateProbability = 0
        profile.crashEvery = .zero
        profile.partitionEvery = .zero
        profile.clockSkewMax = .zero
        profile.clockDriftMaxPPM = 0
        profile.backwardsJumpProbability = 0
        return profile
    }
}

/// What a run found.
public struct SimulationResult: Sendable {
    public var seed: UInt64
    /// Broken invariants, each one line (plus the offending sub-history for history violations).
    public var violations: [String]
    /// The last events of the run, for replaying a failure by eye.
    public var trace: [String]
    public var operationsCompleted: Int
    public var operationsFailed: Int
    public var messagesSent: Int
    public var crashes: Int
    public var partitions: Int
    /// Read-repair writes sent to stale replicas.
    public var repairs: Int
    /// Hints stored by fallbacks, replayed to their targets, and expired unreplayed.
    public var hintsStored: Int
    public var hintsReplayed: Int
    public var hintsExpired: Int
    /// Hints fallbacks refused for lack of room (each marks its range for anti-entropy).
    public var hintsRefused = 0
    /// Keys anti-entropy moved (pushed plus pulled).
    public var antiEntropyKeys: Int
    /// Tombstones purged during the run, expired values included.
    public var tombstonesPurged: Int
    /// Expired values purged during the run (`expiringWrites()`), among `tombstonesPurged`.
    public var expiredValuesPurged = 0
    /// Acknowledged writes with a time to live, and reads that found the newest version expired.
    public var expiringWritesAcknowledged = 0
    public var expiredReads = 0
    /// Membership: epochs chosen, records received by streaming, and ranges dropped by old owners.
    public var epochsChosen = 0
    public var keysStreamed = 0
    public var rangesDropped = 0
    /// Operations tried again on a newer map (`NewerMapRetry`).
    public var newerMapRetries = 0
    /// Client writes that waited at a node for the later map they were made with.
    public var mapWaits = 0
    /// Membership: the late clients' operations, every one of which succeeded when the run passed.
    public var lateOperationsSucceeded = 0
    /// Membership: how many epochs the sleeper's map was behind the final map when it woke.
    public var sleeperLagEpochs = 0
    /// The rule of the final ring (with membership, of the latest map).
    public var placement: Placement?
    /// Acknowledged writes per keyspace name (`default` alone without keyspaces).
    public var acknowledgedWritesByKeyspace: [String: Int] = [:]
    /// Membership: records received by streaming per keyspace name.
    public var keysStreamedByKeyspace: [String: Int] = [:]

    public var passed: Bool { violations.isEmpty }

    /// A report for a failing run: seed, violations and trace.
    public var report: String {
        var lines = ["seed \(seed): \(violations.count) violation(s); replay with: kvsim --seed \(seed) --trace"]
        lines += violations.map { "  - " + $0 }
        lines.append("trace (last \(trace.count) events):")
        lines += trace.map { "    " + $0 }
        return lines.joined(separator: "\n")
    }
}
