import KVCluster
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(3)))
struct MapFollowerTests {
    /// A stand-in cluster: fetching from a node installs the epoch it reported; the first fetch waits
    /// for the test to let it go, so that reports arrive while it runs.
    final class World: Sendable {
        let installed = Mutex<UInt64>(3)
        let fetched = Mutex<[String]>([])
        let reported = Mutex<[String: UInt64]>([:])
        let gate = AsyncStream<Void>.makeStream()

        func fetch(_ node: String) async {
            let first = fetched.withLock { fetched in
                fetched.append(node)
                return fetched.count == 1
            }
            if first {
                for await _ in gate.stream { break }
            }
            let epoch = reported.withLock { $0[node] ?? 0 }
            installed.withLock { $0 = max($0, epoch) }
        }

        func report(_ epoch: UInt64, from node: String, to follower: MapFollower) {
            reported.withLock { $0[node] = epoch }
            follower.notice(epoch, from: node, currentEpoch: { self.installed.withLock { $0 } }) { node in
                await self.fetch(node)
            }
        }
    }

    /// One fetch at a time: reports during a fetch leave one follow-up, the highest epoch's node; a
    /// report no newer than the map in use fetches nothing; the fetch in progress can be awaited.
    @Test func oneFetchAtATimeAndTheHighestReportNext() async throws {
        let background = BackgroundWork()
        let follower = MapFollower(background: background)
        let world = World()
        world.report(3, from: "n9", to: follower)
        #expect(follower.inProgress == nil, "epoch 3 is the map in use")
        world.report(5, from: "n1", to: follower)
        let running = try #require(follower.inProgress)
        world.report(9, from: "n2", to: follower)
        world.report(7, from: "n3", to: follower)
        world.gate.continuation.yield()
        await running.wait()
        #expect(world.fetched.withLock { $0 } == ["n1", "n2"])
        #expect(world.installed.withLock { $0 } == 9)
        #expect(follower.inProgress == nil)
        world.report(8, from: "n4", to: follower)
        #expect(follower.inProgress == nil, "epoch 8 is older than the map in use")
        await background.shutdown()
    }
}
