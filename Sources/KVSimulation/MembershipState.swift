import Foundation
import KVCluster
import KVCore
import KVNode
import KVStorage

/// Who sends or receives a membership message.
enum Endpoint: Hashable {
    case node(Int)
    case client(Int)
    case `operator`
}

/// Map consensus (`MapPrepare`, `MapAccept`, their votes, `MapCommit`), gossip (`Ping` with the epoch,
/// `ClusterMap` fetches) and `Stream` pages.
enum MembershipMessage: CustomStringConvertible {
    case prepare(proposal: Int, epoch: UInt64, ballot: Ballot)
    case accept(proposal: Int, MapProposal)
    case vote(proposal: Int, phase: Int, voter: String, Result<MapVote, ReplyFailure>, signature: MapVoteSignature?)
    case commit(ClusterMap, MapProof)
    case ping(epoch: UInt64)
    case pong(epoch: UInt64)
    /// A map fetch: `epoch` 0 for the latest (clients), else that epoch (a node behind).
    case fetch(epoch: UInt64)
    /// A node's map of the epoch fetched, with its proof (nil for the first map).
    case map(ClusterMap, proof: MapProof?)
    /// A page of `range` of keyspace `keyspace` after `after` (`StreamRequest.keyspace`).
    case streamRequest(request: Int, range: TokenRangeSpan, after: [UInt8]?, keyspace: UInt32)
    case streamPage(request: Int, Result<StreamPage, ReplyFailure>)

    /// The decision phase of a prepare (1) or accept (2).
    var phase: Int {
        if case .accept = self { return 2 }
        return 1
    }

    var description: String {
        switch self {
        case .prepare(let id, let epoch, let ballot): "map prepare #\(id) epoch \(epoch) \(ballot)"
        case .accept(let id, let proposal): "map accept #\(id) epoch \(proposal.map.epoch)"
        case .vote(let id, let phase, let voter, let result, _): "map vote #\(id).\(phase) of \(voter): \(result)"
        case .commit(let map, _): "map commit epoch \(map.epoch)"
        case .ping(let epoch): "ping epoch \(epoch)"
        case .pong(let epoch): "pong epoch \(epoch)"
        case .fetch(let epoch): epoch == 0 ? "map fetch" : "map fetch epoch \(epoch)"
        case .map(let map, _): "map epoch \(map.epoch)"
        case .streamRequest(let request, let range, _, let keyspace):
            "stream #\(request) \(range)\(keyspace == Keyspace.defaultID ? "" : " of keyspace \(keyspace)")"
        case .streamPage(let request, .success(let page)):
            "stream page #\(request) \(page.records.count) record(s)\(page.done ? ", done" : "")"
        case .streamPage(let request, .failure(let failure)): "stream page #\(request) failed: \(failure.reason)"
        }
    }
}

/// Membership timers.
enum MembershipEvent {
    case operatorTick
    case nodeGossip(node: Int)
    case clientGossip(client: Int)
    case streamTick(node: Int)
    /// A stream request has had no answer for a request deadline.
    case streamTimeout(node: Int, request: Int)
    /// A decision's phase has had no answer from some voters for a request deadline.
    case proposalTimeout(proposal: Int, phase: Int)
    /// A client's map fetch (by its number) has had a request deadline to answer: it ends, answered
    /// or not, as the SDK's call times out.
    case mapFetchOver(client: Int, fetch: Int)
}

/// One map decision running.
struct ProposalRun {
    var proposer: MapProposer
    var owner: Endpoint
    var phase: Int
}

/// A node's transfer state that a crash forgets (its checkpoints are in the metadata of its
/// keyspaces' stores, one per keyspace, as `kvd`'s lanes keep them).
struct StreamState {
    struct InFlight {
        var request: Int
        /// The keyspace (lane) whose transfer asked the page.
        var keyspace: UInt32
        var position: Int
        var source: String
    }

    var inFlight: InFlight?
    /// Which of a range's sources the next request asks (moves on after a failure).
    var sourceCursor = 0
    /// The id of the node's `.streamed` decision running.
    var proposal: Int?
    var notBefore: UInt64 = 0
}

/// Everything membership adds to a run.
struct MembershipState {
    /// The store metadata of a node's `RangeTransfer.Checkpoint`, and of the ranges it holds (in each
    /// keyspace's store view, whose metadata names are its own).
    static let checkpointName = "stream.progress"
    static let heldName = "stream.held"

    /// Each node's voter state and committed map: durable (`kvd` fsyncs it before answering).
    var acceptors: [MapAcceptor]
    /// Each node's adopted maps with their proofs, by epoch (`kvd`'s map history), for peers behind.
    var histories: [[UInt64: (map: ClusterMap, proof: MapProof)]]
    /// Each client's map.
    var clients: [ClusterMap]
    /// Each client's map fetch running and the epoch reported meanwhile (the production rule).
    var clientFollowers: [MapFollowing]
    /// Each client's map fetches so far: a fetch's deadline event names its number.
    var clientFetches: [Int]
    /// The map the run started with (epoch 1).
    let firstMap: ClusterMap
    /// The map client c1 held when the operator proposed its first change: the sleeper's.
    var sleeperMap: ClusterMap?
    /// The latest map chosen or adopted anywhere: the invariants' ring.
    var latest: ClusterMap
    /// The one map of every epoch seen.
    var adopted: [UInt64: ClusterMap]
    var proposals: [Int: ProposalRun] = [:]
    var nextProposal = 0
    var nextRequest = 0
    /// The planned changes made so far.
    var planned = 0
    var operatorAttempt: Int?
    var streams: [StreamState]
    var settleDeadline: UInt64?
    /// Set when the membership ticks stop.
    var quiet = false
    /// Set when the settle time ran out (already reported).
    var settleFailed = false
    let rings: RingCache

    init(firstMap: ClusterMap, nodes: Int, clients: Int, configuration: SimulationConfiguration) {
        rings = RingCache(configuration: configuration)
        acceptors = Array(repeating: MapAcceptor(committed: firstMap), count: nodes)
        histories = Array(repeating: [:], count: nodes)
        self.clients = Array(repeating: firstMap, count: clients)
        clientFollowers = Array(repeating: MapFollowing(), count: clients)
        clientFetches = Array(repeating: 0, count: clients)
        self.firstMap = firstMap
        latest = firstMap
        adopted = [firstMap.epoch: firstMap]
        streams = Array(repeating: StreamState(), count: nodes)
    }

    /// A crash forgets a node's transfer in flight and the decisions it was running.
    mutating func forgetVolatileState(of node: Int) {
        streams[node] = StreamState()
        proposals = proposals.filter { $0.value.owner != .node(node) }
    }

    func ring(of map: ClusterMap) -> Ring { rings.rings(of: map).current }

    func nextRing(of map: ClusterMap) -> Ring { rings.rings(of: map).next }

    /// Which client requests `node` serves with `map` (`kvd`'s rule).
    func admission(of node: String, in map: ClusterMap) -> ReplicaAdmission { rings.admission(of: node, in: map) }

    /// The replicas of `key` in `map`'s current ring, then those only in its next ring (`map`: the map
    /// as the key's keyspace sees it).
    func owners(ofKey key: [UInt8], in map: ClusterMap) -> [String] {
        let rings = rings.rings(of: map)
        let current = rings.current.preferenceList(forKey: key)
        return current + rings.next.preferenceList(forKey: key).filter { !current.contains($0) }
    }

    /// What identifies a change (the production `RangeTransfer.changeID`), from the cached rings.
    func changeID(_ map: ClusterMap) -> String {
        let rings = rings.rings(of: map)
        return RangeTransfer.changeID(current: rings.current, next: rings.next)
    }
}

/// Rings and admissions built once per map: the one place the run builds its rings (the fixed
/// ring is the first map's), with the production `ClusterMap.ring()` and `nextRing()`.
final class RingCache {
    private var built: [ClusterMap: (current: Ring, next: Ring)] = [:]
    private var admissions: [ClusterMap: [String: ReplicaAdmission]] = [:]
    /// The run's configuration, for `Mutation.placementIgnoresZones`.
    private let configuration: SimulationConfiguration

    init(configuration: SimulationConfiguration) {
        self.configuration = configuration
    }

    func admission(of node: String, in map: ClusterMap) -> ReplicaAdmission {
        if let admission = admissions[map]?[node] { return admission }
        do {
            let admission = try ReplicaAdmission(node: node, map: map)
            admissions[map, default: [:]][node] = admission
            return admission
        } catch {
            preconditionFailure("a chosen map is not a valid ring: \(error)")
        }
    }

    func rings(of map: ClusterMap) -> (current: Ring, next: Ring) {
        if let rings = built[map] { return rings }
        do {
            let rings = (planted(try map.ring()), planted(try map.nextRing()))
            built[map] = rings
            return rings
        } catch {
            preconditionFailure("a chosen map is not a valid ring: \(error)")
        }
    }

    /// `built` with the mutation check's planted bug turned on when the run asks for it.
    private func planted(_ built: Ring) -> Ring {
        var ring = built
        ring.ignoresZones = configuration.mutation == .placementIgnoresZones
        return ring
    }
}

extension ReplyFailure {
    /// The reason a node gives for a key it does not keep in its map.
    static let notReplica = "notReplica"
}

extension Envelope {
    /// A node's refusal of a client's request for a key it does not keep.
    var isNotReplicaRefusal: Bool {
        switch payload {
        case .putReply(.failure(let failure)), .getReply(.failure(let failure)):
            failure.reason == ReplyFailure.notReplica
        default:
            false
        }
    }
}

/// Map votes in a run: a voter's "signature" is a hash of its name and the proposal, which the
/// proposer and every node check as they would a real one (`MapProposer`, `MapAcceptor.learn`).
struct SimulatedMapVotes: MapVoteSigner, MapVoteVerifier {
    /// The signing voter (unused for checking).
    let voter: String

    func sign(_ proposal: MapProposal) -> MapVoteSignature? {
        MapVoteSignature(voter: voter, certificate: [], signature: Self.signature(voter, proposal))
    }

    func verify(_ signature: MapVoteSignature, of proposal: MapProposal) -> Bool {
        signature.signature == Self.signature(signature.voter, proposal)
    }

    private static func signature(_ voter: String, _ proposal: MapProposal) -> [UInt8] {
        let text = "\(voter)|\(proposal.ballot)|\(proposal.map)"
        var value = XXH64.hash(Array(text.utf8), seed: 0).bigEndian
        return withUnsafeBytes(of: &value) { Array($0) }
    }
}
