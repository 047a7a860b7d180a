import KVCluster
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(3)))
struct BackgroundWorkTests {
    /// A child runs and can be awaited by several tasks; shutdown cancels the children still running
    /// (a sleep of an hour ends at once) and waits for them; after it, nothing more runs.
    @Test func childrenRunAreAwaitedAndEndWithTheOwner() async throws {
        let work = BackgroundWork()
        let ran = Atomic<Int>(0)
        let quick = try #require(work.spawn { ran.add(1, ordering: .relaxed) })
        async let first: Void = quick.wait()
        await quick.wait()
        await first
        #expect(quick.isDone)
        let runs = ran.load(ordering: .relaxed)
        #expect(runs == 1)

        let cancelled = Atomic<Bool>(false)
        let sleeper = try #require(
            work.spawn {
                do {
                    try await Task.sleep(for: .seconds(3600))
                } catch {
                    cancelled.store(true, ordering: .relaxed)
                }
            })
        #expect(!sleeper.isDone)
        await work.shutdown()
        #expect(sleeper.isDone)
        let sleepWasCancelled = cancelled.load(ordering: .relaxed)
        #expect(sleepWasCancelled)
        let late = work.spawn { ran.add(1, ordering: .relaxed) }
        #expect(late == nil)
        let runsAfter = ran.load(ordering: .relaxed)
        #expect(runsAfter == 1)
    }
}
