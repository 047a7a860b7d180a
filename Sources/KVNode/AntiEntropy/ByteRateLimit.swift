import KVCore
import Synchronization

/// A `ByteRateLimit` shared by every anti-entropy session of a node, on the real clock.
package final class ByteRateLimiter: Sendable {
    private let limit: Mutex<ByteRateLimit>

    package init(bytesPerSecond: Int) {
        limit = Mutex(ByteRateLimit(bytesPerSecond: bytesPerSecond, now: .now))
    }

    /// Waits until the bucket is out of debt. Throws `CancellationError` when the task is cancelled.
    func waitForCredit() async throws {
        while true {
            let delay = limit.withLock { $0.delay(now: .now) }
            guard delay > .zero else { return }
            try await Task.sleep(for: delay)
        }
    }

    /// Charges `bytes` that were just moved.
    func spend(_ bytes: Int) {
        limit.withLock { $0.spend(bytes, now: .now) }
    }
}
