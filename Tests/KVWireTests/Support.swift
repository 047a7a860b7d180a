import Foundation
import KVCore
import KVWire
import NIOCore
import Testing

/// The repository root, found from this file's path so tests run from any working directory.
let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()  // KVWireTests
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()

let vectorsDirectory = repositoryRoot.appendingPathComponent("proto-spec/vectors")

extension ByteBuffer {
    /// Lower-case hex of the readable bytes.
    var hex: String {
        self.readableBytesView.map { byte in
            let digits = String(byte, radix: 16)
            return byte < 16 ? "0" + digits : digits
        }.joined()
    }

    /// Bytes from hex digits; whitespace is ignored. Traps on anything else (test input only).
    init(hex: String) {
        let digits = Array(hex.filter { !$0.isWhitespace })
        precondition(digits.count % 2 == 0, "odd number of hex digits")
        var buffer = ByteBuffer()
        var index = 0
        while index < digits.count {
            buffer.writeInteger(UInt8(String(digits[index...index + 1]), radix: 16)!)
            index += 2
        }
        self = buffer
    }
}

/// A deterministic generator for tests: SplitMix64.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Decodes a body with the per-type `read…()` function the message type names: exercises the public
/// streaming codec rather than `Message(frame:)`.
func readBody(_ type: MessageType, from buffer: inout ByteBuffer) throws(WireError) -> Message? {
    switch type {
    case .hello: try buffer.readHello().map(Message.hello)
    case .helloAck: try buffer.readHelloAck().map(Message.helloAck)
    case .error: try buffer.readErrorMessage().map(Message.error)
    case .putRequest: try buffer.readPutRequest().map(Message.putRequest)
    case .putResponse: try buffer.readPutResponse().map(Message.putResponse)
    case .getRequest: try buffer.readGetRequest().map(Message.getRequest)
    case .getResponse: try buffer.readGetResponse().map(Message.getResponse)
    case .hintRequest: try buffer.readHintRequest().map(Message.hintRequest)
    case .hintResponse: try buffer.readHintResponse().map(Message.hintResponse)
    case .merkleExchangeRequest: try buffer.readMerkleExchangeRequest().map(Message.merkleExchangeRequest)
    case .merkleExchangeResponse: try buffer.readMerkleExchangeResponse().map(Message.merkleExchangeResponse)
    case .merkleFetchRequest: try buffer.readMerkleFetchRequest().map(Message.merkleFetchRequest)
    case .merkleFetchResponse: try buffer.readMerkleFetchResponse().map(Message.merkleFetchResponse)
    case .merkleApplyRequest: try buffer.readMerkleApplyRequest().map(Message.merkleApplyRequest)
    case .merkleApplyResponse: try buffer.readMerkleApplyResponse().map(Message.merkleApplyResponse)
    case .clusterMapRequest: try buffer.readClusterMapRequest().map(Message.clusterMapRequest)
    case .clusterMapResponse: try buffer.readClusterMapResponse().map(Message.clusterMapResponse)
    case .mapPrepareRequest: try buffer.readMapPrepareRequest().map(Message.mapPrepareRequest)
    case .mapPrepareResponse: try buffer.readMapPrepareResponse().map(Message.mapPrepareResponse)
    case .mapAcceptRequest: try buffer.readMapAcceptRequest().map(Message.mapAcceptRequest)
    case .mapAcceptResponse: try buffer.readMapAcceptResponse().map(Message.mapAcceptResponse)
    case .mapCommitRequest: try buffer.readMapCommitRequest().map(Message.mapCommitRequest)
    case .mapCommitResponse: try buffer.readMapCommitResponse().map(Message.mapCommitResponse)
    case .pingRequest: try buffer.readPingRequest().map(Message.pingRequest)
    case .pingResponse: try buffer.readPingResponse().map(Message.pingResponse)
    case .heartbeatRequest: try buffer.readHeartbeatRequest().map(Message.heartbeatRequest)
    case .heartbeatResponse: try buffer.readHeartbeatResponse().map(Message.heartbeatResponse)
    case .streamRequest: try buffer.readStreamRequest().map(Message.streamRequest)
    case .streamResponse: try buffer.readStreamResponse().map(Message.streamResponse)
    case .adminRequest: try buffer.readAdminRequest().map(Message.adminRequest)
    case .adminResponse: try buffer.readAdminResponse().map(Message.adminResponse)
    case .nodeStats: try buffer.readNodeStats().map(Message.nodeStats)
    case .backupCheckpointRequest: try buffer.readBackupCheckpointRequest().map(Message.backupCheckpointRequest)
    case .backupCheckpointResponse: try buffer.readBackupCheckpointResponse().map(Message.backupCheckpointResponse)
    case .backupReadRequest: try buffer.readBackupReadRequest().map(Message.backupReadRequest)
    case .backupReadResponse: try buffer.readBackupReadResponse().map(Message.backupReadResponse)
    case .backupReleaseRequest: try buffer.readBackupReleaseRequest().map(Message.backupReleaseRequest)
    case .backupReleaseResponse: try buffer.readBackupReleaseResponse().map(Message.backupReleaseResponse)
    case .backupChangesRequest: try buffer.readBackupChangesRequest().map(Message.backupChangesRequest)
    case .getBatchRequest: try buffer.readGetBatchRequest().map(Message.getBatchRequest)
    case .getBatchResponse: try buffer.readGetBatchResponse().map(Message.getBatchResponse)
    case .putBatchRequest: try buffer.readPutBatchRequest().map(Message.putBatchRequest)
    case .putBatchResponse: try buffer.readPutBatchResponse().map(Message.putBatchResponse)
    case .hintBatchRequest: try buffer.readHintBatchRequest().map(Message.hintBatchRequest)
    case .hintBatchResponse: try buffer.readHintBatchResponse().map(Message.hintBatchResponse)
    }
}

/// Encodes `message` as a whole frame.
func encodeFrame(_ message: Message, requestID: UInt64) -> ByteBuffer {
    var buffer = ByteBuffer()
    buffer.writeFrame(message, requestID: requestID)
    return buffer
}

/// A frame with the given type and body bytes, as raw bytes on the wire.
func rawFrame(type: UInt8, requestID: UInt64 = 9, body: ByteBuffer) -> ByteBuffer {
    var buffer = ByteBuffer()
    buffer.writeFrame(Frame(type: type, requestID: requestID, flags: 0, body: body))
    return buffer
}
