package import KVCluster
package import KVCore
import KVRPC
import KVWire
package import Logging
import NIOCore
package import NIOPosix
import Synchronization

/// This node's view of its peers: a phi-accrual failure detector per peer (KVCluster's
/// `PeerHealthTable`, the one the SDK keeps too), fed by a `Ping` to every peer each `interval` (an
/// answer is a heartbeat; pings are not awaited one after the other, so a hung peer delays nobody).
/// Hint replay holds hints back for a suspected peer, and `Admin` stats report each peer's phi.
///
/// The pings also spread the cluster map: each carries this node's epoch, and when a peer answers
/// with (or pings with) a later epoch, the node fetches that peer's map and adopts it
/// (`gossip(from:epoch:)`).
public final class PeerHealth: Sendable {
    private let directory: PeerDirectory
    /// Every directory whose connections to a peer are told when it is back (`resumeDialling(_:)`).
    private let directories: [PeerDirectory]
    private let membership: Membership
    /// Each peer's failure detector.
    package let table: PeerHealthTable
    private let interval: Duration
    private let wallMillis: @Sendable () -> UInt64
    private let logger: Logger
    /// Where adopting a map (signature checks and an fsync) runs.
    private let pool: NIOThreadPool
    /// Fetches newer maps from the peers that report them, one at a time.
    private let follower: MapFollower
    /// The round trip of the last ping each peer answered.
    private let roundTrips = Mutex<[String: Duration]>([:])

    package init(
        directory: PeerDirectory, membership: Membership, detector: PhiAccrualDetector.Configuration,
        interval: Duration, wallMillis: @escaping @Sendable () -> UInt64, logger: Logger, pool: NIOThreadPool,
        otherDirectories: [PeerDirectory] = [], background: BackgroundWork = BackgroundWork()
    ) {
        self.pool = pool
        self.follower = MapFollower(background: background)
        self.directory = directory
        self.directories = [directory] + otherDirectories
        self.membership = membership
        self.table = PeerHealthTable(configuration: detector, wallMillis: wallMillis)
        table.watch(directory.all().map(\.id))
        self.interval = interval
        self.wallMillis = wallMillis
        self.logger = logger
    }

    /// The round trip, in seconds, of the last ping each peer still in the map answered (a dial
    /// included when the connection was new).
    package func pingSeconds() -> [String: Double] {
        let watched = Set(directory.all().map(\.id))
        return roundTrips.withLock { trips in
            trips.filter { watched.contains($0.key) }.mapValues { $0 / .seconds(1) }
        }
    }

    /// Pings every peer each interval until the task is cancelled.
    package func run() async {
        while !Task.isCancelled {
            let map = membership.current
            let epoch = map.epoch
            let peers = directory.all()
            table.watch(peers.map(\.id), forgettingOthers: true)
            let heartbeats = protocols.usesHeartbeats(map)
            for (id, client) in peers {
                let clock = wallMillis() << 16
                let sent = ContinuousClock.now
                // A probe: it dials a peer in its backoff window, so one that came back is found
                // within a ping interval.
                client.send(timeout: interval * 5, probe: true) { connection in
                    MemberProtocols.probe(epoch: epoch, clock: clock, heartbeats: heartbeats, on: connection)
                }.whenSuccess { answer in
                    let roundTrip = ContinuousClock.now - sent
                    self.roundTrips.withLock { $0[id] = roundTrip }
                    self.heartbeat(id)
                    self.resumeDialling(id)
                    switch answer {
                    case .pingResponse(let pong): self.gossip(from: id, epoch: pong.epoch)
                    case .heartbeatResponse(let beat): self.gossip(from: id, epoch: beat.epoch)
                    default: break
                    }
                }
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// The protocol versions of this node and of its peers, as its connections learned them.
    package var protocols: MemberProtocols { directory.protocols }

    /// `peer` reported `epoch`, later than this node's: fetch from it each map after this node's, one
    /// epoch at a time, and adopt each one whose proof holds (`Membership.learn`), until this node is
    /// level with the peer (`MapFollower`: one fetch at a time, the highest epoch reported meanwhile
    /// fetched next; failures only logged, the next ping tries again).
    package func gossip(from peer: String, epoch: UInt64) {
        let membership = self.membership
        follower.notice(epoch, from: peer, currentEpoch: { membership.current.epoch }) { peer in
            await self.catchUp(from: peer)
        }
    }

    /// Fetches and learns `peer`'s maps after this node's, up to `gossipEpochsMax` of them.
    private func catchUp(from peer: String) async {
        guard let client = directory.client(peer) else { return }
        do {
            for _ in 0..<Self.gossipEpochsMax {
                let known = membership.current.epoch
                guard known < UInt64.max else { return }
                let answer = try await client.call(
                    .clusterMapRequest(ClusterMapRequest(knownEpoch: known, epoch: known + 1)),
                    timeout: interval * 5)
                guard case .clusterMapResponse(let response) = answer else { return }
                guard let proof = response.proof?.mapProof else {
                    logger.notice(
                        "a peer sent a cluster map without its proof",
                        metadata: ["peer.node_id": "\(peer)", "cluster.epoch": "\(response.epoch)"])
                    return
                }
                let membership = self.membership
                let map = response.map
                // Checking signatures and an fsync: on the storage pool, not an async task's thread.
                let learning = try await pool.runIfActive { try membership.learn(map, proof: proof) }
                switch learning {
                case .adopted:
                    logger.info(
                        "adopted a newer cluster map",
                        metadata: ["peer.node_id": "\(peer)", "cluster.epoch": "\(response.epoch)"])
                case .notNewer, .gap:
                    return
                case .refused(let reason):
                    logger.warning(
                        "refused a peer's cluster map",
                        metadata: [
                            "peer.node_id": "\(peer)", "cluster.epoch": "\(response.epoch)", "reason": "\(reason)",
                        ])
                    return
                }
            }
        } catch {
            logger.debug(
                "cannot fetch the cluster map", metadata: ["peer.node_id": "\(peer)", "error": "\(error)"])
        }
    }

    /// Epochs one gossip fetches at most before the next ping resumes.
    static let gossipEpochsMax = 64

    /// Records an answer from `peer` (tests feed heartbeats directly).
    package func heartbeat(_ peer: String) {
        table.heartbeat(peer)
    }

    /// Evidence that `peer` is up (it answered a ping, or sent us one): every connection to it dials
    /// again at once instead of waiting out its backoff window, so anti-entropy, hint replay and
    /// streaming use a restarted peer as soon as it is back. A suspected peer gets a heartbeat too
    /// (hint replay waits for it to be trusted); a trusted one does not, so the failure detector's
    /// intervals stay those of our own pinger.
    package func resumeDialling(_ peer: String) {
        if table.isSuspected(peer) {
            table.heartbeat(peer)
        }
        for directory in directories {
            directory.client(peer)?.resumeDialling()
        }
    }
}
