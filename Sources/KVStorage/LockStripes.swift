import KVCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A fixed set of mutexes shared by all keys: a key's stripe is chosen by its token (or its token's
/// Merkle segment), so writers of the same key serialize while writers of different keys rarely wait
/// for each other.
///
/// The mutexes are pthread mutexes in one allocation, taken and released one by one, not
/// `Synchronization.Mutex`, whose only way to hold several is a closure nested per stripe: with
/// 4096 stripes `withAllLocks` would have nested 4096 calls deep on the caller's stack. (Hence
/// `@unchecked Sendable`: the mutexes are allocated once, used only through pthread calls, and freed
/// in `deinit`.)
final class LockStripes: @unchecked Sendable {
    /// Number of stripes. Each event loop writes its own batches of puts (`WriteGroup`'s lanes) and
    /// holds its batch's stripes without waiting for them (`withLocksIfAvailable`); a loop that finds
    /// one held hands its batch to a storage thread. Two batches of 20 keys share a stripe about 80 %
    /// of the time with 256 stripes, and 9 % with 4096 (docs/benchmarks.md, "A write lane per event
    /// loop").
    static let count = 4096

    private let mutexes: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        mutexes = .allocate(capacity: Self.count)
        for index in 0..<Self.count { pthread_mutex_init(mutexes + index, nil) }
    }

    deinit {
        for index in 0..<Self.count { pthread_mutex_destroy(mutexes + index) }
        mutexes.deallocate()
    }

    func withLock<Result: Sendable, Failure: Error>(
        for token: Token,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try withLock(Int(token.value % UInt64(Self.count)), body)
    }

    /// Runs `body` holding the stripes of `tokens` (each `withLock(for:)`'s), taken in index order like
    /// `withAllLocks`, each once.
    func withLocks<Result: Sendable, Failure: Error>(
        forTokens tokens: some Sequence<Token>,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try withLocks(Set(tokens.map { Int($0.value % UInt64(Self.count)) }).sorted(), body)
    }

    /// Runs `body` under the stripe of `segment` (a `MerkleSegments` index): every key of a segment
    /// shares it, so writers of one segment hash serialize.
    func withLock<Result: Sendable, Failure: Error>(
        forSegment segment: Int,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try withLock(Self.index(forSegment: segment), body)
    }

    /// The stripe of `segment` (a `MerkleSegments` index): what `withLock(forSegment:_:)` takes.
    static func index(forSegment segment: Int) -> Int { segment % count }

    /// Runs `body` holding every stripe, taken in index order (so two callers cannot deadlock).
    func withAllLocks<Result: Sendable, Failure: Error>(
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try withLocks(0..<Self.count, body)
    }

    /// Runs `body` holding the stripes of `segments` (`MerkleSegments` indexes), taken in index order
    /// like `withAllLocks`, each once.
    func withLocks<Result: Sendable, Failure: Error>(
        forSegments segments: some Sequence<Int>,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try withLocks(Set(segments.map(Self.index(forSegment:))).sorted(), body)
    }

    /// `withLocks(forSegments:_:)` without waiting: nil, and `body` not run, when another caller holds
    /// one of the stripes (for callers that must not block, such as an event loop).
    func withLocksIfAvailable<Result: Sendable, Failure: Error>(
        forSegments segments: some Sequence<Int>,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result? {
        let indexes = Set(segments.map(Self.index(forSegment:))).sorted()
        var taken = 0
        defer { for index in indexes[..<taken].reversed() { pthread_mutex_unlock(mutexes + index) } }
        for index in indexes {
            guard pthread_mutex_trylock(mutexes + index) == 0 else { return nil }
            taken += 1
        }
        return try body()
    }

    private func withLock<Result: Sendable, Failure: Error>(
        _ index: Int,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        pthread_mutex_lock(mutexes + index)
        defer { pthread_mutex_unlock(mutexes + index) }
        return try body()
    }

    /// Runs `body` holding the stripes `indexes` (ascending, each once), released in reverse order.
    private func withLocks<Result: Sendable, Failure: Error>(
        _ indexes: some BidirectionalCollection<Int>,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        for index in indexes { pthread_mutex_lock(mutexes + index) }
        defer { for index in indexes.reversed() { pthread_mutex_unlock(mutexes + index) } }
        return try body()
    }
}
