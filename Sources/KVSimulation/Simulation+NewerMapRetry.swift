import KVCore

/// Clients retrying on a newer cluster map, as the SDK does (`KVClient`): a node that refuses a
/// request with `notReplica` makes the client fetch that node's map; when a try of a read, write or
/// delete fails while the client is fetching a map, the client waits for the answer (at most a request
/// deadline, so a lost fetch cannot hang it) and asks the production `NewerMapRetry` whether to run
/// the operation again on the map it holds now. A retry is the same operation (one history entry, the
/// same value) planned anew on that map; its messages and timers carry its `OperationTry`, so replies
/// of the failed try cannot be taken for its own.
extension Simulation {
    /// A client fetches `node`'s map: refused with `notReplica` there, or told of a later epoch by
    /// gossip. The fetch is outstanding until that node's map arrives or a request deadline passed.
    func refreshMap(ofClient index: Int, from node: Int) {
        guard index >= 0 else { return }
        membership.clientFetches[index][node] = now
        sendMembership(.fetch(epoch: 0), from: .client(index), to: .node(node))
    }

    /// When the last map fetch the client is waiting for gives up; nil when none is outstanding.
    func mapFetchDeadline(ofClient index: Int) -> UInt64? {
        let deadline = requestDeadlineMillis
        return membership.clientFetches[index].values.map { $0 + deadline }.filter { $0 > now }.max()
    }

    /// A node's map reached a client (installed already when newer): a failed try that waited for it
    /// decides once no fetch is outstanding; a client waiting to start starts.
    func mapArrived(atClient index: Int, from node: Int) {
        membership.clientFetches[index][node] = nil
        if clients[index].awaitsFirstMap {
            clients[index].awaitsFirstMap = false
            queue.push(.startOperation(client: index), at: now)
        }
        if case .awaitingMap(let failure) = clients[index].current, mapFetchDeadline(ofClient: index) == nil {
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
        guard let until = mapFetchDeadline(ofClient: index) else {
            retryOnNewerMap(index, failure: failure)
            return
        }
        let operation = clients[index].currentTry
        log("\(clients[index].name) \(operation) \(failure); waits for the map it is fetching")
        clients[index].current = .awaitingMap(failure: failure)
        queue.push(.membership(.mapWaitOver(client: index, operation: operation)), at: until)
    }

    /// The wait for a map after a failed try is over (answered, or a request deadline passed): run the
    /// operation again if `NewerMapRetry` allows it on the client's map now, or fail with `failure`.
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

    /// A failed try's wait for a map ran out: decide with the map the client holds.
    func mapWaitOver(_ index: Int, operation: OperationTry) {
        guard clients[index].currentTry == operation, case .awaitingMap(let failure) = clients[index].current else {
            return
        }
        retryOnNewerMap(index, failure: failure)
    }
}
