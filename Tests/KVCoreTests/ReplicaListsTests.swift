import KVCore
import Testing

/// The list checks coordinators make at every operation agree with `Set`'s, for the short lists
/// compared pairwise and the long ones that go through a set.
struct ReplicaListsTests {
    @Test func agreeWithSetsForShortAndLongLists() {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<500 {
            let length = [0, 1, 3, 16, 17, 40][round % 6]
            let pool = max(1, length + Int.random(in: -2...5, using: &generator))
            let list = (0..<length).map { _ in "n\(Int.random(in: 0..<pool, using: &generator))" }
            let other = (0..<[1, 3, 16, 17, 60][round % 5]).map { _ in
                "n\(Int.random(in: 0..<(2 * pool), using: &generator))"
            }
            #expect(list.hasDistinctElements == (Set(list).count == list.count), "\(list)")
            #expect(list.isContained(in: other) == Set(list).isSubset(of: other), "\(list) in \(other)")
            #expect(list.isDisjoint(with: other) == Set(list).isDisjoint(with: other), "\(list) and \(other)")
        }
    }
}
