package import KVCore
package import KVRPC
import KVWire
import NIOCore
import Synchronization

/// This node's view of its peers: a phi-accrual failure detector per peer (`PhiAccrualDetector`), fed
/// by a `Ping` to every peer each `interval` (an answer is a heartbeat; pings are not awaited one
/// after the other, so a hung peer delays nobody). Hint replay holds hints back for a suspected peer,
/// and `Admin` stats report each peer's phi.
public final class PeerHealth: Sendable {
    private let peers: [String: RPCClient]
    private let detectors: Mutex<[String: PhiAccrualDetector]>
    private let interval: Duration
    private let epoch: UInt64
    private let wallMillis: @Sendable () -> UInt64

    package init(
        peers: [String: RPCClient], detector: PhiAccrualDetector.Configuration, interval: Duration, epoch: UInt64,
        wallMillis: @escaping @Sendable () -> UInt64
    ) {
        self.peers = peers
        let now = wallMillis()
        self.detectors = Mutex(peers.mapValues { _ in PhiAccrualDetector(configuration: detector, watchingFrom: now) })
        self.interval = interval
        self.epoch = epoch
        self.wallMillis = wallMillis
    }

    /// Pings every peer each interval until the task is cancelled.
    package func run() async {
        while !Task.isCancelled {
            for (id, client) in peers {
                let ping = Message.pingRequest(PingRequest(epoch: epoch, clock: wallMillis() << 16))
                client.send(ping, timeout: interval * 5).whenSuccess { _ in self.heartbeat(id) }
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// Records an answer from `peer` (tests feed heartbeats directly).
    package func heartbeat(_ peer: String) {
        let now = wallMillis()
        detectors.withLock { $0[peer]?.heartbeat(atMillis: now) }
    }

    /// Whether the detector suspects `peer` now (false for a peer it does not know).
    package func isSuspected(_ peer: String) -> Bool {
        let now = wallMillis()
        return detectors.withLock { $0[peer]?.isSuspected(atMillis: now) ?? false }
    }

    /// The peers suspected now.
    package func suspected() -> Set<String> {
        let now = wallMillis()
        return detectors.withLock { Set($0.filter { $0.value.isSuspected(atMillis: now) }.keys) }
    }

    /// Each peer's phi now.
    package func phi() -> [String: Double] {
        let now = wallMillis()
        return detectors.withLock { $0.mapValues { $0.phi(atMillis: now) } }
    }
}
