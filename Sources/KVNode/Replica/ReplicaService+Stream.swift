import Foundation
import KVCore
import KVRPC
import KVStorage
import KVTLS
import KVWire
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Range transfers: pages of a range for a node that receives it in a membership change.
extension ReplicaService {
    /// Records in one `StreamResponse` at most.
    static let streamPageRecordsMax = min(Limits.listCountMax, 4096)

    /// Key and value bytes in one `StreamResponse` at most, whatever the request asks: half a frame
    /// leaves room for the records' other fields (a lone larger record still goes, and fits a frame).
    static let streamPageBytesMax = Limits.frameBytesMax / 2

    /// A bound on what a `StreamResponse` frame holds besides its keys and values (headers, lengths,
    /// versions, flags) when it carries one record.
    static let streamRecordOverhead = 1024

    /// Key and value bytes a `StreamResponse` may hold at least, whatever the request asks, so that a
    /// tiny `pageBytesMax` cannot make a stream take one round trip per small record.
    static let streamPageBytesMin = 1 << 10

    /// One page of a range this node replicates, for a node taking it over (`StreamRequest`): the
    /// records after `after`, in the order of the store (`RangeStreaming.streamPage`), with `next` the
    /// last one's key until `done`.
    ///
    /// Refused with `invalidRequest`: a node without a streaming store, a range not within one this
    /// node replicates in its current map, a resume key outside the range.
    func stream(_ request: StreamRequest, in context: KeyspaceContext) async throws -> Message {
        guard let streaming = context.streaming else {
            throw RPCError.remote(.invalidRequest, message: "this node does not stream ranges")
        }
        let range = TokenRangeSpan(start: request.range.start, end: request.range.end)
        guard ranges(in: context).contains(where: { $0.contains(range) }) else {
            throw RPCError.remote(.invalidRequest, message: "\(nodeID) does not replicate the whole range \(range)")
        }
        let after = request.after.map { Array($0.readableBytesView) }
        if let after, !range.contains(Token(key: after)) {
            throw RPCError.remote(
                .invalidRequest,
                message: "the resume key's token \(Token(key: after)) lies outside the streamed range \(range)")
        }
        let bytesMax = max(Self.streamPageBytesMin, min(Int(request.pageBytesMax), Self.streamPageBytesMax))
        let page = try await runOnPool { () throws(ReplicaError) -> StreamPage in
            do throws(StorageError) {
                return try streaming.streamPage(
                    in: range, after: after, recordsMax: Self.streamPageRecordsMax, bytesMax: bytesMax)
            } catch {
                throw ReplicaError.storage(error)
            }
        }
        // `next` repeats the last record's key. A lone record of a large key and a value near the limit
        // leaves no room for it in a frame: it is left out, and the receiver resumes after the last
        // record's key, as it always can.
        var next = page.done ? nil : page.records.last?.key
        if let key = next, page.records.count == 1,
            page.records[0].key.count + page.records[0].record.value.count + key.count + Self.streamRecordOverhead
                > Limits.frameBytesMax
        {
            next = nil
        }
        return .streamResponse(
            StreamResponse(
                records: page.records.map { Record(key: $0.key, $0.record) },
                next: next.map { ByteBuffer(bytes: $0) },
                done: page.done))
    }
}
