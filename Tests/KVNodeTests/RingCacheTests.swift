import KVCore
import KVStorage
import Testing

@testable import KVNode

/// The ring a node hands every stored hint (for the mark of a refused one) is built once per epoch of
/// its map, not per hint: the cache must follow the map, so a hint refused after a change marks the
/// range of the new ring.
@Suite(.timeLimit(.minutes(3)))
struct RingCacheTests {
    @Test func theCachedRingFollowsTheMapsEpoch() async throws {
        let fixture = try ServiceFixture(hintQueueMax: 1)
        let service = fixture.service
        func context(_ map: ClusterMap) -> ReplicaService.KeyspaceContext {
            ReplicaService.KeyspaceContext(
                keyspace: map.defaultKeyspace, keyRange: KeyRange(low: [], high: nil), map: map,
                replica: Replica(nodeID: "n1", store: fixture.store, wallMillis: { 1_000 }), merkle: nil,
                streaming: nil,
                marks: fixture.store)
        }
        let first = ServiceFixture.cluster
        var second = first
        second.epoch = 2
        second.nodes.append(ClusterMap.Node(id: "n4", address: "127.0.0.1:4", tokens: [1 << 61]))
        let firstRing = try first.ring()
        let secondRing = try second.ring()
        let key = Token(key: Array("k".utf8))
        #expect(firstRing.range(containing: Token(1 << 60)) != secondRing.range(containing: Token(1 << 60)))

        #expect(service.ring(in: context(first))?.range(containing: key) == firstRing.range(containing: key))
        #expect(service.ring(in: context(first))?.nodes.count == 3, "the same epoch: the cached ring")
        #expect(service.ring(in: context(second))?.nodes.count == 4, "a new epoch: the new map's ring")
        #expect(
            service.ring(in: context(second))?.range(containing: Token(1 << 60))
                == secondRing.range(containing: Token(1 << 60)))
        // A map without a valid ring (replication factor above its node count) caches nil.
        var third = second
        third.epoch = 3
        third.placement = .simple(replicas: 5)
        #expect(service.ring(in: context(third)) == nil)
        #expect(service.ring(in: context(third)) == nil)
        try await fixture.shutdown()
    }
}
