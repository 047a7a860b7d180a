import KVCore
import KVRPC
import KVStorage
import KVTLS
import KVWire
import NIOCore
import Synchronization

/// Batches (protocol version 4): many keys of one keyspace in one request. Each key goes through
/// exactly what its own `Get` or `Put` would (`checkAdmitted`, `read`'s store call, `write`'s checks
/// and group commit) and gets its own answer or error; the batch only saves the round trips.
extension ReplicaService {
    /// Reads every key of `batch` in one pool job; a key refused (`notReplica`, a bad key) or whose
    /// read failed answers its error, and the keys after the answer reached
    /// `Limits.batchAnswerBytesMax` bytes of records answer `overloaded` (ask again).
    func readBatch(_ batch: GetBatchRequest, in context: KeyspaceContext) async throws -> Message {
        let (items, admitted) = admit(batch, in: context)
        let (replica, keys) = (context.replica, admitted.map(\.key))
        let read = try await runOnPool {
            () throws(ReplicaError) -> (results: [Result<StoredRecord?, ReplicaError>], clock: UInt64) in
            // `get` always finds what the store holds.
            Self.readInOrder(keys) { key throws(ReplicaError) in try replica.get(key: key) }!
        }
        return answer(items, admitted: admitted, read: read)
    }

    /// `readBatch`'s answer when RocksDB holds every key it reads in memory (`Replica.getFromMemory`),
    /// read on the calling thread; nil, with nothing answered, when one of them would need a file read.
    func readBatchFromMemory(_ batch: GetBatchRequest, in context: KeyspaceContext) -> Message? {
        let (items, admitted) = admit(batch, in: context)
        let replica = context.replica
        let read = Self.readInOrder(admitted.map(\.key)) { key throws(ReplicaError) in
            try replica.getFromMemory(key: key)
        }
        return read.map { answer(items, admitted: admitted, read: $0) }
    }

    /// The batch's answer items, with the refused keys' errors set, and the keys admitted to be read.
    private func admit(_ batch: GetBatchRequest, in context: KeyspaceContext) -> (
        items: [GetBatchItem], admitted: [(index: Int, key: [UInt8])]
    ) {
        var items = [GetBatchItem](repeating: GetBatchItem(record: nil, error: nil), count: batch.keys.count)
        var admitted: [(index: Int, key: [UInt8])] = []
        admitted.reserveCapacity(batch.keys.count)
        for (index, bytes) in batch.keys.enumerated() {
            let key = Array(bytes.readableBytesView)
            do {
                try checkAdmitted(key, write: false, in: context)
                admitted.append((index, key))
            } catch {
                items[index].error = itemError(error, answering: .getRequest)
            }
        }
        return (items, admitted)
    }

    /// Reads `keys` in order with `read` until the records read reach the answer's budget; the rest
    /// are not read. Nil when `read` found one key only on disk (it answers nil).
    private static func readInOrder(
        _ keys: [[UInt8]], _ read: ([UInt8]) throws(ReplicaError) -> (record: StoredRecord?, clock: UInt64)?
    ) -> (results: [Result<StoredRecord?, ReplicaError>], clock: UInt64)? {
        var clock: UInt64 = 0
        var answerBytes = 0
        var results: [Result<StoredRecord?, ReplicaError>] = []
        for key in keys where answerBytes <= Limits.batchAnswerBytesMax {
            do throws(ReplicaError) {
                guard let (record, seen) = try read(key) else { return nil }
                clock = max(clock, seen)
                answerBytes += key.count + (record?.value.count ?? 0)
                results.append(.success(record))
            } catch {
                results.append(.failure(error))
            }
        }
        return (results, clock)
    }

    /// The `GetBatchResponse` of the admitted keys' reads, in the batch's order.
    private func answer(
        _ items: [GetBatchItem], admitted: [(index: Int, key: [UInt8])],
        read: (results: [Result<StoredRecord?, ReplicaError>], clock: UInt64)
    ) -> Message {
        var items = items
        for (position, (index, key)) in admitted.enumerated() {
            guard position < read.results.count else {
                items[index].error = BatchItemError(
                    code: .overloaded,
                    message: "the batch's answer reached \(Limits.batchAnswerBytesMax) bytes: ask for this key again")
                continue
            }
            switch read.results[position] {
            case .success(let record):
                items[index].record = record.map { Record(key: key, $0) }
            case .failure(let error):
                items[index].error = itemError(wireError(error), answering: .getRequest)
            }
        }
        return .getBatchResponse(GetBatchResponse(items: items, clock: max(read.clock, tick(observing: 0))))
    }

    /// Hands every write of `batch` to the keyspace's group commit together (so they share its write
    /// batch and fsync), as client `Put`s with the batch's epoch; `completion` gets the answer once the
    /// last is written, on the thread that wrote it. Called on an event loop (`answerWithoutTask`), the
    /// writes go to that loop's lane, as a `Put` read there does.
    func writeBatch(
        _ batch: PutBatchRequest, from peer: PeerIdentity, in context: KeyspaceContext,
        completion: @escaping @Sendable (Message) -> Void
    ) {
        let queue = storageQueue
        answering(
            batch.puts.count,
            handingOver: { queue.holdingWrites(to: context.replica, keyspace: context.id, $0) },
            send: { index, answer in
                try self.write(batch.put(at: index), from: peer, in: context, completion: answer)
            }
        ) { answers in
            var clock = self.tick(observing: 0)
            let items = answers.map { answer -> PutBatchItem in
                switch answer {
                case .success(.putResponse(let response)):
                    clock = max(clock, response.clock)
                    return PutBatchItem(outcome: response.outcome, current: response.current, error: nil)
                case .success(let other):
                    return PutBatchItem(
                        outcome: nil, current: Version(hlc: 0, writer: 0),
                        error: BatchItemError(code: .internal, message: "a write answered \(other.type)"))
                case .failure(let error):
                    return PutBatchItem(
                        outcome: nil, current: Version(hlc: 0, writer: 0),
                        error: self.itemError(error, answering: .putRequest))
                }
            }
            completion(.putBatchResponse(PutBatchResponse(items: items, clock: clock)))
        }
    }

    /// `writeBatch(_:from:in:completion:)`, awaited.
    func writeBatch(_ batch: PutBatchRequest, from peer: PeerIdentity, in context: KeyspaceContext) async
        -> Message
    {
        await withCheckedContinuation { continuation in
            writeBatch(batch, from: peer, in: context) { continuation.resume(returning: $0) }
        }
    }

    /// Keeps every hint of `batch` as its own `Hint` would be kept (`storeHint`: the target check,
    /// the queue bounds, the mark of a refused hint's range), all handed to the hint group commit
    /// together, so that they share its store writes (the first may start a write of its own);
    /// `completion` gets the answer once the last is kept.
    func storeHints(
        _ batch: HintBatchRequest, in context: KeyspaceContext, completion: @escaping @Sendable (Message) -> Void
    ) {
        answering(
            batch.hints.count,
            send: { index, answer in
                let hint = batch.hints[index]
                try self.storeHint(
                    HintRequest(target: hint.target, record: hint.record, keyspace: batch.keyspace), in: context,
                    completion: answer)
            }
        ) { answers in
            var clock = self.tick(observing: 0)
            let items = answers.map { answer -> HintBatchItem in
                switch answer {
                case .success(.hintResponse(let response)):
                    clock = max(clock, response.clock)
                    return HintBatchItem(outcome: response.outcome, error: nil)
                case .success(let other):
                    return HintBatchItem(
                        outcome: nil, error: BatchItemError(code: .internal, message: "a hint answered \(other.type)"))
                case .failure(let error):
                    return HintBatchItem(outcome: nil, error: self.itemError(error, answering: .hintRequest))
                }
            }
            completion(.hintBatchResponse(HintBatchResponse(items: items, clock: clock)))
        }
    }

    /// `storeHints(_:in:completion:)`, awaited.
    func storeHints(_ batch: HintBatchRequest, in context: KeyspaceContext) async -> Message {
        await withCheckedContinuation { continuation in
            storeHints(batch, in: context) { continuation.resume(returning: $0) }
        }
    }

    /// Hands over `count` requests with `send` (each answers through the completion it is given, on
    /// any thread; one that throws answers that), all inside `handingOver`, and calls `done` with every
    /// answer, in order, once the last is in (on the thread that gave it).
    private func answering(
        _ count: Int, handingOver: (() -> Void) -> Void = { $0() },
        send: @escaping (Int, @escaping @Sendable (Result<Message, any Error>) -> Void) throws -> Void,
        done: @escaping @Sendable ([Result<Message, any Error>]) -> Void
    ) {
        let collected = BatchAnswers(count: count, done: done)
        handingOver {
            for index in 0..<count {
                do {
                    try send(index) { collected.answer(index, with: $0) }
                } catch {
                    collected.answer(index, with: .failure(error))
                }
            }
        }
    }

    /// What the `Error` answering the key's own request would have said.
    private func itemError(_ error: any Error, answering type: MessageType) -> BatchItemError {
        let message = RPCServer.errorMessage(answering: error, to: type, logger: logger)
        return BatchItemError(code: message.code, message: message.message)
    }
}

/// The answers of a batch's writes, which complete on pool threads in any order: hands them over, in
/// the batch's order, when the last one is in.
private final class BatchAnswers: Sendable {
    private struct State {
        var answers: [Result<Message, any Error>?]
        var missing: Int
    }

    private let state: Mutex<State>
    private let done: @Sendable ([Result<Message, any Error>]) -> Void

    init(count: Int, done: @escaping @Sendable ([Result<Message, any Error>]) -> Void) {
        self.state = Mutex(State(answers: Array(repeating: nil, count: count), missing: count))
        self.done = done
        if count == 0 { done([]) }
    }

    func answer(_ index: Int, with result: Result<Message, any Error>) {
        let complete = state.withLock { state -> [Result<Message, any Error>]? in
            guard state.answers[index] == nil else { return nil }
            state.answers[index] = result
            state.missing -= 1
            return state.missing == 0 ? state.answers.compactMap { $0 } : nil
        }
        if let complete { done(complete) }
    }
}
