import ArgumentParser
import KVSimulation

/// `kvsim`: runs the deterministic simulator, one seed or many.
@main
struct KVSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvsim",
        abstract: "Run whole simulated QuorumKV clusters under faults and check their invariants.",
        discussion: """
            Every run is a pure function of its seed: `kvsim --seed S --trace` replays a failure exactly
            and prints its event trace. `kvsim --seeds 100000` is the long run for developers' machines.
            Exit code 1 when any seed breaks an invariant.
            """
    )

    @Option(help: "Run this one seed.")
    var seed: UInt64?

    @Option(help: "Run this many seeds, starting at --start.")
    var seeds: UInt64 = 200

    @Option(help: "The first seed of a --seeds run.")
    var start: UInt64 = 1

    @Option(name: .customLong("operations"), help: "Operations per client (default 40).")
    var operationsPerClient: Int?

    @Option(help: "Distinct keys the clients write and read (few keys: more contention; default 4).")
    var keys: Int?

    @Option(help: "Replicas that must answer a read (default 2 of 3).")
    var readQuorum: Int?

    @Option(help: "Replicas that must acknowledge a write (default 2 of 3).")
    var writeQuorum: Int?

    @Flag(help: "Print the event trace of every run, not only of failing ones.")
    var trace = false

    @Flag(help: "A perfect network and no crashes (to tell logic bugs from fault handling).")
    var noFaults = false

    @Flag(help: "Break the write quorum on purpose (acknowledge at W-1) to see the invariants catch it.")
    var mutateAcknowledgeEarly = false

    @Flag(help: "Break hint replay on purpose (delete a hint when it is sent, before the ack).")
    var mutateDeleteHintsEarly = false

    @Flag(help: "Sloppy quorum: stored hints count toward W (the register check is skipped).")
    var sloppyQuorum = false

    @Flag(help: "No hinted handoff.")
    var noHints = false

    @Flag(help: "No anti-entropy pass (and no convergence check) at the end of each run.")
    var noAntiEntropy = false

    @Flag(help: "Break anti-entropy on purpose (push, never pull) to see the convergence check catch it.")
    var mutateAntiEntropyNeverPulls = false

    @Flag(
        help:
            "Nodes run anti-entropy during the run and purge confirmed tombstones older than 2 s (with a 500 ms hint window and clocks within 200 ms)."
    )
    var purgeTombstones = false

    @Flag(
        help:
            "A third of the puts carry a time to live of 0.1-3 s: reads find them expired by the reading client's clock, and with --purge-tombstones the replicas purge them as tombstones."
    )
    var expiringWrites = false

    @Flag(
        help:
            "Clients never delete: their writes are all puts (with --expiring-writes, only expired values are purged).")
    var noDeletes = false

    @Flag(
        help:
            "Break tombstone purge on purpose (purge after a pass that could not compare with every co-replica) to see the invariants catch it."
    )
    var mutatePurgeWithoutConfirmation = false

    @Flag(
        help:
            "Membership changes during the run: 4 of 6 nodes, then n5 joins, n2 leaves, n6 joins, n3 leaves, with ranges streamed, verified and dropped; clients refused with notReplica fetch the node's map and retry on a newer one. Once the membership settled, with faults off, a fresh client holding the first map (which fetches the current map at its start) and a sleeper holding a map several epochs old (which learns only from refusals) read and write every key, and each of those operations must succeed (hints off; --operations and --keys default to 200 and 12)."
    )
    var membership = false

    @Flag(help: "With --membership: no late clients after the changes.")
    var noLateClients = false

    @Flag(help: "Break membership on purpose: receivers report their ranges streamed without streaming them.")
    var mutateSwitchBeforeStream = false

    @Flag(help: "Break membership on purpose: during a change, writes go to the current ring only.")
    var mutateSingleRingWrites = false

    @Flag(help: "Break membership on purpose: clients never retry an operation on a newer map.")
    var mutateSkipNewerMapRetry = false

    @Option(help: "Hint window in simulated milliseconds (default 600000: nothing expires).")
    var hintWindow: UInt64?

    @Option(help: "Hints a node holds per target before it refuses more (default 1000).")
    var hintQueueMax: Int?

    @Flag(help: "Break hinted handoff on purpose: a hint refused for lack of room marks no range for repair.")
    var mutateRefusedHintsMarkNothing = false

    @Flag(
        help:
            "Nodes in zones with a placement rule that uses them, one of three by the seed: spread:3/1 over zones a, b, c; zones:a=2,b=1 over a, b, c; spread:3/1 over only a and b. Every key's replicas must keep the rule. With --membership the cluster starts on simple:3, the joins name their zones, and the operator switches to the rule after the first join."
    )
    var zones = false

    @Flag(help: "Break placement on purpose: rings take the first N nodes clockwise, ignoring zones.")
    var mutatePlacementIgnoresZones = false

    @Flag(
        help:
            "Keyspaces cache (simple:3, or N=nodes on fewer, levels one/one) and accounts (simple:5, or N=nodes on fewer, levels quorum/quorum) besides default; each operation picks one by the seed and uses its ring, N and levels; nodes serve each from its own store; every invariant is checked per keyspace, and a read must never return a value written in another keyspace. With --membership, every keyspace moves its own ranges on its own ring (transfers, admission, drops), a node reports its ranges streamed once every keyspace's are in, and the late clients read and write every key of every keyspace."
    )
    var keyspaces = false

    @Flag(help: "Break keyspaces on purpose: nodes serve every keyspace from the default keyspace's store.")
    var mutateKeyspacesShareDefaultStore = false

    @Flag(
        help:
            "Two rings: n1-n4 on the main ring, n5-n7 on ring east, and keyspace users (simple:3) split at key k5, the keys below on the main ring, the others on east; clients pick each key's part by their map, as the SDK does; every invariant is checked per part, and no node may hold a key in another part's store. With --membership: 7 of 9 nodes, then n8 joins east, users' first part moves from main to east, users changes its placement to simple:4, n9 joins main and n2 leaves it, all under traffic."
    )
    var rings = false

    @Flag(
        help:
            "Break membership on purpose: a receiving node reports its ranges streamed once the default keyspace's are in (runs with --membership --keyspaces --rings)."
    )
    var mutateReportAfterDefaultKeyspaceOnly = false

    func validate() throws {
        guard seeds > 0 else { throw ValidationError("--seeds must be positive") }
        guard (0...1_000_000).contains(hintQueueMax ?? 0) else {
            throw ValidationError("--hint-queue-max must be 0...1000000")
        }
        guard (1...100_000).contains(keys ?? 1) else { throw ValidationError("--keys must be 1...100000") }
        guard (1...10_000).contains(operationsPerClient ?? 1) else {
            throw ValidationError("--operations must be 1...10000")
        }
    }

    func run() throws {
        let range = seed.map { $0...$0 } ?? start...(start + seeds - 1)
        var failures: [UInt64] = []
        var operations = 0
        var hints = (stored: 0, replayed: 0, expired: 0, refused: 0)
        var antiEntropyKeys = 0
        var purged = 0
        var expiring = (acknowledged: 0, read: 0, purged: 0)
        var membershipTotals = (epochs: 0, streamed: 0, dropped: 0, retries: 0, mapWaits: 0, late: 0)
        for seed in range {
            var configuration = SimulationConfiguration(seed: seed)
            if membership || mutateSwitchBeforeStream || mutateSingleRingWrites || mutateSkipNewerMapRetry {
                configuration.membership()
            }
            if mutateReportAfterDefaultKeyspaceOnly {
                configuration.membership()
                configuration.keyspaces()
                configuration.mutation = .reportAfterDefaultKeyspaceOnly
            }
            // Before `zones()`, which names the zones of the joins `rings()` plans.
            if rings || mutateReportAfterDefaultKeyspaceOnly {
                configuration.rings()
            }
            if zones || mutatePlacementIgnoresZones {
                configuration.zones()
            }
            if mutatePlacementIgnoresZones {
                configuration.mutation = .placementIgnoresZones
            }
            if keyspaces || mutateKeyspacesShareDefaultStore {
                configuration.keyspaces()
            }
            if mutateKeyspacesShareDefaultStore {
                configuration.mutation = .keyspacesShareDefaultStore
            }
            if noLateClients {
                configuration.membershipProfile?.lateClients = false
            }
            if let operationsPerClient {
                configuration.operationsPerClient = operationsPerClient
            }
            if let keys {
                configuration.keys = keys
            }
            if noFaults {
                configuration.faults = .none
            }
            if mutateAcknowledgeEarly {
                configuration.mutation = .acknowledgeWritesEarly
            }
            if mutateDeleteHintsEarly {
                configuration.mutation = .deleteHintsBeforeAcknowledgement
            }
            if mutateAntiEntropyNeverPulls {
                configuration.mutation = .antiEntropyNeverPulls
            }
            if purgeTombstones || mutatePurgeWithoutConfirmation {
                configuration.purgeTombstones()
            }
            if expiringWrites {
                configuration.expiringWrites()
            }
            if noDeletes {
                configuration.deletes = false
            }
            if mutatePurgeWithoutConfirmation {
                configuration.mutation = .purgeWithoutConfirmation
            }
            configuration.antiEntropyAtEnd = !noAntiEntropy
            configuration.sloppyQuorum = sloppyQuorum
            configuration.hintedHandoff = configuration.hintedHandoff && !noHints
            if mutateSwitchBeforeStream {
                configuration.mutation = .switchBeforeStream
            }
            if mutateSingleRingWrites {
                configuration.mutation = .singleRingWrites
            }
            if mutateSkipNewerMapRetry {
                configuration.mutation = .skipNewerMapRetry
            }
            if let readQuorum {
                configuration.readQuorum = readQuorum
            }
            if let writeQuorum {
                configuration.writeQuorum = writeQuorum
            }
            if let hintWindow {
                configuration.hintWindow = .milliseconds(hintWindow)
            }
            if let hintQueueMax {
                configuration.hintQueueMax = hintQueueMax
            }
            if mutateRefusedHintsMarkNothing {
                configuration.mutation = .refusedHintMarksNothing
            }
            let result = Simulation(configuration: configuration).run()
            operations += result.operationsCompleted + result.operationsFailed
            hints.stored += result.hintsStored
            hints.replayed += result.hintsReplayed
            hints.expired += result.hintsExpired
            hints.refused += result.hintsRefused
            antiEntropyKeys += result.antiEntropyKeys
            purged += result.tombstonesPurged
            expiring.acknowledged += result.expiringWritesAcknowledged
            expiring.read += result.expiredReads
            expiring.purged += result.expiredValuesPurged
            membershipTotals.epochs += result.epochsChosen
            membershipTotals.streamed += result.keysStreamed
            membershipTotals.dropped += result.rangesDropped
            membershipTotals.retries += result.newerMapRetries
            membershipTotals.mapWaits += result.mapWaits
            membershipTotals.late += result.lateOperationsSucceeded
            if !result.passed {
                failures.append(seed)
                print(result.report)
            } else if trace {
                print(result.report)
            }
            if range.count > 1 && (seed - range.lowerBound + 1) % 1000 == 0 {
                print(
                    "kvsim: \(seed - range.lowerBound + 1) seeds, \(failures.count) failing, \(operations) operations")
            }
        }
        print(
            "kvsim: \(range.count) seed(s), \(operations) operations, hints stored/replayed/expired/refused \(hints.stored)/\(hints.replayed)/\(hints.expired)/\(hints.refused), keys moved by anti-entropy \(antiEntropyKeys), tombstones purged \(purged), expiring writes acknowledged/read expired/purged \(expiring.acknowledged)/\(expiring.read)/\(expiring.purged), epochs chosen/keys streamed/ranges dropped \(membershipTotals.epochs)/\(membershipTotals.streamed)/\(membershipTotals.dropped), newer-map retries \(membershipTotals.retries), writes that waited for a node's map \(membershipTotals.mapWaits), late-client operations \(membershipTotals.late), \(failures.count) failing\(failures.isEmpty ? "" : ": \(failures.prefix(20).map(String.init).joined(separator: " "))")"
        )
        if !failures.isEmpty {
            throw ExitCode(1)
        }
    }
}
