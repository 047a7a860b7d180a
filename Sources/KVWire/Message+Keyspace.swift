extension Message {
    /// The keyspace a request about keys names (`keyspace`: 0 for the default keyspace), as the peer
    /// sent it, so not necessarily one the node knows; nil for a message about no keyspace (the
    /// handshake, pings, maps, admin, streams of the whole node, and every answer).
    public var keyspaceID: UInt32? {
        switch self {
        case .putRequest(let request): request.keyspace
        case .getRequest(let request): request.keyspace
        case .hintRequest(let request): request.keyspace
        case .merkleExchangeRequest(let request): request.keyspace
        case .merkleFetchRequest(let request): request.keyspace
        case .merkleApplyRequest(let request): request.keyspace
        case .streamRequest(let request): request.keyspace
        case .getBatchRequest(let request): request.keyspace
        case .putBatchRequest(let request): request.keyspace
        case .hintBatchRequest(let request): request.keyspace
        default: nil
        }
    }
}
