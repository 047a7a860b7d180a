import Foundation
import KVCluster
import KVCore
import KVRPC
import KVStorage
import KVTLS
import KVWire
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Map agreement: the map of an epoch, votes on proposed maps, and chosen maps with their proof.
extension ReplicaService {
    /// The map of the asked epoch (0: the latest) with its proof, if this node keeps it.
    func answer(_ request: ClusterMapRequest) async throws -> Message {
        let kept = try await onMembership { (membership) throws(StorageError) in
            try membership.map(atEpoch: request.epoch)
        }
        guard let (map, proof) = kept else {
            throw RPCError.remote(.invalidRequest, message: "epoch \(request.epoch) is not kept here")
        }
        var response = ClusterMapResponse(map, proof: proof)
        if let protocols = health?.protocols {
            // The members of the map answered (a peer since removed is left out), sorted by id.
            let known = protocols.known()
            response.memberVersions = map.nodes.filter { $0.state != .removed }.map(\.id).sorted().compactMap { id in
                known[id].map { MemberVersionBody(nodeId: id, protocolVersion: $0) }
            }
        }
        // Left out for a peer that negotiated version 3 (RPCServer restricts every answer).
        return .clusterMapResponse(response)
    }

    func answer(_ prepare: MapPrepareRequest, from peer: PeerIdentity) async throws -> Message {
        let now = try checked(prepare.ballot, from: peer)
        let (vote, epoch) = try await onMembership { (membership) throws(StorageError) in
            try membership.prepare(epoch: prepare.epoch, ballot: prepare.ballot, nowMillis: now)
        }
        return .mapPrepareResponse(MapPrepareResponse(vote, epoch: epoch))
    }

    /// This node's wall clock, once `ballot` from `peer` passed `Ballot.refusal` (else `invalidRequest`).
    private func checked(_ ballot: Ballot, from peer: PeerIdentity) throws -> UInt64 {
        let now = wallMillis()
        if let refusal = ballot.refusal(from: peer.name, nowMillis: now) {
            throw RPCError.remote(.invalidRequest, message: refusal)
        }
        return now
    }

    /// This node's vote on a proposed map, signed with its key when it accepts.
    func answer(_ request: MapAcceptRequest, from peer: PeerIdentity) async throws -> Message {
        let now = try checked(request.ballot, from: peer)
        let proposal = MapProposal(ballot: request.ballot, map: request.map.map)
        let ((vote, signature), epoch) = try await onMembership { (membership) throws(StorageError) in
            try membership.accept(proposal, nowMillis: now)
        }
        return .mapAcceptResponse(MapAcceptResponse(vote, epoch: epoch, signature: signature))
    }

    /// A chosen map, adopted only as the next epoch with a majority's proof.
    func answer(_ commit: MapCommitRequest, from peer: PeerIdentity) async throws -> Message {
        let (map, proof) = (commit.map.map, commit.proof.mapProof)
        let (learning, epoch) = try await onMembership { (membership) throws(StorageError) in
            (try membership.learn(map, proof: proof), membership.current.epoch)
        }
        switch learning {
        case .adopted, .notNewer:
            break
        case .gap:
            // Behind by more than one epoch: fetch the maps in between from the committer.
            if peer.role == .node { health?.gossip(from: peer.name, epoch: map.epoch) }
        case .refused(let reason):
            statistics.mapsRefused.add(1, ordering: .relaxed)
            throw RPCError.remote(.invalidRequest, message: reason)
        }
        return .mapCommitResponse(MapCommitResponse(epoch: epoch))
    }

    /// Runs a vote or commit on the thread pool: it fsyncs before answering.
    func onMembership<T: Sendable>(
        _ body: @escaping @Sendable (Membership) throws(StorageError) -> T
    ) async throws -> T {
        let membership = self.membership
        return try await runOnPool { () throws(ReplicaError) -> T in
            do throws(StorageError) {
                return try body(membership)
            } catch {
                throw ReplicaError.storage(error)
            }
        }
    }
}
