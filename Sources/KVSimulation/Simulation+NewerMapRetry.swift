import KVCluster
import KVCore

/// Clients following the cluster map and retrying on a newer one, as the SDK does (`KVClient`): a
/// node that reports a later epoch (gossip) or refuses a request with `notReplica` is reported to the
/// client's production `MapFollowing`, which says whose map to fetch, one fetch at a time. A fetch
/// ends when that node's map arrives or a request deadline passed, as the SDK's call times out. When a
/// try of a read, write or delete fails while the client is fetching, the client waits for the
/// fetches to end and asks the production `NewerMapRetry` whether to run the operation again on the
/// map it holds then. A retry is the same operation (one history entry, the same value) planned anew
/// on that map; its messages and timers carry its `OperationTry`, so replies of the failed try cannot
/// be taken for its own.
extension Simulation {
    /// `node` told client `index` of `epoch` (`UInt64.max`: only that its map is newer, as a
    /// `notReplica` refusal does).
    func noticeEpoch(_ epoch: UInt64, ofClient index: Int, from node: Int) {
        guard index >= 0 else { return }
        let current = membership.clients[index].epoch
        if let next = membership.clientFollowers[index].notice(epoch, from: nodes[node].id, currentEpoch: current) {
            fetchMap(ofClient: index, from: next)
        }
    }

    /// Sends client `index`'s fetch to node `id`, with its deadline.
    private func fetchMap(ofClient index: Int, from id: String) {
        membership.clientFetches[index] += 1
        sendMembership(.fetch(epoch: 0), from: .client(index), to: .node(nodeIndex(id)))
        queue.push(
            .membership(.mapFetchOver(client: index, fetch: membership.clientFetches[index])),
            at: now + requestDeadlineMillis)
    }

    /// A node's map reached a client (installed already when newer): the fetch from that node ends.
    func mapArrived(atClient index: Int, from node: Int) {
        guard membership.clientFollowers[index].fetching == nodes[node].id else { return }
        fetchEnded(ofClient: index)
    }

    /// A fetch's deadline passed: it ends, unless it ended already.
    func mapFetchOver(ofClient index: Int, fetch: Int) {
        guard membership.clientFetches[index] == fetch, membership.clientFollowers[index].fetching != nil else {
            return
        }
        log("\(clients[index].name) had no map from \(membership.clientFollowers[index].fetching ?? "")")
        fetchEnded(ofClient: index)
    }

    /// The running fetch ended: the next one starts, or, none left, a failed try that waited decides
    /// and a client waiting to start starts.
    private func fetchEnded(ofClient index: Int) {
        let current = membership.clients[index].epoch
        if let next = membership.clientFollowers[index].fetchEnded(currentEpoch: current) {
            fetchMap(ofClient: index, from: next)
            return
        }
        if clients[index].awaitsFirstMap {
            clients[index].awaitsFirstMap = false
            log("\(clients[index].name) starts with epoch \(current)")
            queue.push(.startOperation(client: index), at: now)
        }
        if case .awaitingMap(let failure) = clients[index].current {
            retryOnNewerMap(index, failure: failure)
        }
    }

    /// A try of the current operation failed (`failure` says how). In a membership run the client,
    /// like the SDK, first waits for the map it is fetching, if any, then retries on a newer map.
    func tryFailed(_ index: Int, failure: String) {
        guard configuration.membershipProfile != nil else {
            operationFailed(index, failure: failure)
            return
        }
        guard membership.clientFollowers[index].fetching != nil else {
            retryOnNewerMap(index, failure: failure)
            return
        }
        log("\(clients[index].name) \(clients[index].currentTry) \(failure); waits for the map it is fetching")
        clients[index].current = .awaitingMap(failure: failure)
    }

    /// The wait for a map after a failed try is over: run the operation again if `NewerMapRetry`
    /// allows it on the client's map now, or fail with `failure`.
    func retryOnNewerMap(_ index: Int, failure: String) {
        let failed = clients[index].currentTry
        let epoch = membership.clients[index].epoch
        let previous = clients[index].newerMapRetry.epoch
        guard clients[index].newerMapRetry.retry(onEpoch: epoch) else {
            operationFailed(index, failure: failure)
            return
        }
        statistics.newerMapRetries += 1
        log("\(clients[index].name) \(failed) \(failure) on epoch \(previous): tries again on epoch \(epoch)")
        clients[index].current = nil
        startTry(index)
    }
}
