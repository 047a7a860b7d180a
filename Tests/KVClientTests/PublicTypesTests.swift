import Foundation
import KVClient
import KVCore
import KVWire
import NIOCore
import Testing

/// The SDK's own public types: the bytes of each `KVBytes` type (and when they are copied), and the
/// levels, repair modes and versions that stand for KVCore's in the public API.
struct PublicTypesTests {
    static let text = "Grüße, 世界"

    @Test func everyBytesTypeCarriesTheSameBytes() {
        let bytes = Array(Self.text.utf8)
        let values: [any KVBytes] = [
            bytes, Self.text, Substring(Self.text), Data(bytes), ByteBuffer(bytes: bytes),
        ]
        for value in values {
            #expect(value.kvArray == bytes, "\(type(of: value))")
            #expect(value.kvBuffer == ByteBuffer(bytes: bytes), "\(type(of: value))")
        }
        #expect(String(kvBytes: bytes) == Self.text)
        #expect(Substring(kvBytes: bytes) == Substring(Self.text))
        #expect(Data(kvBytes: bytes) == Data(bytes))
        #expect(ByteBuffer(kvBytes: bytes) == ByteBuffer(bytes: bytes))
        #expect([UInt8](kvBytes: bytes) == bytes)
        // Invalid UTF-8 reads as U+FFFD, never a trap.
        #expect(String(kvBytes: [0x61, 0xFF]) == "a\u{FFFD}")
    }

    /// A `ByteBuffer` value is the buffer the frames are written from, and a `[UInt8]` key the array
    /// that is hashed: the same storage, not a copy.
    @Test func byteBufferValuesAndArrayKeysAreNotCopied() {
        let buffer = ByteBuffer(string: Self.text)
        let sameBuffer = buffer.withUnsafeReadableBytes { original in
            buffer.kvBuffer.withUnsafeReadableBytes { $0.baseAddress == original.baseAddress }
        }
        #expect(sameBuffer)
        let array = Array(Self.text.utf8)
        let sameArray = array.withUnsafeBufferPointer { original in
            array.kvArray.withUnsafeBufferPointer { $0.baseAddress == original.baseAddress }
        }
        #expect(sameArray)
    }

    @Test func valueReadsAsAnyBytesType() {
        let value = KVValue(value: Array(Self.text.utf8), version: KVVersion(hlc: 1 << 16, writer: 1))
        #expect(value.value(as: String.self) == Self.text)
        #expect(value.value(as: Data.self) == Data(Self.text.utf8))
        #expect(value.value(as: ByteBuffer.self) == ByteBuffer(string: Self.text))
    }

    @Test(arguments: ["one", "quorum", "all", "local_quorum", "each_quorum", "2", "QUORUM"])
    func consistencyParsesAndPrintsAsKVCoresLevel(_ text: String) throws {
        let level = try #require(KVConsistency(parsing: text))
        #expect(level.description == ConsistencyLevel(parsing: text)?.description)
        #expect(level.level == ConsistencyLevel(parsing: text))
        #expect(KVConsistency(level.level) == level)
        #expect(KVConsistency(parsing: level.description) == level)
    }

    @Test(arguments: ["", "most", "-1", "2.5"])
    func consistencyRefusesWhatIsNoLevel(_ text: String) {
        #expect(KVConsistency(parsing: text) == nil)
    }

    @Test func readRepairModesAreKVCoresModes() {
        #expect(KVReadRepair.none.mode == .none)
        #expect(KVReadRepair.background.mode == .background)
        #expect(KVReadRepair.blocking.mode == .blocking)
    }

    @Test func versionsOrderAndPrintAsStoredVersions() {
        let versions = [
            Version(hlc: 5 << 16, writer: 2), Version(hlc: 5 << 16, writer: 1), Version(hlc: 4 << 16 | 3, writer: 9),
        ]
        let sdk = versions.map(KVVersion.init)
        #expect(sdk.sorted().map(Version.init) == versions.sorted())
        for (version, sdkVersion) in zip(versions, sdk) {
            #expect(sdkVersion.description == version.description)
            #expect(sdkVersion.millis == version.millis)
            #expect(Version(sdkVersion) == version)
        }
    }

    @Test func errorsSayTheirKind() {
        #expect(KVClientError.invalidArgument("x").isInvalidArgument)
        #expect(KVClientError.unavailable("x").isUnavailable)
        #expect(KVClientError.conflict("x").isConflict)
        #expect(KVClientError.protocolViolation("x").isProtocolViolation)
        let refused = KVClientError.refused(.notAuthorized, "no")
        #expect(refused.isRefused && refused.refusal == "notAuthorized" && !refused.isUnavailable)
        #expect(KVClientError.unavailable("x").refusal == nil)
    }

    @Test func configurationFromAMissingClusterFileSaysWhich() {
        let tls = KVTLSConfiguration(caFile: "ca.pem", certificateFile: "c.pem", keyFile: "k.pem")
        let error = #expect(throws: KVClientError.self) {
            try KVClientConfiguration(clusterFile: "/nonexistent/cluster.yaml", tls: tls)
        }
        #expect(error?.isInvalidArgument == true)
        #expect(error?.message.contains("/nonexistent/cluster.yaml") == true, "\(String(describing: error))")
    }

    /// A batch window of no keys would hold every batch forever: the client refuses it, and says which
    /// setting, before reading any certificate.
    @Test func aClientRefusesABatchWindowOutOfBounds() {
        let tls = KVTLSConfiguration(caFile: "ca.pem", certificateFile: "c.pem", keyFile: "k.pem")
        for keys in [0, -1, 1_000_001] {
            var configuration = KVClientConfiguration(endpoints: ["127.0.0.1:7411"], tls: tls)
            configuration.batchKeysInFlightPerNode = keys
            let error = #expect(throws: KVClientError.self) { try KVClient(configuration: configuration) }
            #expect(error?.isInvalidArgument == true)
            #expect(error?.message.contains("batchKeysInFlightPerNode") == true, "\(String(describing: error))")
        }
    }
}
