import KVCluster
import KVCore
import Synchronization
import Testing

@Suite struct PeerHealthTableTests {
    /// A clock the test moves.
    final class Clock: Sendable {
        let millis = Atomic<UInt64>(1_000_000)
        func advance(_ by: UInt64) { millis.add(by, ordering: .relaxed) }
        var now: UInt64 { millis.load(ordering: .relaxed) }
    }

    func table(_ clock: Clock) -> PeerHealthTable {
        PeerHealthTable(configuration: PhiAccrualDetector.Configuration()) { clock.now }
    }

    /// A table that heard from each of `nodes` every second for 20 s: none is suspected.
    func trusted(_ nodes: [String], _ clock: Clock) -> PeerHealthTable {
        let health = table(clock)
        health.watch(nodes)
        for _ in 0..<20 {
            clock.advance(1_000)
            for node in nodes { health.heartbeat(node) }
        }
        return health
    }

    /// Every node answers each second; then n2 falls silent: after a long silence it is suspected, and
    /// ordering moves it to the end, the others keeping their order.
    @Test func aSilentNodeIsSuspectedAndAskedLast() {
        let clock = Clock()
        let health = trusted(["n1", "n2", "n3"], clock)
        #expect(health.suspected().isEmpty)
        #expect(health.healthyFirst(["n2", "n3", "n1"]) == ["n2", "n3", "n1"])
        for _ in 0..<30 {
            clock.advance(1_000)
            for node in ["n1", "n3"] { health.heartbeat(node) }
        }
        #expect(health.suspected() == ["n2"])
        #expect(health.isSuspected("n2"))
        #expect(!health.isSuspected("n1"))
        #expect(health.healthyFirst(["n2", "n3", "n1"]) == ["n3", "n1", "n2"])
        #expect(health.phi()["n2"]! > health.phi()["n1"]!)
    }

    /// Issue 21: a node the caller knows it cannot reach now (a refused connection in its backoff
    /// window) goes last too, before the detector suspects it; the others keep their order.
    @Test func anUnreachableNodeIsAskedLastBeforeItIsSuspected() {
        let clock = Clock()
        let health = trusted(["n1", "n2", "n3"], clock)
        #expect(health.suspected().isEmpty)
        #expect(health.healthyFirst(["n2", "n3", "n1"]) { $0 == "n2" } == ["n3", "n1", "n2"])
        #expect(health.healthyFirst(["n2", "n3", "n1"]) { $0 == "n4" } == ["n2", "n3", "n1"])
        #expect(health.healthyFirst(["n1", "n2", "n3"]) { $0 != "n3" } == ["n3", "n1", "n2"])
    }

    /// A watched node that never answers is suspected in time; an unknown one never is, until it is
    /// heard from; forgetting drops the nodes that left.
    @Test func watchingForgettingAndUnknownNodes() {
        let clock = Clock()
        let health = table(clock)
        health.watch(["n1", "n2"])
        clock.advance(60_000)
        #expect(health.suspected() == ["n1", "n2"])
        #expect(!health.isSuspected("n9"))
        health.heartbeat("n9")
        #expect(health.phi().keys.sorted() == ["n1", "n2", "n9"])
        health.watch(["n2", "n3"], forgettingOthers: true)
        #expect(health.phi().keys.sorted() == ["n2", "n3"])
        #expect(health.suspected() == ["n2"])
    }
}
