import KVCore
import KVNode

/// A client's write made with a later map than its node's waits there for that map, as in `kvd`
/// (`ReplicaService.untilMap`, with `Membership.waits` and `ReplicaService.mapWaitMax`): it is
/// parked until the node adopts the write's epoch or a later one, or until the wait's bound, at most
/// `Membership.waitersMax` at once, and is then admitted or refused by the map the node has. A read
/// repair does not wait, and a crash drops what waits (its clients' connections are cut).
extension Simulation {
    /// Parks the write `envelope` at its node when it waits for a later map; whether it did.
    func parksForMap(_ envelope: Envelope) -> Bool {
        guard configuration.membershipProfile != nil, envelope.attempt != Envelope.repairAttempt,
            !envelope.waitedForMap
        else { return false }
        let nodeEpoch = membership.acceptors[envelope.node].committed.epoch
        let waiting = mapWaiters[envelope.node]?.count ?? 0
        guard Membership.waits(forEpoch: envelope.epoch, nodeEpoch: nodeEpoch, waiting: waiting) else { return false }
        let id = nextMapWaitID
        nextMapWaitID += 1
        mapWaiters[envelope.node, default: [:]][id] = envelope
        statistics.mapWaits += 1
        log("\(nodes[envelope.node].id) holds \(describe(envelope)) until it learns epoch \(envelope.epoch)")
        queue.push(
            .mapWaitEnd(node: envelope.node, id: id), at: now + ReplicaService.mapWaitMax.wholeMillisecondsClamped)
        return true
    }

    /// Hands on the writes waiting at `node` for a map it has now, in the order they arrived.
    func endMapWaits(at node: Int) {
        let epoch = membership.acceptors[node].committed.epoch
        let ready = (mapWaiters[node] ?? [:]).filter { $0.value.epoch <= epoch }.keys.sorted()
        for id in ready {
            endMapWait(at: node, id: id)
        }
    }

    /// Ends one write's wait (its map came, or the wait's bound passed): delivered again, not parked.
    func endMapWait(at node: Int, id: Int) {
        guard var envelope = mapWaiters[node]?.removeValue(forKey: id) else { return }
        envelope.waitedForMap = true
        queue.push(.deliver(envelope), at: now)
    }
}
