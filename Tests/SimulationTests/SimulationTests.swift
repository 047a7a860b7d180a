import Foundation
import KVCore
import Testing

@testable import KVSimulation

/// Runs a batch of simulations on a thread of its own: they are seconds of synchronous work, and on
/// a 2-core machine they would otherwise hold the cooperative pool's threads and starve the async
/// tests running beside them (their timeouts then fire).
func offThePool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: body()) }
    }
}

/// Runs one simulation for each of `seeds` off the pool, each with the configuration `configure`
/// makes, and expects every run to pass (naming the first two failures); returns the results for the
/// test's own checks.
func runsPassing(
    _ seeds: [UInt64], sourceLocation: SourceLocation = #_sourceLocation,
    _ configure: @escaping @Sendable (UInt64) -> SimulationConfiguration
) async -> [SimulationResult] {
    let results = await offThePool { seeds.map { Simulation(configuration: configure($0)).run() } }
    let failing = results.filter { !$0.passed }.map(\.report)
    #expect(
        failing.isEmpty, "\(failing.count) failing seed(s):\n\(failing.prefix(2).joined(separator: "\n"))",
        sourceLocation: sourceLocation)
    return results
}

/// A run without the end-of-run anti-entropy pass, which costs more than the run itself:
/// `antiEntropyConvergesEveryReplica` covers it on seeds of its own.
func quick(_ seed: UInt64) -> SimulationConfiguration {
    var configuration = SimulationConfiguration(seed: seed)
    configuration.antiEntropyAtEnd = false
    return configuration
}

/// Seeds that once broke an invariant: each stays here as a regression test.
let regressionSeeds: [UInt64] = []

@Suite(.timeLimit(.minutes(5)))
struct SimulationTests {
    /// CI's share of the simulator: 200 seeded runs of whole clusters under faults.
    @Test func twoHundredSeedsKeepEveryInvariant() async {
        let failing = await offThePool {
            (UInt64(1)...200).compactMap { seed -> String? in
                let result = Simulation(configuration: quick(seed)).run()
                return result.passed ? nil : result.report
            }
        }
        #expect(failing.isEmpty, "\(failing.count) failing seed(s):\n\(failing.prefix(2).joined(separator: "\n"))")
    }

    /// Sloppy quorum (hints count toward W) and a short hint window (hints expire) under the same
    /// faults: acknowledged writes keep W copies (replicas or hints), hint queues drain, and every hint
    /// that did not expire reaches its target; with room for 2 hints per target, fallbacks refuse hints,
    /// and each refused or expired hint leaves a repair mark (`HintAdmission`, `RepairMarking`).
    @Test(arguments: [HintMode.sloppyQuorum, .shortHintWindow, .smallHintQueues])
    func hintModesKeepEveryInvariant(_ mode: HintMode) async {
        let results = await runsPassing(Array(1001...1030)) { seed in
            var configuration = quick(seed)
            switch mode {
            case .sloppyQuorum: configuration.sloppyQuorum = true
            case .shortHintWindow: configuration.hintWindow = .milliseconds(300)
            case .smallHintQueues: configuration.hintQueueMax = 2
            }
            return configuration
        }
        let stored = results.map(\.hintsStored).reduce(0, +)
        let expired = results.map(\.hintsExpired).reduce(0, +)
        #expect(stored > 0, "faults must make clients hand writes off")
        #expect((expired > 0) == (mode == .shortHintWindow), "\(expired) hints expired")
        let refused = results.map(\.hintsRefused).reduce(0, +)
        #expect((refused > 0) == (mode == .smallHintQueues), "\(refused) hints refused")
    }

    /// Anti-entropy at the end of each run, with no hints and 40 keys so that replicas that missed
    /// writes stay stale until it runs: afterwards every replica of every range holds the same data,
    /// and a second pass moves nothing. (`MutationCheckTests` checks that a comparison that never
    /// pulls is caught.)
    @Test func antiEntropyConvergesEveryReplica() async {
        @Sendable func configuration(_ seed: UInt64) -> SimulationConfiguration {
            var configuration = SimulationConfiguration(seed: seed)
            configuration.hintedHandoff = false
            configuration.keys = 40
            return configuration
        }
        let results = await runsPassing(Array(2001...2030), configuration)
        #expect(results.map(\.antiEntropyKeys).reduce(0, +) > 0, "anti-entropy must find stale replicas")
    }

    /// Nodes run anti-entropy during the run and purge confirmed tombstones (with a hint window and
    /// clock skew that make that safe), under crashes longer than the grace period: no purged delete
    /// comes back, and every other invariant holds with purged tombstones read as absent.
    @Test func purgedDeletesNeverComeBack() async {
        @Sendable func configuration(_ seed: UInt64) -> SimulationConfiguration {
            var configuration = SimulationConfiguration(seed: seed)
            configuration.purgeTombstones()
            configuration.keys = 16
            configuration.operationsPerClient = 150
            return configuration
        }
        // Seeds 1…12, and seeds that once broke the membership invariants: 165 (a receiver checked its
        // ranges with its source only), 195 (a node accepted a write made with a map older than the
        // change in progress) and 70164 (a node still receiving a range answered a read of it).
        let results = await runsPassing(Array(1...12) + [165, 195, 70164], configuration)
        #expect(results.map(\.tombstonesPurged).reduce(0, +) > 0, "the runs must purge tombstones")
    }

    /// Joins and leaves during the run (`SimulationConfiguration.membership()`), decided by the
    /// production map consensus over lossy messages, learned by gossip, with ranges streamed page by
    /// page, verified and dropped, while clients read and write under crashes, partitions and loss
    /// (retrying on newer maps): one map per epoch, the register property, W durable copies in the
    /// final ring, every change completed; then a fresh client from the first map and a sleeper from
    /// a map at least 2 epochs old read and write every key, all successfully.
    @Test func membershipChangesKeepEveryInvariant() async {
        @Sendable func configuration(_ seed: UInt64) -> SimulationConfiguration {
            var configuration = SimulationConfiguration(seed: seed)
            configuration.membership()
            configuration.antiEntropyAtEnd = false
            return configuration
        }
        // Seeds 1…12, and seeds that once broke the membership invariants: 165 (a receiver checked its
        // ranges with its source only), 195 (a node accepted a write made with a map older than the
        // change in progress) and 70164 (a node still receiving a range answered a read of it).
        let results = await runsPassing(Array(1...12) + [165, 195, 70164], configuration)
        // Four planned changes, each at least two epochs (the change, then the last `.streamed`).
        #expect(results.allSatisfy { $0.epochsChosen >= 8 }, "\(results.map(\.epochsChosen)) epochs chosen")
        #expect(results.map(\.keysStreamed).reduce(0, +) > 0, "receivers must stream records")
        #expect(results.map(\.rangesDropped).reduce(0, +) > 0, "old owners must drop ranges")
        #expect(results.map(\.newerMapRetries).reduce(0, +) > 0, "refused clients must retry on newer maps")
        #expect(
            results.map(\.mapWaits).reduce(0, +) > 0,
            "a write made with a later map than its node's must wait there for it, as in kvd")
        // The fresh client and the sleeper each read and write each of the 12 keys.
        #expect(
            results.allSatisfy { $0.lateOperationsSucceeded == 2 * 2 * 12 },
            "late-client operations: \(results.map(\.lateOperationsSucceeded))")
        #expect(results.allSatisfy { $0.sleeperLagEpochs >= 2 }, "sleeper lags: \(results.map(\.sleeperLagEpochs))")
        // Seed 70164 once found nodes answering reads of ranges they were still receiving. Since maps
        // need a majority's proof (issue 16) the runs take other paths, and no seed in 1...3000 (nor with
        // R=1, W=3) reaches that state again; `ReplicaAdmissionTests` keeps the rule itself.
    }

    /// Nodes in zones with a placement that uses them (`SimulationConfiguration.zones()`: by the seed,
    /// `spread:3/1` over three zones, `zones:a=2,b=1`, or `spread:3/1` over two zones), on fixed clusters
    /// and with membership (which starts on `simple:3` and switches to the rule after the first join,
    /// streaming ranges as for a change of N): every key's replicas keep the rule, no data settles on
    /// other nodes, and every other invariant holds. (`MutationCheckTests` checks that rings that ignore
    /// zones are caught.)
    @Test func zonesKeepThePlacementAndEveryInvariant() async {
        @Sendable func configuration(_ seed: UInt64, membership: Bool) -> SimulationConfiguration {
            var configuration = SimulationConfiguration(seed: seed)
            if membership {
                configuration.membership()
                configuration.antiEntropyAtEnd = false
            }
            configuration.zones()
            return configuration
        }
        // Each of the three rules three times on fixed clusters, and once with membership.
        let (fixed, changing) = await offThePool {
            (
                (UInt64(3001)...3009).map { Simulation(configuration: configuration($0, membership: false)).run() },
                (UInt64(3001)...3003).map { Simulation(configuration: configuration($0, membership: true)).run() }
            )
        }
        let failing = (fixed + changing).filter { !$0.passed }.map(\.report)
        #expect(failing.isEmpty, "\(failing.count) failing seed(s):\n\(failing.prefix(2).joined(separator: "\n"))")
        #expect(fixed.allSatisfy { $0.placement?.usesZones == true }, "\(fixed.map(\.placement))")
        // The operator's change of placement completed, with ranges streamed to their new replicas.
        #expect(changing.allSatisfy { $0.placement?.usesZones == true }, "\(changing.map(\.placement))")
        #expect(changing.map(\.keysStreamed).reduce(0, +) > 0, "receivers must stream records")
    }

    /// Keyspaces `cache` (N=3, one/one) and `accounts` (N=5 or every node, quorum/quorum) beside
    /// `default` (`SimulationConfiguration.keyspaces()`): operations pick a keyspace each and use its
    /// ring, N and levels; nodes serve each from its own store; every invariant holds per keyspace
    /// (acknowledged writes durable on the keyspace's W, registers where R+W>N, convergence after the
    /// end-of-run anti-entropy, placement), and no read returns a value written in another keyspace.
    /// Also with mid-run anti-entropy purging tombstones. (`MutationCheckTests` checks that nodes
    /// serving every keyspace from the default store are caught.)
    @Test func keyspacesKeepEveryInvariantPerKeyspace() async {
        let results = await runsPassing(Array(4001...4006)) { seed in
            var configuration = SimulationConfiguration(seed: seed)
            configuration.keyspaces()
            if seed == 4006 { configuration.purgeTombstones() }
            return configuration
        }
        // The same keys are written in every keyspace.
        for name in ["default", "cache", "accounts"] {
            #expect(results.allSatisfy { $0.acknowledgedWritesByKeyspace[name, default: 0] > 0 }, "\(name)")
        }
    }

    /// Keyspaces through joins and leaves (`membership()` with `keyspaces()`): each keyspace moves its
    /// own ranges on its own ring (a `RangeTransfer` per keyspace view, pages of that keyspace into its
    /// store, a node reporting streamed once every keyspace's ranges are in), old owners drop per
    /// keyspace, nodes admit by the keyspace's view: every invariant holds per keyspace, and the late
    /// clients read and write every key of every keyspace. (`MutationCheckTests` checks that switching
    /// ownership before streaming is caught with keyspaces on.)
    @Test func keyspacesThroughMembershipChanges() async {
        // Seeds 144 and 178 lose acknowledged writes of `accounts` when a node reports its ranges streamed
        // after the default keyspace's alone (checked by hand: 2 of seeds 141...180 catch it).
        let results = await runsPassing([144, 178] + Array(5001...5002)) { seed in
            var configuration = SimulationConfiguration(seed: seed)
            configuration.membership()
            configuration.keyspaces()
            configuration.antiEntropyAtEnd = false
            return configuration
        }
        #expect(results.allSatisfy { $0.epochsChosen >= 8 }, "\(results.map(\.epochsChosen)) epochs chosen")
        #expect(results.map(\.rangesDropped).reduce(0, +) > 0, "old owners must drop ranges")
        for name in ["default", "cache", "accounts"] {
            #expect(results.allSatisfy { $0.acknowledgedWritesByKeyspace[name, default: 0] > 0 }, "\(name) writes")
            #expect(
                results.map { $0.keysStreamedByKeyspace[name, default: 0] }.reduce(0, +) > 0,
                "receivers must stream records of \(name)")
        }
        // The fresh client and the sleeper each read and write each of the 12 keys of each keyspace.
        #expect(
            results.allSatisfy { $0.lateOperationsSucceeded == 2 * 2 * 12 * 3 },
            "late-client operations: \(results.map(\.lateOperationsSucceeded))")
    }

    /// Two rings and keyspace `users` split across them (`rings()`, with and without `keyspaces()`):
    /// clients pick each key's part, every invariant holds per part, and no node holds a key in
    /// another part's store.
    @Test func ringsKeepEveryInvariantPerPart() async {
        let results = await runsPassing(Array(6001...6004)) { seed in
            var configuration = SimulationConfiguration(seed: seed)
            if seed % 2 == 0 { configuration.keyspaces() }
            configuration.rings()
            return configuration
        }
        for name in ["default", "users", "users@k5"] {
            #expect(
                results.map { $0.acknowledgedWritesByKeyspace[name, default: 0] }.reduce(0, +) > 0,
                "\(name) writes: \(results.map(\.acknowledgedWritesByKeyspace))")
        }
    }

    /// Rings through membership changes with keyspaces (`membership()`, `keyspaces()`, `rings()`): a join
    /// to each ring, a part of `users` moving from the main ring to `east` and a placement change of
    /// `users`, under traffic; every invariant holds per part, and the late clients read and write
    /// every key of every part.
    @Test func ringsThroughMembershipChanges() async {
        // 169: a client asleep through a placement change must not be acknowledged below the new W.
        let results = await runsPassing([7001, 7002, 169]) { seed in
            var configuration = SimulationConfiguration(seed: seed)
            configuration.membership()
            configuration.keyspaces()
            configuration.rings()
            configuration.antiEntropyAtEnd = false
            return configuration
        }
        #expect(results.allSatisfy { $0.epochsChosen >= 10 }, "\(results.map(\.epochsChosen)) epochs chosen")
        for name in ["default", "cache", "accounts", "users", "users@k5"] {
            #expect(results.allSatisfy { $0.acknowledgedWritesByKeyspace[name, default: 0] > 0 }, "\(name) writes")
        }
        // The first part moves to `east`; n8 joining `east` receives the second.
        for name in ["users", "users@k5"] {
            #expect(
                results.map { $0.keysStreamedByKeyspace[name, default: 0] }.reduce(0, +) > 0,
                "receivers must stream records of \(name)")
        }
        // The fresh client and the sleeper each read and write each of the 12 keys of each keyspace
        // (`users`' keys split between its parts).
        #expect(
            results.allSatisfy { $0.lateOperationsSucceeded == 2 * 2 * 12 * 4 },
            "late-client operations: \(results.map(\.lateOperationsSucceeded))")
    }

    /// The placement invariant's predicate accepts every preference list the production `Ring` builds,
    /// over node counts, zone layouts and rules, and rejects lists of a ring that ignores zones (the
    /// `simple` rule's, on the same nodes): it states the rule, and does not fit only the seeds' rings.
    @Test func thePlacementPredicateAcceptsEveryProductionList() throws {
        let layouts: [[String]] = [["a", "b", "c"], ["a", "b"], ["a", "a", "b"], ["a", "b", "c", "c"]]
        let rules: [Placement] = [
            .simple(replicas: 3), .spread(replicas: 3, perZone: 1), .spread(replicas: 3, perZone: 2),
            .spread(replicas: 4, perZone: 1), .zones(["a": 2, "b": 1]), .zones(["b": 1, "c": 1]),
        ]
        var rejected = 0
        for nodeCount in [4, 5, 7] {
            let allocated = TokenAllocator.allocate(nodeIDs: (1...nodeCount).map { "n\($0)" })
            for layout in layouts {
                let nodes = allocated.enumerated().map {
                    RingNode(id: $1.id, tokens: $1.tokens, zone: layout[$0 % layout.count])
                }
                for rule in rules {
                    guard let ring = try? Ring(nodes: nodes, placement: rule) else { continue }
                    let simple = try Ring(nodes: nodes, placement: .simple(replicas: rule.replicationFactor))
                    for token in ring.tokens.map(Token.init) {
                        let list = ring.preferenceList(for: token)
                        #expect(
                            Simulation.placementBreak(list, in: ring) == nil,
                            "\(rule), \(nodeCount) nodes in \(layout): \(list)")
                        if Simulation.placementBreak(simple.preferenceList(for: token), in: ring) != nil {
                            rejected += 1
                        }
                    }
                }
            }
        }
        #expect(rejected > 0)
    }

    enum HintMode: CustomStringConvertible {
        case sloppyQuorum, shortHintWindow, smallHintQueues
        var description: String {
            switch self {
            case .sloppyQuorum: "sloppy quorum"
            case .shortHintWindow: "300 ms hint window"
            case .smallHintQueues: "2 hints per target"
            }
        }
    }

    @Test(arguments: regressionSeeds)
    func regressionSeedStaysFixed(_ seed: UInt64) {
        let result = Simulation(configuration: SimulationConfiguration(seed: seed)).run()
        #expect(result.passed, "\(result.report)")
    }

    @Test func aRunIsAPureFunctionOfItsSeed() {
        let first = Simulation(configuration: SimulationConfiguration(seed: 4242)).run()
        let second = Simulation(configuration: SimulationConfiguration(seed: 4242)).run()
        #expect(first.trace == second.trace)
        #expect(first.operationsCompleted == second.operationsCompleted)
        #expect(first.messagesSent == second.messagesSent)
    }

    @Test func faultsActuallyHappen() async {
        let results = await offThePool {
            (UInt64(1)...20).map { Simulation(configuration: quick($0)).run() }
        }
        let crashes = results.map(\.crashes).reduce(0, +)
        let partitions = results.map(\.partitions).reduce(0, +)
        let failed = results.map(\.operationsFailed).reduce(0, +)
        let repairs = results.map(\.repairs).reduce(0, +)
        let hintsReplayed = results.map(\.hintsReplayed).reduce(0, +)
        #expect(crashes > 0)
        #expect(partitions > 0)
        #expect(repairs > 0, "reads must find and repair stale replicas")
        #expect(hintsReplayed > 0, "replicas that miss writes must get them back through hints")
        #expect(failed > 0, "with faults, some operations must fail, or the simulator is not testing failure")
    }
}
