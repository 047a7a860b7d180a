import KVCore
import Testing

/// The queue the simulator's events and the SDK's timers wait in: by time, equal times in the order
/// pushed.
@Suite struct TimeOrderedQueueTests {
    @Test func givesEventsByTimeAndEqualTimesInPushOrder() {
        var queue = TimeOrderedQueue<String>()
        for (event, time) in [("c", 30), ("a1", 10), ("d", 40), ("a2", 10), ("b", 20), ("a3", 10)] {
            queue.push(event, at: UInt64(time))
        }
        #expect(queue.count == 6)
        #expect(queue.first?.event == "a1" && queue.first?.time == 10)
        var order: [String] = []
        while let (_, event) = queue.pop() { order.append(event) }
        #expect(order == ["a1", "a2", "a3", "b", "c", "d"])
        #expect(queue.isEmpty && queue.first == nil)
    }

    @Test func manyRandomTimesComeOutSorted() {
        var generator = SystemRandomNumberGenerator()
        var queue = TimeOrderedQueue<Int>()
        let times = (0..<5_000).map { _ in UInt64.random(in: 0..<1_000, using: &generator) }
        for (index, time) in times.enumerated() { queue.push(index, at: time) }
        var last: (time: UInt64, index: Int)?
        while let (time, index) = queue.pop() {
            if let last { #expect(last.time < time || (last.time == time && last.index < index)) }
            last = (time, index)
        }
    }
}
