import KVCore
import Synchronization

/// A fixed set of mutexes shared by all keys: a key's stripe is chosen by its token (or its token's
/// Merkle segment), so writers of the same key serialize while writers of different keys rarely wait
/// for each other.
///
/// Mutex is not copyable and so cannot sit in an array directly; each lives in a small class.
final class LockStripes: Sendable {
    private final class Stripe: Sendable {
        let mutex = Mutex<Void>(())
    }

    /// Number of stripes: enough that 2 cores × a few writer threads rarely collide.
    static let count = 256

    private let stripes: [Stripe]

    init() {
        stripes = (0..<Self.count).map { _ in Stripe() }
    }

    func withLock<Result: Sendable, Failure: Error>(
        for token: Token,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let stripe = stripes[Int(token.value % UInt64(Self.count))]
        return try stripe.mutex.withLock { (_: inout Void) throws(Failure) -> Result in try body() }
    }

    /// Runs `body` holding the stripes of `tokens` (each `withLock(for:)`'s), taken in index order like
    /// `withAllLocks`, each once.
    func withLocks<Result: Sendable, Failure: Error>(
        forTokens tokens: some Sequence<Token>,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let indexes = Set(tokens.map { Int($0.value % UInt64(Self.count)) }).sorted()
        return try withLocks(indexes[...], body)
    }

    /// Runs `body` under the stripe of `segment` (a `MerkleSegments` index): every key of a segment
    /// shares it, so writers of one segment hash serialize.
    func withLock<Result: Sendable, Failure: Error>(
        forSegment segment: Int,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let stripe = stripes[segment % Self.count]
        return try stripe.mutex.withLock { (_: inout Void) throws(Failure) -> Result in try body() }
    }

    /// Runs `body` holding every stripe, taken in index order (so two callers cannot deadlock).
    func withAllLocks<Result: Sendable, Failure: Error>(
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try withLocks(from: 0, body)
    }

    /// Runs `body` holding the stripes of `segments` (`MerkleSegments` indexes), taken in index order
    /// like `withAllLocks`, each once.
    func withLocks<Result: Sendable, Failure: Error>(
        forSegments segments: some Sequence<Int>,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let indexes = Set(segments.map { $0 % Self.count }).sorted()
        return try withLocks(indexes[...], body)
    }

    /// `withLocks(forSegments:_:)` without waiting: nil, and `body` not run, when another caller holds
    /// one of the stripes (for callers that must not block, such as an event loop).
    func withLocksIfAvailable<Result: Sendable, Failure: Error>(
        forSegments segments: some Sequence<Int>,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result? {
        let indexes = Set(segments.map { $0 % Self.count }).sorted()
        return try withLocksIfAvailable(indexes[...], body)
    }

    private func withLocksIfAvailable<Result: Sendable, Failure: Error>(
        _ indexes: ArraySlice<Int>,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result? {
        guard let first = indexes.first else { return try body() }
        return try stripes[first].mutex.withLockIfAvailable { (_: inout Void) throws(Failure) -> Result? in
            try withLocksIfAvailable(indexes.dropFirst(), body)
        } ?? nil
    }

    private func withLocks<Result: Sendable, Failure: Error>(
        _ indexes: ArraySlice<Int>,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        guard let first = indexes.first else { return try body() }
        return try stripes[first].mutex.withLock { (_: inout Void) throws(Failure) -> Result in
            try withLocks(indexes.dropFirst(), body)
        }
    }

    private func withLocks<Result: Sendable, Failure: Error>(
        from index: Int,
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        guard index < stripes.count else { return try body() }
        return try stripes[index].mutex.withLock { (_: inout Void) throws(Failure) -> Result in
            try withLocks(from: index + 1, body)
        }
    }
}
