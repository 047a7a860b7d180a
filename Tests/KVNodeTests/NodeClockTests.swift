import Foundation
import KVCore
import KVNode
import KVStorage
import Synchronization
import Testing

/// The node's hybrid logical clock, ticked by every event loop and pool thread at once (one atomic
/// value, no lock): every timestamp is unique, and each thread's increase.
struct NodeClockTests {
    @Test(.timeLimit(.minutes(3)))
    func concurrentTicksAreUniqueAndIncreasing() {
        // A wall clock that stands still: every tick past the first comes from the counter.
        let replica = Replica(nodeID: "n1", store: InMemoryStore(), maxClockOffset: .seconds(1)) { 1_000 }
        let threads = 4
        let ticks = 20_000
        let seen = Mutex<[[UInt64]]>(Array(repeating: [], count: threads))
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            var mine: [UInt64] = []
            mine.reserveCapacity(ticks)
            for tick in 0..<ticks {
                // Every other tick observes a peer's clock just ahead (the counter of 1,000 ms).
                let remote = tick % 2 == 0 ? 0 : HybridLogicalClock.pack(millis: 1_000, counter: UInt16(tick % 500))
                mine.append(replica.tick(observing: remote))
            }
            seen.withLock { $0[thread] = mine }
        }
        let all = seen.withLock { $0 }
        for mine in all {
            #expect(zip(mine, mine.dropFirst()).allSatisfy { $0 < $1 }, "a thread's timestamps increase")
        }
        let flat = all.flatMap { $0 }
        #expect(flat.count == threads * ticks)
        #expect(Set(flat).count == flat.count, "no timestamp is handed out twice")
        #expect(flat.allSatisfy { $0 >= HybridLogicalClock.pack(millis: 1_000, counter: 0) })
    }
}
