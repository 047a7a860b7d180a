/// A time-ordered queue (a binary min-heap); equal times keep insertion order, so what it gives is a
/// pure function of what was pushed. The simulator's events (a run is a pure function of its seed)
/// and the SDK's operation timers (`OperationTimers`, by deadline in nanoseconds) wait in one.
public struct TimeOrderedQueue<Event> {
    fileprivate struct Entry {
        var time: UInt64
        var sequence: UInt64
        var event: Event

        func precedes(_ other: Entry) -> Bool {
            (time, sequence) < (other.time, other.sequence)
        }
    }

    private var heap: [Entry] = []
    private var sequence: UInt64 = 0

    public init() {}

    public var isEmpty: Bool { heap.isEmpty }
    public var count: Int { heap.count }

    /// The first event and its time, without taking it.
    public var first: (time: UInt64, event: Event)? {
        heap.first.map { ($0.time, $0.event) }
    }

    public mutating func push(_ event: Event, at time: UInt64) {
        sequence += 1
        heap.append(Entry(time: time, sequence: sequence, event: event))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    public mutating func pop() -> (time: UInt64, event: Event)? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count && heap[left].precedes(heap[smallest]) { smallest = left }
            if right < heap.count && heap[right].precedes(heap[smallest]) { smallest = right }
            guard smallest != parent else { break }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
        return (top.time, top.event)
    }
}

extension TimeOrderedQueue: Sendable where Event: Sendable {}
extension TimeOrderedQueue.Entry: Sendable where Event: Sendable {}
