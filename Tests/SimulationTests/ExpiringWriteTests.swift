import KVCore
import Testing

@testable import KVSimulation

/// Writes with a time to live in the simulator (`SimulationConfiguration.expiringWrites()`): a third
/// of the puts expire within the run, and every invariant holds with them, the register check knowing
/// from when each may read as expired.
@Suite(.timeLimit(.minutes(5)))
struct ExpiringWriteTests {
    /// Under the usual faults (clocks up to 5 s apart), with times to live of 20–500 ms so that values
    /// expire between a run's operations: they expire on the replicas, through hints, read repair and
    /// the final anti-entropy pass, and reads find them expired by their own clock.
    @Test func expiringWritesKeepEveryInvariant() async {
        let results = await runsPassing(Array(1...8)) { seed in
            var configuration = SimulationConfiguration(seed: seed)
            configuration.expiringWrites()
            configuration.timeToLive = .milliseconds(20) ... .milliseconds(500)
            return configuration
        }
        #expect(results.map(\.expiringWritesAcknowledged).reduce(0, +) > 0, "the runs must write values that expire")
        #expect(results.map(\.expiredReads).reduce(0, +) > 0, "reads must find values expired")
    }

    /// With mid-run anti-entropy purging (clocks within 200 ms), and puts only on seeds 1…8 (no
    /// tombstone to purge): expired values are purged as tombstones are, no older value comes back,
    /// and a read never finds a value expired before the fastest clock of the run reached its expiry.
    @Test func purgedExpiredValuesNeverComeBack() async {
        let results = await runsPassing(Array(1...12)) { Self.purging(seed: $0, deletes: $0 > 8) }
        #expect(results.map(\.expiredValuesPurged).reduce(0, +) > 0, "the runs must purge expired values")
        #expect(results.map(\.expiredReads).reduce(0, +) > 0, "reads must find values expired")
    }

    /// `purgeTombstones()` with expiring writes, 16 keys and 150 operations a client.
    static func purging(seed: UInt64, deletes: Bool) -> SimulationConfiguration {
        var configuration = SimulationConfiguration(seed: seed)
        configuration.purgeTombstones()
        configuration.expiringWrites()
        configuration.deletes = deletes
        configuration.keys = 16
        configuration.operationsPerClient = 150
        return configuration
    }
}
