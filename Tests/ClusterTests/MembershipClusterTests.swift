import Foundation
import KVClient
import KVCore
import Synchronization
import Testing

extension RealProcessTests.FirstHalf {
    /// Real processes: cluster-map changes are decided by the nodes, persisted, spread by gossip, and
    /// picked up by clients, while traffic goes on.
    @Suite(.timeLimit(.minutes(3)))
    struct MembershipClusterTests {
        @Test func aNodeMovedToAnotherAddressIsFollowedByPeersAndClientsWithoutFailedRequests() async throws {
            let spare = Loopback.host(84)
            let cluster = try ClusterHarness(nodes: 3, firstHost: 81, spareHosts: ["n3": spare])
            defer { cluster.tearDown() }
            try await offThePool { try cluster.startAll() }
            let client = try cluster.client(timeout: .seconds(5)) { configuration in
                configuration.healthCheckInterval = .milliseconds(200)
            }
            // Load at QUORUM all along: bounded in count and time.
            let failures = Mutex<[String]>([])
            let stop = Atomic<Bool>(false)
            let load = Task {
                var written = 0
                let deadline = ContinuousClock.now + .seconds(90)
                while !stop.load(ordering: .relaxed), written < 20_000, ContinuousClock.now < deadline {
                    let key = Array("move-\(written % 500)".utf8)
                    do {
                        try await client.put(key, value: Array("v\(written)".utf8))
                        _ = try await client.get(key)
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                    written += 1
                }
                return written
            }
            try await Task.sleep(for: .seconds(1))

            let moved = try await offThePool { try cluster.kvctl(["cluster", "set-address", "n3", spare + ":7411"]) }
            #expect(moved.status == 0, "\(moved.stderr)")
            #expect(moved.stdout.contains("epoch 2"), "\(moved.stdout)")
            cluster.stop("n3", signal: SIGTERM)
            cluster.relocate("n3", to: spare)
            try await offThePool { try cluster.start("n3") }

            // The load's client learns the new map from the nodes' pings and reaches n3 there.
            let deadline = ContinuousClock.now + .seconds(30)
            while try await client.clusterMap().epoch < 2, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await client.clusterMap().node("n3")?.address == spare + ":7411")
            // A write at ALL reaches n3 at its new address (once the connection's reconnect backoff,
            // from the attempts made before n3 listened there, has passed).
            var lastError: (any Error)?
            repeat {
                do {
                    try await client.put(Array("after-move".utf8), value: Array("x".utf8), consistency: .all)
                    lastError = nil
                } catch {
                    lastError = error
                    try await Task.sleep(for: .milliseconds(200))
                }
            } while lastError != nil && ContinuousClock.now < deadline + .seconds(15)
            #expect(lastError == nil, "\(lastError.map { "\($0)" } ?? ""); n3's log:\n\(cluster.log("n3"))")
            stop.store(true, ordering: .relaxed)
            let written = await load.value
            #expect(written > 10)
            #expect(failures.withLock { $0 }.isEmpty, "failed requests: \(failures.withLock { $0.prefix(5) })")

            // Every node holds epoch 2, also after a restart with the (older) cluster file.
            cluster.stop("n1")
            try await offThePool { try cluster.start("n1") }
            let show = try await offThePool { try cluster.kvctl(["cluster", "show", "--json"]) }
            #expect(show.status == 0, "\(show.stderr)")
            let document = try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any]
            #expect(document?["epoch"] as? Int == 2, "\(show.stdout)")
            let epochs = (document?["nodes"] as? [[String: Any]] ?? []).map { $0["epoch"] as? Int }
            #expect(epochs == [2, 2, 2], "\(show.stdout)")

            // Two operators change the map at once: one change is made, the other is refused, and
            // every node ends on the same map.
            let first = try cluster.client(certificate: "admin")
            let second = try cluster.client(certificate: "admin")
            /// One operator's attempt, its outcome kept.
            func attempt(_ client: KVClient, _ address: String) async -> Result<ClusterMap, any Error> {
                do {
                    return .success(try await client.changeCluster(.setAddress(node: "n2", address: address)))
                } catch {
                    return .failure(error)
                }
            }
            async let a = attempt(first, Loopback.host(85) + ":7411")
            async let b = attempt(second, Loopback.host(86) + ":7411")
            let outcomes = await [a, b]
            let made = outcomes.compactMap { try? $0.get() }
            #expect(made.count <= 1, "both conflicting changes were made: \(made)")
            for case .failure(let error) in outcomes {
                #expect(error is ClusterChangeError, "\(error)")
            }
            let settled = ContinuousClock.now + .seconds(20)
            var maps: Set<ClusterMap> = []
            repeat {
                try await Task.sleep(for: .milliseconds(300))
                maps = [try await first.clusterMap(node: "n1"), try await first.clusterMap(node: "n3")]
            } while maps.count > 1 && ContinuousClock.now < settled
            #expect(maps.count == 1, "nodes disagree: \(maps)")
            if let winner = made.first { #expect(maps.first == winner) }
            await first.close()
            await second.close()
            await client.close()
        }
    }
}
