/// The requests of one worker: the operation from the mix, the key from the distribution.
///
/// A value with no randomness inside: the same generator state and the same draws from the caller's
/// random number generator give the same requests, so a run replays from its seed. Give each worker
/// a copy of one generator (a Zipfian's ζ is computed once) and a random number generator of its own.
package struct RequestGenerator: Sendable {
    /// The operation shares.
    package let mix: OperationMix
    private var keys: KeyChooser

    /// Requests in `mix`, on keys chosen by `keys`.
    package init(mix: OperationMix, keys: KeyChooser) {
        self.mix = mix
        self.keys = keys
    }

    /// Requests of `workload`, keys in `distribution` (the workload's default when nil) over
    /// `keyCount` keys at first.
    package init(workload: Workload, distribution: KeyDistribution? = nil, keyCount: Int) {
        self.init(
            mix: workload.mix, keys: KeyChooser(distribution ?? workload.defaultDistribution, keyCount: keyCount))
    }

    /// The next request, when keys `0..<keyCount` exist (they grow as inserts are acknowledged).
    package mutating func next(keyCount: Int, using generator: inout some RandomNumberGenerator) -> Request {
        switch mix.nextOperation(using: &generator) {
        case .read: .read(key: keys.nextKey(keyCount: keyCount, using: &generator))
        case .update: .update(key: keys.nextKey(keyCount: keyCount, using: &generator))
        case .insert: .insert
        case .readModifyWrite: .readModifyWrite(key: keys.nextKey(keyCount: keyCount, using: &generator))
        }
    }
}
