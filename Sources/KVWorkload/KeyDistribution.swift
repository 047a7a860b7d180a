/// How a workload picks the key of a read, update or read-modify-write among the keys that exist.
package enum KeyDistribution: String, CaseIterable, Sendable {
    /// Every key equally likely.
    case uniform
    /// YCSB's scrambled zipfian (constant 0.99): a few keys are hot, and the hot ones are spread
    /// over the key space by a hash, so that they land on different nodes of the ring.
    case zipfian
    /// Zipfian over recency: the newest inserted key is the most popular.
    case latest

    /// The distribution named `name` (`uniform`, `zipfian` or `latest`), or nil.
    package init?(name: String) {
        self.init(rawValue: name)
    }
}
