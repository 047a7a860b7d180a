import Foundation
import KVCore
import Testing

@Suite("TokenAllocator")
struct TokenAllocatorTests {
    /// The bound the ring promises: no node replicates more than 1.25 times the mean share.
    static let imbalanceMax = 1.25

    @Test("allocated rings of 4 and 8 nodes are balanced for N = 3", arguments: [4, 8])
    func balanced(nodeCount: Int) throws {
        let ring = try Ring(nodes: TokenAllocator.allocate(nodeIDs: nodeIDs(nodeCount)), replicationFactor: 3)
        #expect(ring.nodes.allSatisfy { $0.tokens.count == TokenAllocator.tokensPerNodeDefault })
        #expect(imbalance(ring) <= Self.imbalanceMax, "replica shares \(ring.replicaShare())")
    }

    @Test("rings grown by successive joins are balanced at every size", arguments: 3...12)
    func balancedAfterJoins(nodeCount: Int) throws {
        var nodes: [RingNode] = []
        for id in nodeIDs(nodeCount) {
            nodes.append(RingNode(id: id, tokens: TokenAllocator.tokensForJoiningNode(id, existing: nodes)))
        }
        for replicationFactor in 1...3 {
            let ring = try Ring(nodes: nodes, replicationFactor: replicationFactor)
            #expect(imbalance(ring) <= Self.imbalanceMax, "N = \(replicationFactor): \(ring.replicaShare())")
        }
    }

    @Test("the same ids always give the same tokens")
    func deterministic() {
        let first = TokenAllocator.allocate(nodeIDs: nodeIDs(6))
        #expect(first == TokenAllocator.allocate(nodeIDs: nodeIDs(6)))
        #expect(first.map(\.id) == nodeIDs(6))
        // The first node's tokens are evenly spaced: i * 2^64 / k.
        #expect(first[0].tokens == (0..<16).map { UInt64($0) << 60 })
    }

    @Test("allocate gives each node what joining one by one gives it", arguments: [1, 7, 16])
    func allocateIsSuccessiveJoins(tokensPerNode: Int) {
        let allocated = TokenAllocator.allocate(nodeIDs: nodeIDs(6), tokensPerNode: tokensPerNode)
        var joined: [RingNode] = []
        for id in nodeIDs(6) {
            let tokens = TokenAllocator.tokensForJoiningNode(id, existing: joined, tokensPerNode: tokensPerNode)
            joined.append(RingNode(id: id, tokens: tokens))
        }
        #expect(allocated == joined)
        #expect(allocated.allSatisfy { $0.tokens.count == tokensPerNode })
        #expect(throws: Never.self) { try Ring(nodes: allocated, replicationFactor: 3) }
    }

    @Test("a joining node keeps every existing token and adds only new ones")
    func joiningKeepsExistingTokens() throws {
        let existing = TokenAllocator.allocate(nodeIDs: nodeIDs(4))
        let tokens = TokenAllocator.tokensForJoiningNode("n5", existing: existing)
        #expect(tokens.count == TokenAllocator.tokensPerNodeDefault)
        #expect(Set(tokens).isDisjoint(with: existing.flatMap(\.tokens)))
        let grown = existing + [RingNode(id: "n5", tokens: tokens)]
        #expect(Array(TokenAllocator.allocate(nodeIDs: nodeIDs(5)).prefix(4)) == existing)
        #expect(TokenAllocator.allocate(nodeIDs: nodeIDs(5)) == grown)
        // Only ranges the new node takes change hands: every key whose list lost a node now has n5.
        let before = try Ring(nodes: existing, replicationFactor: 3)
        let after = try Ring(nodes: grown, replicationFactor: 3)
        var generator = SeededGenerator(seed: 3)
        for _ in 0..<2000 {
            let token = Token(generator.next())
            let old = before.preferenceList(for: token)
            let new = after.preferenceList(for: token)
            #expect(old == new || new.contains("n5"), "token \(token): \(old) -> \(new)")
        }
    }

    /// Prints max/mean replica share for N = 1, 2, 3 at each size:
    /// `QUORUMKV_RING_FIGURES=1 swift test --skip-build --filter printFigures`.
    @Test(
        "balance figures (only with QUORUMKV_RING_FIGURES=1)",
        .enabled(if: ProcessInfo.processInfo.environment["QUORUMKV_RING_FIGURES"] == "1")
    )
    func printFigures() throws {
        var nodes: [RingNode] = []
        for id in nodeIDs(12) {
            nodes.append(RingNode(id: id, tokens: TokenAllocator.tokensForJoiningNode(id, existing: nodes)))
            guard nodes.count >= 3 else { continue }
            let figures = try (1...3).map { try imbalance(Ring(nodes: nodes, replicationFactor: $0)) }
            print("nodes \(nodes.count) max/mean N=1,2,3:", figures.map { String(format: "%.3f", $0) })
        }
    }
}
