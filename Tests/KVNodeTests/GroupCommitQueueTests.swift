import KVNode
import Testing

/// The queue under both group commits (`WriteGroup`, `HintGroup`): one writer at a time, started by
/// the first item that finds none writing, taking what waits in arrival order, batch by batch.
struct GroupCommitQueueTests {
    /// What each call answered, in order (`#expect` cannot call a mutating member itself).
    struct Trace {
        var queue = GroupCommitQueue<Int>()

        mutating func enqueue(_ items: Int...) -> [Bool] { items.map { queue.enqueue($0) } }
        mutating func next(_ max: Int = 10) -> [Int]? { queue.nextBatch(max: max) }
        mutating func release() -> Bool { queue.release() }
    }

    @Test func theFirstItemStartsTheWriterWhichTakesWhatWaitsInOrder() {
        var trace = Trace()
        // Nobody writes: the first item's caller starts the writer; the others wait for it.
        #expect(trace.enqueue(1, 2, 3) == [true, false, false])
        #expect(trace.next() == [1, 2, 3])
        #expect(trace.enqueue(4) == [false], "the writer runs until it finds the queue empty")
        #expect(trace.next() == [4])
        #expect(trace.next() == nil, "empty: the writer stops")
        #expect(trace.enqueue(5) == [true], "and the next item starts it again")
    }

    @Test func aBatchTakesAtMostItsMaximum() {
        var trace = Trace()
        _ = trace.enqueue(0, 1, 2, 3, 4)
        let batches = (0..<4).map { _ in trace.next(2) }
        #expect(batches == [[0, 1], [2, 3], [4], nil])
    }

    @Test func aHolderKeepsTheWriterFromStartingUntilItReleases() {
        var trace = Trace()
        trace.queue.hold()
        trace.queue.hold()
        #expect(trace.enqueue(1, 2) == [false, false])
        #expect(trace.release() == false, "another holder is still handing over")
        #expect(trace.release() == true, "the last release starts the writer")
        #expect(trace.next() == [1, 2])
        _ = trace.next()
        trace.queue.hold()
        #expect(trace.release() == false, "nothing waits: no writer")
    }

    @Test func aRequeuedBatchGoesFirstInItsOrder() {
        var trace = Trace()
        _ = trace.enqueue(0, 1, 2, 3)
        let batch = trace.next(2) ?? []
        _ = trace.enqueue(9)
        trace.queue.requeue(batch)
        #expect(trace.next() == [0, 1, 2, 3, 9])
    }
}
