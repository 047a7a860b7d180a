/// The keys that inserts create, shared by all workers: issued in order after the loaded keys, and
/// counted as existing once every key before them is acknowledged.
///
/// As YCSB's `AcknowledgedCounterGenerator`: reads only go to keys below `acknowledgedCount`, so a
/// read never asks for a key whose insert is still in flight. An insert that failed is acknowledged
/// too (YCSB does the same), or one failure would stop the count for the rest of the run; reads of
/// it find nothing. Not thread-safe: the caller holds it under a lock.
package struct InsertSequence: Sendable {
    /// The next key an insert gets.
    package private(set) var issuedCount: Int
    /// Keys `0..<acknowledgedCount` all exist (loaded, or inserted and acknowledged).
    package private(set) var acknowledgedCount: Int
    /// Keys acknowledged while one before them was still in flight; at most the inserts in flight.
    private var acknowledgedAhead: Set<Int> = []

    /// A sequence after `loadedKeyCount` loaded keys.
    package init(loadedKeyCount: Int) {
        precondition(loadedKeyCount > 0, "no loaded keys")
        issuedCount = loadedKeyCount
        acknowledgedCount = loadedKeyCount
    }

    /// The key of a new insert.
    package mutating func issue() -> Int {
        defer { issuedCount += 1 }
        return issuedCount
    }

    /// The insert of `key` finished (stored or failed).
    package mutating func acknowledge(_ key: Int) {
        precondition(key >= acknowledgedCount && key < issuedCount, "key \(key) was not issued or is acknowledged")
        acknowledgedAhead.insert(key)
        while acknowledgedAhead.remove(acknowledgedCount) != nil {
            acknowledgedCount += 1
        }
        assert(acknowledgedAhead.count <= issuedCount - acknowledgedCount)
    }
}
