import KVCore
import Testing

@Suite("Ring")
struct RingTests {
    static let sampleRing = try! Ring(nodes: TokenAllocator.allocate(nodeIDs: nodeIDs(5)), replicationFactor: 3)

    @Test("a preference list has N distinct nodes and starts at the owner", arguments: [1, 2, 3, 5])
    func preferenceListsAreDistinctAndStartAtOwner(replicationFactor: Int) throws {
        let ring = try Ring(nodes: Self.sampleRing.nodes, replicationFactor: replicationFactor)
        let vnodes = ring.nodes.flatMap { node in node.tokens.map { (token: $0, id: node.id) } }
        for vnode in vnodes {
            for token in [vnode.token, vnode.token &- 1] {
                let list = ring.preferenceList(for: Token(token))
                #expect(list.count == replicationFactor)
                #expect(Set(list).count == replicationFactor)
                if token == vnode.token {
                    #expect(list.first == vnode.id, "a vnode token belongs to its own node")
                }
            }
        }
    }

    /// a at 100 and 400, b at 200, c at 300, N=2.
    static func abcRing() throws -> Ring {
        try Ring(
            nodes: [
                RingNode(id: "a", tokens: [100, 400]),
                RingNode(id: "b", tokens: [200]),
                RingNode(id: "c", tokens: [300]),
            ],
            replicationFactor: 2
        )
    }

    @Test("isReplica agrees with the preference list, for every node and vnode boundary", arguments: [1, 3])
    func isReplicaAgreesWithThePreferenceList(replicationFactor: Int) throws {
        let ring = try Ring(nodes: Self.sampleRing.nodes, replicationFactor: replicationFactor)
        let tokens = ring.nodes.flatMap(\.tokens).flatMap { [Token($0), Token($0 &- 1), Token($0 &+ 1)] }
        for token in tokens {
            let list = ring.preferenceList(for: token)
            for node in ring.nodes.map(\.id) + ["not-a-node"] {
                #expect(ring.isReplica(node, of: token) == list.contains(node))
            }
        }
    }

    @Test("a token above the largest vnode token wraps to the smallest")
    func wrapsAround() throws {
        let ring = try Self.abcRing()
        #expect(ring.preferenceList(for: Token(401)) == ["a", "b"])
        #expect(ring.preferenceList(for: Token(.max)) == ["a", "b"])
        #expect(ring.preferenceList(for: Token(0)) == ["a", "b"])
        #expect(ring.preferenceList(for: Token(100)) == ["a", "b"])
        #expect(ring.preferenceList(for: Token(101)) == ["b", "c"])
        #expect(ring.preferenceList(for: Token(301)) == ["a", "b"], "skips a's second vnode, then wraps to b")
        #expect(ring.preferenceList(for: Token(201)) == ["c", "a"])
    }

    /// Ranges with fewer than N reachable replicas: none when all are up; with one node of a 4-node
    /// ring down at N=2, exactly the vnode ranges whose preference list holds it.
    @Test func underReplicatedRangesAreThoseWithAnUnreachableReplica() throws {
        let ring = try Self.abcRing()
        #expect(ring.underReplicatedRanges { _ in true } == 0)
        // Ranges ending at 100 [a,b], 200 [b,c], 300 [c,a], 400 [a,b].
        #expect(ring.underReplicatedRanges { $0 != "c" } == 2)
        #expect(ring.underReplicatedRanges { $0 != "a" } == 3)
        #expect(ring.underReplicatedRanges { _ in false } == 4)
        // Their share of the token space: the ranges ending at 200 and 300, 100 tokens each.
        let token = 1 / 18_446_744_073_709_551_616.0
        #expect(ring.underReplicatedShare { $0 != "c" } == 200 * token)
        #expect(ring.underReplicatedShare { _ in true } == 0)
        #expect(abs(ring.underReplicatedShare { _ in false } - 1) < 1e-9)
    }

    @Test func spansOverlapWhenTheyShareAToken() {
        let span = TokenRangeSpan(start: 100, end: 200)
        #expect(span.overlaps(TokenRangeSpan(start: 150, end: 250)))
        #expect(span.overlaps(TokenRangeSpan(start: 120, end: 130)), "inside")
        #expect(TokenRangeSpan(start: 120, end: 130).overlaps(span), "around")
        #expect(!span.overlaps(TokenRangeSpan(start: 200, end: 300)), "start is exclusive")
        #expect(span.overlaps(TokenRangeSpan(start: 199, end: 300)), "sharing token 200")
        #expect(span.overlaps(TokenRangeSpan(start: .max - 5, end: 101)), "wrapping, sharing token 101")
        #expect(!span.overlaps(TokenRangeSpan(start: .max - 5, end: 100)), "wrapping, touching only")
        #expect(span.overlaps(TokenRangeSpan(start: 7, end: 7)), "the whole ring")
    }

    @Test("range(containing:) is the vnode range (previous token, owning token], wrapping past the largest")
    func rangeContainingToken() throws {
        let ring = try Self.abcRing()
        #expect(ring.range(containing: Token(101)) == TokenRangeSpan(start: 100, end: 200))
        #expect(ring.range(containing: Token(200)) == TokenRangeSpan(start: 100, end: 200), "end is inclusive")
        #expect(ring.range(containing: Token(201)) == TokenRangeSpan(start: 200, end: 300))
        #expect(ring.range(containing: Token(400)) == TokenRangeSpan(start: 300, end: 400))
        // Past the largest token, and up to the smallest: the range that wraps.
        for token: UInt64 in [401, .max, 0, 1, 100] {
            #expect(ring.range(containing: Token(token)) == TokenRangeSpan(start: 400, end: 100), "token \(token)")
        }
    }

    @Test("a ring of one vnode token has one range: the whole ring")
    func rangeOfSingleTokenRing() throws {
        let ring = try Ring(nodes: [RingNode(id: "a", tokens: [42])], replicationFactor: 1)
        for token: UInt64 in [0, 41, 42, 43, .max] {
            let range = ring.range(containing: Token(token))
            #expect(range == TokenRangeSpan(start: 42, end: 42))
            #expect(range.width == 1 << 64)
        }
    }

    @Test("every token lies in its range, whose keys share the token's preference list")
    func rangeContainsTokenAndSharesReplicas() throws {
        var generator = SeededGenerator(seed: 11)
        let ring = try Ring(nodes: TokenAllocator.allocate(nodeIDs: nodeIDs(5)), replicationFactor: 3)
        for _ in 0..<2_000 {
            let token = Token(generator.next())
            let range = ring.range(containing: token)
            #expect(range.contains(token), "seed 11, token \(token)")
            #expect(ring.preferenceList(for: Token(range.end)) == ring.preferenceList(for: token))
            #expect(!range.contains(Token(range.start)), "start is exclusive")
        }
    }

    @Test("the fast lookup agrees with a linear scan on 10,000 random tokens", arguments: [1, 3])
    func agreesWithBruteForce(replicationFactor: Int) throws {
        let seed = UInt64(0x5EED_0000 + replicationFactor)
        var generator = SeededGenerator(seed: seed)
        // An allocated ring, and one of random tokens (uneven, with runs of one node's vnodes).
        let random = (1...7).map { index in
            RingNode(id: "r\(index)", tokens: (0..<(index * 3)).map { _ in generator.next() })
        }
        for nodes in [Self.sampleRing.nodes, random] {
            let ring = try Ring(nodes: nodes, replicationFactor: replicationFactor)
            for _ in 0..<10_000 {
                let token = Token(generator.next())
                let expected = referencePreferenceList(ring, token)
                #expect(ring.preferenceList(for: token) == expected, "seed \(seed), token \(token)")
            }
        }
    }

    @Test("preferenceList(forKey:) hashes the key with XXH64")
    func keyLookupUsesTheKeyToken() {
        let key = Array("user:123".utf8)
        #expect(Self.sampleRing.preferenceList(forKey: key) == Self.sampleRing.preferenceList(for: Token(key: key)))
    }

    @Test("replica shares sum to N and primary shares to 1", arguments: 1...5)
    func sharesSum(replicationFactor: Int) throws {
        let ring = try Ring(nodes: Self.sampleRing.nodes, replicationFactor: replicationFactor)
        #expect(abs(ring.replicaShare().values.reduce(0, +) - Double(replicationFactor)) < 1e-9)
        #expect(abs(ring.primaryShare().values.reduce(0, +) - 1) < 1e-9)
        #expect(ring.replicaShare().count == ring.nodes.count)
    }

    @Test("fallbacks hold every other node once, in ring order after the preference list")
    func fallbacks() throws {
        var generator = SeededGenerator(seed: 7)
        let ring = try Ring(nodes: TokenAllocator.allocate(nodeIDs: nodeIDs(7)), replicationFactor: 3)
        for _ in 0..<500 {
            let token = Token(generator.next())
            let preference = ring.preferenceList(for: token)
            let fallbacks = ring.fallbacks(for: token)
            #expect(fallbacks.count == ring.nodes.count - preference.count)
            #expect(Set(fallbacks).isDisjoint(with: preference))
            #expect(Set(fallbacks + preference) == Set(ring.nodes.map(\.id)))
            // The same walk with N = all nodes lists the preference list, then the fallbacks.
            let everyone = try Ring(nodes: ring.nodes, replicationFactor: ring.nodes.count)
            #expect(everyone.preferenceList(for: token) == preference + fallbacks)
        }
        let full = try Ring(nodes: ring.nodes, replicationFactor: ring.nodes.count)
        #expect(full.fallbacks(for: Token(0)).isEmpty)
    }

    @Test("ranges(replicatedBy:) cover exactly the node's replica share", arguments: nodeIDs(6))
    func rangesMatchShares(node: String) throws {
        let ring = try Ring(nodes: TokenAllocator.allocate(nodeIDs: nodeIDs(6)), replicationFactor: 3)
        let ranges = ring.ranges(replicatedBy: node)
        let covered = ranges.reduce(UInt128(0)) { $0 + $1.width }
        #expect(Double(covered) / 0x1p64 == ring.replicaShare()[node])
        // Merged: no two ranges touch, and they come in ascending order of end.
        for (left, right) in zip(ranges, ranges.dropFirst()) {
            #expect(left.end < right.end && left.end != right.start)
        }
        // A token is in one of the ranges exactly when the node is in its preference list.
        var generator = SeededGenerator(seed: 11)
        let vnodeTokens = ring.nodes.flatMap(\.tokens)
        let probes = (0..<2000).map { _ in generator.next() } + vnodeTokens + vnodeTokens.map { $0 &+ 1 } + [0, .max]
        for probe in probes {
            let inRanges = ranges.filter { $0.contains(Token(probe)) }.count
            let replicated = ring.preferenceList(for: Token(probe)).contains(node)
            #expect(inRanges == (replicated ? 1 : 0), "token \(Token(probe))")
        }
    }

    @Test("a node replicating everything has one whole-ring range; an unknown node none")
    func wholeRingRanges() throws {
        let ring = try Ring(nodes: TokenAllocator.allocate(nodeIDs: nodeIDs(3)), replicationFactor: 3)
        let ranges = ring.ranges(replicatedBy: "n2")
        #expect(ranges.count == 1)
        #expect(ranges.first?.start == ranges.first?.end)
        #expect(ranges.first?.width == 1 << 64)
        #expect(ring.ranges(replicatedBy: "nobody").isEmpty)
        let single = try Ring(nodes: [RingNode(id: "solo", tokens: [42])], replicationFactor: 1)
        #expect(single.ranges(replicatedBy: "solo") == [TokenRangeSpan(start: 42, end: 42)])
        #expect(single.preferenceList(for: Token(43)) == ["solo"])
        #expect(single.replicaShare() == ["solo": 1])
        #expect(single.fallbacks(for: Token(0)).isEmpty)
    }

    @Test("TokenRangeSpan is start-exclusive, end-inclusive and wraps")
    func tokenRangeContains() {
        let plain = TokenRangeSpan(start: 10, end: 20)
        #expect(!plain.contains(Token(10)) && plain.contains(Token(11)) && plain.contains(Token(20)))
        #expect(!plain.contains(Token(21)) && plain.width == 10)
        let wrapping = TokenRangeSpan(start: .max - 1, end: 1)
        #expect(wrapping.contains(Token(.max)) && wrapping.contains(Token(0)) && wrapping.contains(Token(1)))
        #expect(!wrapping.contains(Token(.max - 1)) && !wrapping.contains(Token(2)) && wrapping.width == 3)
    }

    struct InvalidCase: Sendable, CustomTestStringConvertible {
        var name: String
        var nodes: [RingNode]
        var replicationFactor: Int
        var error: RingError
        var message: String
        var testDescription: String { name }
    }

    static let invalidCases: [InvalidCase] = [
        InvalidCase(
            name: "duplicate id",
            nodes: [RingNode(id: "a", tokens: [1]), RingNode(id: "a", tokens: [2])],
            replicationFactor: 1,
            error: .duplicateNodeID("a"),
            message: "duplicate node id \"a\""
        ),
        InvalidCase(
            name: "duplicate token across nodes",
            nodes: [RingNode(id: "a", tokens: [1, 0xFF]), RingNode(id: "b", tokens: [0xFF])],
            replicationFactor: 1,
            error: .duplicateToken(0xFF, first: "a", second: "b"),
            message: "token 00000000000000ff is claimed by both node \"a\" and node \"b\""
        ),
        InvalidCase(
            name: "duplicate token within a node",
            nodes: [RingNode(id: "a", tokens: [5, 5])],
            replicationFactor: 1,
            error: .duplicateToken(5, first: "a", second: "a"),
            message: "token 0000000000000005 appears twice on node \"a\""
        ),
        InvalidCase(
            name: "node without tokens",
            nodes: [RingNode(id: "a", tokens: [1]), RingNode(id: "b", tokens: [])],
            replicationFactor: 1,
            error: .nodeWithoutTokens("b"),
            message: "node \"b\" has no tokens"
        ),
        InvalidCase(
            name: "replication factor 0",
            nodes: [RingNode(id: "a", tokens: [1])],
            replicationFactor: 0,
            error: .replicationFactorOutOfRange(0, nodeCount: 1),
            message: "replication factor 0 is outside 1...1 (the number of nodes)"
        ),
        InvalidCase(
            name: "replication factor above the node count",
            nodes: [RingNode(id: "a", tokens: [1]), RingNode(id: "b", tokens: [2])],
            replicationFactor: 3,
            error: .replicationFactorOutOfRange(3, nodeCount: 2),
            message: "replication factor 3 is outside 1...2 (the number of nodes)"
        ),
        InvalidCase(
            name: "no nodes",
            nodes: [],
            replicationFactor: 1,
            error: .replicationFactorOutOfRange(1, nodeCount: 0),
            message: "a ring needs at least one node (replication factor 1 was asked for)"
        ),
        InvalidCase(
            name: "too many tokens",
            nodes: [RingNode(id: "a", tokens: (0...UInt64(Limits.tokensPerNodeMax)).map { $0 })],
            replicationFactor: 1,
            error: .tooManyTokens(node: "a", count: Limits.tokensPerNodeMax + 1),
            message: "node \"a\" has 4097 tokens; at most 4096 are allowed"
        ),
        InvalidCase(
            name: "too many nodes",
            nodes: (0...Limits.nodesMax).map { RingNode(id: "n\($0)", tokens: [UInt64($0)]) },
            replicationFactor: 3,
            error: .tooManyNodes(count: Limits.nodesMax + 1),
            message: "the ring has 4097 nodes; at most 4096 are allowed"
        ),
    ]

    @Test("invalid rings are rejected with a clear error", arguments: invalidCases)
    func rejectsInvalidRings(_ invalid: InvalidCase) {
        #expect(throws: invalid.error) {
            try Ring(nodes: invalid.nodes, replicationFactor: invalid.replicationFactor)
        }
        #expect(invalid.error.description == invalid.message)
    }
}
