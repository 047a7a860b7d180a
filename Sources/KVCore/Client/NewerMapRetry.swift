/// When a client operation that failed on one cluster map is tried again on a newer one: the SDK and
/// the simulator's clients follow this one rule.
///
/// A replica that does not keep a key in its map (or is still receiving it) refuses with
/// `notReplica`, and the client fetches the refusing node's map. If the operation failed and a newer
/// map is installed by then, it runs again on that map, within the same request. A client that slept
/// through several changes can need more than one step (the map it fetched first may already be an
/// epoch behind), so a few retries are allowed, each only on a strictly newer map: the retries end.
public struct NewerMapRetry: Sendable, Hashable {
    /// Times one operation is tried again on a newer map, at most.
    public static let retriesMax = 3

    /// The epoch of the map the last attempt used.
    public private(set) var epoch: UInt64
    public private(set) var retries = 0
    /// Test-only (a planted bug for the simulator's mutation check): never try again.
    package var neverRetries = false

    public init(epoch: UInt64) {
        self.epoch = epoch
    }

    /// After a failed attempt: whether to try again on the map of `latestEpoch`, the newest the client
    /// has installed now. Records the retry when it says yes.
    public mutating func retry(onEpoch latestEpoch: UInt64) -> Bool {
        guard !neverRetries, latestEpoch > epoch, retries < Self.retriesMax else { return false }
        retries += 1
        epoch = latestEpoch
        return true
    }
}
