import KVCore
import Synchronization

/// A fixed set of mutexes shared by all keys: a key's stripe is chosen by its token, so writers of
/// the same key serialize while writers of different keys rarely wait for each other.
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
}
