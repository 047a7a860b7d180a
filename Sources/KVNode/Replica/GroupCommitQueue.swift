/// The queue of a group commit (`WriteGroup`, `HintGroup`), sans-I/O: items arriving while a batch is
/// written wait together and go as the next batch. One writer at a time: the first item to arrive
/// while none writes starts it (`enqueue` says so), and it takes batches (`nextBatch`) until none
/// waits. Under light load a batch is one item (no delay is added to gather more); under heavy load
/// batches grow with the time a batch takes, up to the caller's maximum.
package struct GroupCommitQueue<Item> {
    private var waiting: [Item] = []
    /// Whether a writer runs (and will take what waits when it is done).
    private var writing = false
    /// Callers handing over several items at once (`hold`): no writer starts meanwhile.
    private var holders = 0

    package init() {}

    /// Adds `item`; true when the caller must start the writer.
    package mutating func enqueue(_ item: Item) -> Bool {
        waiting.append(item)
        return startsWriter()
    }

    /// Keeps the writer from starting until `release`: the items handed over meanwhile go in one batch.
    package mutating func hold() {
        holders += 1
    }

    /// Ends a `hold`; true when the caller must start the writer.
    package mutating func release() -> Bool {
        holders -= 1
        return startsWriter()
    }

    /// Puts `batch` back at the head of the queue, in order (a writer that could not write it hands
    /// it, and what follows, to another).
    package mutating func requeue(_ batch: [Item]) {
        waiting.insert(contentsOf: batch, at: 0)
    }

    /// The next batch, at most `max` items in arrival order; nil, and the writer stopped, when none waits.
    package mutating func nextBatch(max: Int) -> [Item]? {
        guard !waiting.isEmpty else {
            writing = false
            return nil
        }
        let count = min(waiting.count, max)
        let batch = Array(waiting.prefix(count))
        waiting.removeFirst(count)
        return batch
    }

    /// Whether the writer must start: items wait, nobody holds them, none is writing.
    private mutating func startsWriter() -> Bool {
        guard !writing, holders == 0, !waiting.isEmpty else { return false }
        writing = true
        return true
    }
}
