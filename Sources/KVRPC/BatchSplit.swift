import KVCore
public import KVWire

/// How the requests of one replica share batch frames (protocol version 4), and how a batch's answer
/// becomes each request's own: the one copy of the rule, for the SDK's batch operations and for the
/// client `Put`s a connection sends together (`RPCClientHandler`).
public enum BatchSplit {
    /// `items` cut into batches of at most `Limits.batchKeysMax` items and `Limits.batchAnswerBytesMax`
    /// bytes (an item larger than that goes alone).
    public static func chunks<Item>(_ items: [Item], bytes: (Item) -> Int) -> [[Item]] {
        chunkRanges(items.count) { bytes(items[$0]) }.map { Array(items[$0]) }
    }

    /// The positions of `count` items of `bytes(position)` bytes each, cut as `chunks` cuts them.
    public static func chunkRanges(_ count: Int, bytes: (Int) -> Int) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var start = 0
        var currentBytes = 0
        for index in 0..<count {
            let size = bytes(index)
            if index > start,
                index - start == Limits.batchKeysMax || currentBytes + size > Limits.batchAnswerBytesMax
            {
                ranges.append(start..<index)
                start = index
                currentBytes = 0
            }
            currentBytes += size
        }
        if count > start { ranges.append(start..<count) }
        return ranges
    }

    /// A `GetBatchResponse` as each key's `GetResponse` or `Error`; nil for another message or a count
    /// that is not the request's.
    public static func gets(_ message: Message, count: Int) -> [Result<Message, any Error>]? {
        guard case .getBatchResponse(let response) = message, response.items.count == count else { return nil }
        return response.items.map { item in
            if let error = item.error { return .failure(RPCError.remote(error.code, message: error.message)) }
            return .success(.getResponse(GetResponse(record: item.record, clock: response.clock)))
        }
    }

    /// A `PutBatchResponse` as each write's `PutResponse` or `Error`; nil as for `gets`.
    public static func puts(_ message: Message, count: Int) -> [Result<Message, any Error>]? {
        guard case .putBatchResponse(let response) = message, response.items.count == count else { return nil }
        return response.items.map { item in
            answer(item.outcome, or: item.error) {
                .putResponse(PutResponse(outcome: $0, current: item.current, clock: response.clock))
            }
        }
    }

    /// A `HintBatchResponse` as each hint's `HintResponse` or `Error`; nil as for `gets`.
    public static func hints(_ message: Message, count: Int) -> [Result<Message, any Error>]? {
        guard case .hintBatchResponse(let response) = message, response.items.count == count else { return nil }
        return response.items.map { item in
            answer(item.outcome, or: item.error) { .hintResponse(HintResponse(outcome: $0, clock: response.clock)) }
        }
    }

    /// An item of a write's batch as its own request's answer: `message(outcome)`, or its error when it
    /// has no outcome (an item with neither is the replica's bug).
    private static func answer<Outcome>(
        _ outcome: Outcome?, or error: BatchItemError?, _ message: (Outcome) -> Message
    ) -> Result<Message, any Error> {
        guard let outcome else {
            let error = error ?? BatchItemError(code: .internal, message: "neither outcome nor error")
            return .failure(RPCError.remote(error.code, message: error.message))
        }
        return .success(message(outcome))
    }
}

extension PutRequest {
    /// This client write as an item of a `PutBatchRequest` (whose keyspace and epoch it shares); the
    /// inverse of `PutBatchRequest.put(at:)`.
    public var batchItem: BatchPut {
        BatchPut(key: key, value: value, version: version, tombstone: tombstone, expiresAtMillis: expiresAtMillis)
    }
}

extension PutBatchRequest {
    /// Write `index` as the client `Put` it stands for: a replica answers each write of a batch as it
    /// answers that `Put`.
    public func put(at index: Int) -> PutRequest {
        let put = puts[index]
        return PutRequest(
            key: put.key, value: put.value, version: put.version, tombstone: put.tombstone, origin: .client,
            epoch: epoch, expiresAtMillis: put.expiresAtMillis, keyspace: keyspace)
    }
}
