import KVCore
import KVRPC
import Testing

@testable import KVClient

/// How a batch's keys for one replica are cut into requests: at most `batchKeysMax` keys and
/// `batchAnswerBytesMax` bytes each, in order, an item larger than that alone.
@Suite struct BatchChunkTests {
    @Test func keysAreCutAtTheCountLimitInOrder() {
        let items = Array(0..<(2 * Limits.batchKeysMax + 5))
        let chunks = BatchSplit.chunks(items) { _ in 1 }
        #expect(chunks.map(\.count) == [Limits.batchKeysMax, Limits.batchKeysMax, 5])
        #expect(chunks.flatMap { $0 } == items)
    }

    @Test func bytesCutTooAndALargeItemGoesAlone() {
        let half = Limits.batchAnswerBytesMax / 2
        let sizes = [half, half, 1, Limits.batchAnswerBytesMax + 1, 1]
        let chunks = BatchSplit.chunks(Array(sizes.indices)) { sizes[$0] }
        #expect(chunks == [[0, 1], [2], [3], [4]])
    }

    @Test func nothingMakesNoRequest() {
        #expect(BatchSplit.chunks([Int]()) { _ in 1 }.isEmpty)
    }
}
