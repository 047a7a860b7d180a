/// Checks on the lists of nodes a coordinator is given, made at every operation. A preference list
/// is short (N nodes) and is compared pairwise, without the set each `Set(list)` would allocate; a
/// longer list (a write's fallbacks: every other node of the ring) goes through a set as before.
extension Array where Element: Hashable {
    /// Lists this long at most are compared pairwise.
    private static var pairwiseMax: Int { 16 }

    /// Whether no element appears twice.
    package var hasDistinctElements: Bool {
        guard count > Self.pairwiseMax else {
            return indices.allSatisfy { index in !self[..<index].contains(self[index]) }
        }
        return Set(self).count == count
    }

    /// Whether every element of `self` is in `other`.
    package func isContained(in other: [Element]) -> Bool {
        guard other.count > Self.pairwiseMax else { return allSatisfy { other.contains($0) } }
        return Set(self).isSubset(of: other)
    }

    /// Whether no element of `self` is in `other`.
    package func isDisjoint(with other: [Element]) -> Bool {
        guard count > Self.pairwiseMax || other.count > Self.pairwiseMax else {
            return !contains { other.contains($0) }
        }
        return Set(self).isDisjoint(with: other)
    }
}
