/// A time-ordered queue (a binary min-heap); equal times keep insertion order, so what it gives is a
/// pure function of what was pushed. The simulator's events (a run is a pure function of its seed)
/// and the SDK's operation timers (`OperationTimers`, by deadline in nanoseconds) wait in one.
///
/// Inlinable, so that the SDK, which pushes and pops a timer or two per operation, gets a copy
/// specialized for its type: used through the generic entry points across modules, every call looked
/// up the generic type's metadata at run time (`perf`: 1–2 % of kvbench's CPU per put).
public struct TimeOrderedQueue<Event> {
    @usableFromInline
    struct Entry {
        @usableFromInline var time: UInt64
        @usableFromInline var sequence: UInt64
        @usableFromInline var event: Event

        @inlinable
        init(time: UInt64, sequence: UInt64, event: Event) {
            self.time = time
            self.sequence = sequence
            self.event = event
        }

        @inlinable
        func precedes(_ other: Entry) -> Bool {
            (time, sequence) < (other.time, other.sequence)
        }
    }

    @usableFromInline var heap: [Entry] = []
    @usableFromInline var sequence: UInt64 = 0

    @inlinable
    public init() {}

    @inlinable
    public var isEmpty: Bool { heap.isEmpty }
    @inlinable
    public var count: Int { heap.count }

    /// The first event and its time, without taking it.
    @inlinable
    public var first: (time: UInt64, event: Event)? {
        heap.first.map { ($0.time, $0.event) }
    }

    @inlinable
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

    @inlinable
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
