import KVCore
import KVWire
import NIOCore
import Testing

/// A named sample message: the round-trip tests encode every one, and `proto-spec/vectors/NAME.hex`
/// holds its frame.
struct Sample: Sendable, CustomTestStringConvertible {
    var name: String
    /// The values, as the vector file's comment states them.
    var summary: String
    var requestID: UInt64
    var message: Message

    var testDescription: String { self.name }
}

private func bytes(_ string: String) -> ByteBuffer { ByteBuffer(string: string) }

/// A `simple` placement of `replicas` nodes, as every map without zones carries it.
private func simple(_ replicas: UInt8) -> PlacementBody {
    PlacementBody(kind: .simple, replicas: replicas, perZone: 0, zones: [])
}

/// 1_700_000_000_000 ms (2023-11-14T22:13:20Z), counter 3: 0x018bcfe568000003.
private let hlc: UInt64 = 1_700_000_000_000 << 16 | 3
private let version = Version(hlc: hlc, writer: 0x0000_0000_00AB_CDEF)
private let newerVersion = Version(hlc: hlc + 0x1_0000, writer: 0x42)

enum Samples {
    static let all: [Sample] = [
        Sample(
            name: "hello",
            summary:
                "Hello, request id 1: protocolVersion 3, clusterId \"qkv-test\", senderId \"client-1\", role client (2), epoch 7",
            requestID: 1,
            message: .hello(
                Hello(protocolVersion: 3, clusterId: "qkv-test", senderId: "client-1", role: .client, epoch: 7)
            )
        ),
        Sample(
            name: "hello-ack",
            summary:
                "HelloAck, request id 1: protocolVersion 3, clusterId \"qkv-test\", nodeId \"n1\", epoch 7, clock 0x018bcfe568000004",
            requestID: 1,
            message: .helloAck(
                HelloAck(protocolVersion: 3, clusterId: "qkv-test", nodeId: "n1", epoch: 7, clock: hlc + 1)
            )
        ),
        Sample(
            name: "hello-v4",
            summary:
                "Hello, request id 1: protocolVersion 4, clusterId \"qkv-test\", senderId \"client-1\", role client (2), epoch 7, lowestVersion 3",
            requestID: 1,
            message: .hello(
                Hello(
                    protocolVersion: 4, clusterId: "qkv-test", senderId: "client-1", role: .client, epoch: 7,
                    lowestVersion: 3)
            )
        ),
        Sample(
            name: "hello-ack-v4",
            summary:
                "HelloAck, request id 1: protocolVersion 4, clusterId \"qkv-test\", nodeId \"n1\", epoch 7, clock 0x018bcfe568000004, highestVersion 4",
            requestID: 1,
            message: .helloAck(
                HelloAck(
                    protocolVersion: 4, clusterId: "qkv-test", nodeId: "n1", epoch: 7, clock: hlc + 1,
                    highestVersion: 4)
            )
        ),
        Sample(
            name: "error-not-authorized",
            summary: "Error, request id 5: code notAuthorized (5), message \"client may not send HintRequest\"",
            requestID: 5,
            message: .error(ErrorMessage(code: .notAuthorized, message: "client may not send HintRequest"))
        ),
        Sample(
            name: "error-frame-too-large",
            summary:
                "Error, request id 0 (the connection): code frameTooLarge (2), message \"frame of 16777217 bytes is over the limit of 16777216\"",
            requestID: 0,
            message: .error(
                ErrorMessage(code: .frameTooLarge, message: "frame of 16777217 bytes is over the limit of 16777216")
            )
        ),
        Sample(
            name: "put-request",
            summary:
                "PutRequest, request id 2: key \"user:42\", value \"hello\", version (hlc 0x018bcfe568000003 = 1700000000000 ms << 16 | counter 3, writer 0xabcdef), tombstone false, origin client (1), epoch 7, expiresAtMillis present 1700000030000 (a 30 s time to live)",
            requestID: 2,
            message: .putRequest(
                PutRequest(
                    key: bytes("user:42"), value: bytes("hello"), version: version, tombstone: false, origin: .client,
                    epoch: 7, expiresAtMillis: 1_700_000_030_000, keyspace: 3)
            )
        ),
        Sample(
            name: "put-request-tombstone",
            summary:
                "PutRequest (a delete, replayed from a hint), request id 3: key \"user:42\", empty value, version (hlc as put-request, writer 0xabcdef), tombstone true, origin hintReplay (3), epoch 0, expiresAtMillis absent",
            requestID: 3,
            message: .putRequest(
                PutRequest(
                    key: bytes("user:42"), value: ByteBuffer(), version: version, tombstone: true, origin: .hintReplay,
                    epoch: 0, expiresAtMillis: nil, keyspace: 0))
        ),
        Sample(
            name: "put-request-read-repair",
            summary:
                "PutRequest (a read repair), request id 14: key \"user:42\", value \"hello\", version as put-request, tombstone false, origin readRepair (2), epoch 0, expiresAtMillis absent",
            requestID: 14,
            message: .putRequest(
                PutRequest(
                    key: bytes("user:42"), value: bytes("hello"), version: version, tombstone: false,
                    origin: .readRepair, epoch: 0, expiresAtMillis: nil, keyspace: 0))
        ),
        Sample(
            name: "put-request-anti-entropy",
            summary:
                "PutRequest (copied by anti-entropy), request id 15: key \"user:42\", value \"hello\", version as put-request, tombstone false, origin antiEntropy (4), epoch 0, expiresAtMillis absent",
            requestID: 15,
            message: .putRequest(
                PutRequest(
                    key: bytes("user:42"), value: bytes("hello"), version: version, tombstone: false,
                    origin: .antiEntropy, epoch: 0, expiresAtMillis: nil, keyspace: 0))
        ),
        Sample(
            name: "put-response-applied",
            summary:
                "PutResponse, request id 2: outcome applied (1), current (hlc 0x018bcfe568000003, writer 0xabcdef), clock 0x018bcfe568000004",
            requestID: 2,
            message: .putResponse(PutResponse(outcome: .applied, current: version, clock: hlc + 1))
        ),
        Sample(
            name: "put-response-superseded",
            summary:
                "PutResponse, request id 2: outcome superseded (2), current (hlc 0x018bcfe568010003, writer 0x42), clock 0x018bcfe568010003",
            requestID: 2,
            message: .putResponse(PutResponse(outcome: .superseded, current: newerVersion, clock: newerVersion.hlc))
        ),
        Sample(
            name: "get-request",
            summary: "GetRequest, request id 4: key \"user:42\"",
            requestID: 4,
            message: .getRequest(GetRequest(key: bytes("user:42"), keyspace: 3))
        ),
        Sample(
            name: "get-response-present",
            summary:
                "GetResponse, request id 4: record present (key \"user:42\", version as put-request, tombstone false, value \"hello\", expiresAtMillis absent), clock 0x018bcfe568000004",
            requestID: 4,
            message: .getResponse(
                GetResponse(
                    record: Record(
                        key: bytes("user:42"), version: version, tombstone: false, value: bytes("hello"),
                        expiresAtMillis: nil),
                    clock: hlc + 1
                )
            )
        ),
        Sample(
            name: "get-response-absent",
            summary: "GetResponse, request id 4: record absent, clock 0x018bcfe568000004",
            requestID: 4,
            message: .getResponse(GetResponse(record: nil, clock: hlc + 1))
        ),
        Sample(
            name: "get-batch-request",
            summary: "GetBatchRequest, request id 10: keyspace 3, keys [\"user:42\", \"user:43\", \"user:44\"]",
            requestID: 10,
            message: .getBatchRequest(
                GetBatchRequest(keyspace: 3, keys: [bytes("user:42"), bytes("user:43"), bytes("user:44")]))
        ),
        Sample(
            name: "get-batch-response",
            summary:
                "GetBatchResponse, request id 10: items [record as get-response-present, error absent; record absent, error absent; record absent, error (notReplica (16), \"not a replica\")], clock 0x018bcfe568000004",
            requestID: 10,
            message: .getBatchResponse(
                GetBatchResponse(
                    items: [
                        GetBatchItem(
                            record: Record(
                                key: bytes("user:42"), version: version, tombstone: false, value: bytes("hello"),
                                expiresAtMillis: nil),
                            error: nil),
                        GetBatchItem(record: nil, error: nil),
                        GetBatchItem(record: nil, error: BatchItemError(code: .notReplica, message: "not a replica")),
                    ],
                    clock: hlc + 1))
        ),
        Sample(
            name: "put-batch-request",
            summary:
                "PutBatchRequest, request id 11: keyspace 0, epoch 7, puts [(key \"k1\", value \"v1\", version as put-request, tombstone false, expiresAtMillis absent); (key \"k2\", value empty, version as put-request, tombstone true, expiresAtMillis absent); (key \"k3\", value \"v3\", version as put-request, tombstone false, expiresAtMillis present 1700000030000)]",
            requestID: 11,
            message: .putBatchRequest(
                PutBatchRequest(
                    keyspace: 0, epoch: 7,
                    puts: [
                        BatchPut(
                            key: bytes("k1"), value: bytes("v1"), version: version, tombstone: false,
                            expiresAtMillis: nil),
                        BatchPut(
                            key: bytes("k2"), value: bytes(""), version: version, tombstone: true,
                            expiresAtMillis: nil),
                        BatchPut(
                            key: bytes("k3"), value: bytes("v3"), version: version, tombstone: false,
                            expiresAtMillis: 1_700_000_030_000),
                    ]))
        ),
        Sample(
            name: "put-batch-response",
            summary:
                "PutBatchResponse, request id 11: items [outcome applied (1), current as put-request, error absent; outcome superseded (2), current (hlc 0x018bcfe568010003, writer 0x42), error absent; outcome absent, current (hlc 0, writer 0), error (diskFull (15), \"disk full\")], clock 0x018bcfe568010003",
            requestID: 11,
            message: .putBatchResponse(
                PutBatchResponse(
                    items: [
                        PutBatchItem(outcome: .applied, current: version, error: nil),
                        PutBatchItem(outcome: .superseded, current: newerVersion, error: nil),
                        PutBatchItem(
                            outcome: nil, current: Version(hlc: 0, writer: 0),
                            error: BatchItemError(code: .diskFull, message: "disk full")),
                    ],
                    clock: newerVersion.hlc))
        ),
        Sample(
            name: "hint-batch-request",
            summary:
                "HintBatchRequest, request id 12: keyspace 0, hints [(target \"n3\", record (key \"k\", version as put-request, tombstone false, value \"v\", expiresAtMillis absent))]",
            requestID: 12,
            message: .hintBatchRequest(
                HintBatchRequest(
                    keyspace: 0,
                    hints: [
                        BatchHint(
                            target: "n3",
                            record: Record(
                                key: bytes("k"), version: version, tombstone: false, value: bytes("v"),
                                expiresAtMillis: nil))
                    ]))
        ),
        Sample(
            name: "hint-batch-response",
            summary:
                "HintBatchResponse, request id 12: items [outcome stored (1), error absent; outcome refused (2), error absent; outcome absent, error (unknownNode (14), \"no node n9\")], clock 0x018bcfe568000004",
            requestID: 12,
            message: .hintBatchResponse(
                HintBatchResponse(
                    items: [
                        HintBatchItem(outcome: .stored, error: nil),
                        HintBatchItem(outcome: .refused, error: nil),
                        HintBatchItem(outcome: nil, error: BatchItemError(code: .unknownNode, message: "no node n9")),
                    ],
                    clock: hlc + 1))
        ),
        Sample(
            name: "hint-request",
            summary:
                "HintRequest, request id 6: target \"n3\", record (key \"k\", version as put-request, tombstone false, value \"v\", expiresAtMillis present 1700000030000)",
            requestID: 6,
            message: .hintRequest(
                HintRequest(
                    target: "n3",
                    record: Record(
                        key: bytes("k"), version: version, tombstone: false, value: bytes("v"),
                        expiresAtMillis: 1_700_000_030_000), keyspace: 3
                )
            )
        ),
        Sample(
            name: "hint-response",
            summary: "HintResponse, request id 6: outcome refused (2), clock 0",
            requestID: 6,
            message: .hintResponse(HintResponse(outcome: .refused, clock: 0))
        ),
        Sample(
            name: "merkle-exchange-request",
            summary:
                "MerkleExchangeRequest, request id 7: range (start 0x1000, end 0x2000), query children (2), level 3, nodes [0, 5, 4294967295] (node list 00 04 f9 ff ff ff 0f)",
            requestID: 7,
            message: .merkleExchangeRequest(
                MerkleExchangeRequest(
                    range: TokenRange(start: 0x1000, end: 0x2000), query: .children, level: 3,
                    nodes: ByteBuffer(bytes: [0x00, 0x04, 0xf9, 0xff, 0xff, 0xff, 0x0f]), keyspace: 3
                )
            )
        ),
        Sample(
            name: "merkle-exchange-request-entry-hashes",
            summary:
                "MerkleExchangeRequest, request id 7: range (start 0x1000, end 0x2000), query entryHashes (4), level 20, nodes [300, 301] (node list ac 02 00)",
            requestID: 7,
            message: .merkleExchangeRequest(
                MerkleExchangeRequest(
                    range: TokenRange(start: 0x1000, end: 0x2000), query: .entryHashes, level: 20,
                    nodes: ByteBuffer(bytes: [0xac, 0x02, 0x00]), keyspace: 0
                )
            )
        ),
        Sample(
            name: "merkle-fetch-request",
            summary:
                "MerkleFetchRequest, request id 7: range (start 0x1000, end 0x2000), leaves [300, 301] (node list ac 02 00), valueAboveHlc [0, hlc as put-request], hashes [2, 0xffffffffffffffff]",
            requestID: 7,
            message: .merkleFetchRequest(
                MerkleFetchRequest(
                    range: TokenRange(start: 0x1000, end: 0x2000), leaves: ByteBuffer(bytes: [0xac, 0x02, 0x00]),
                    valueAboveHlc: [0, version.hlc], hashes: [2, UInt64.max], keyspace: 0
                )
            )
        ),
        Sample(
            name: "merkle-fetch-response",
            summary:
                "MerkleFetchResponse, request id 7: records [(key \"k\", version as put-request, tombstone false, value \"v\", expiresAtMillis absent)], entries [(key \"a\", version as put-request, tombstone true)], older [(index 1, version as put-request, tombstone false)]",
            requestID: 7,
            message: .merkleFetchResponse(
                MerkleFetchResponse(
                    records: [
                        Record(
                            key: bytes("k"), version: version, tombstone: false, value: bytes("v"), expiresAtMillis: nil
                        )
                    ],
                    entries: [KeyVersion(key: bytes("a"), version: version, tombstone: true)],
                    older: [OlderEntry(index: 1, version: version, tombstone: false)]
                )
            )
        ),
        Sample(
            name: "merkle-apply-request",
            summary:
                "MerkleApplyRequest, request id 7: records [(key \"k\", version as put-request, tombstone false, value \"v\", expiresAtMillis absent), (key \"a\", version as put-request, tombstone true, value empty, expiresAtMillis absent)]",
            requestID: 7,
            message: .merkleApplyRequest(
                MerkleApplyRequest(
                    records: [
                        Record(
                            key: bytes("k"), version: version, tombstone: false, value: bytes("v"), expiresAtMillis: nil
                        ),
                        Record(
                            key: bytes("a"), version: version, tombstone: true, value: ByteBuffer(),
                            expiresAtMillis: nil),
                    ], keyspace: 0)
            )
        ),
        Sample(
            name: "merkle-apply-response",
            summary: "MerkleApplyResponse, request id 7: applied 1, clock 0x018bcfe568000004",
            requestID: 7,
            message: .merkleApplyResponse(MerkleApplyResponse(applied: 1, clock: 0x018b_cfe5_6800_0004))
        ),
        Sample(
            name: "merkle-exchange-response",
            summary:
                "MerkleExchangeResponse, request id 7: hashes [1, 0xffffffffffffffff], entries [(key \"a\", version as put-request, tombstone true)]",
            requestID: 7,
            message: .merkleExchangeResponse(
                MerkleExchangeResponse(
                    hashes: [1, UInt64.max],
                    entries: [KeyVersion(key: bytes("a"), version: version, tombstone: true)]
                )
            )
        ),
        Sample(
            name: "cluster-map-request",
            summary: "ClusterMapRequest, request id 8: knownEpoch 6, epoch 7",
            requestID: 8,
            message: .clusterMapRequest(ClusterMapRequest(knownEpoch: 6, epoch: 7))
        ),
        Sample(
            name: "cluster-map-response",
            summary:
                "ClusterMapResponse, request id 8: clusterId \"qkv-test\", epoch 7, replicationFactor 3, nodes [(\"n1\", \"127.0.0.11:7400\", tokens [1, 2^63], normal (2), zone \"dc1\"), (\"n2\", \"127.0.0.12:7400\", tokens [], joining (1), zone \"\")], pendingReplicationFactor 0, streaming [\"n2\"], changeEpoch 6, proof absent, placement (spread (3), replicas 3, perZone 1, zones []), pendingPlacement present (zones (2), replicas 0, perZone 0, zones [(\"dc1\", 2), (\"dc2\", 1)]), keyspaces [(id 1, name \"sessions\", placement simple 3, pendingPlacement absent, readLevel one, writeLevel count 1, timeToLiveMillis 1800000, dropped false)]",
            requestID: 8,
            message: .clusterMapResponse(
                ClusterMapResponse(
                    clusterId: "qkv-test", epoch: 7, replicationFactor: 3,
                    nodes: [
                        NodeEntry(
                            id: "n1", address: "127.0.0.11:7400", tokens: [1, 1 << 63], state: .normal, zone: "dc1",
                            ring: ""),
                        NodeEntry(
                            id: "n2", address: "127.0.0.12:7400", tokens: [], state: .joining, zone: "", ring: "ring2"),
                    ],
                    pendingReplicationFactor: 0, streaming: ["n2"], changeEpoch: 6, proof: nil,
                    placement: PlacementBody(kind: .spread, replicas: 3, perZone: 1, zones: []),
                    pendingPlacement: PlacementBody(
                        kind: .zones, replicas: 0, perZone: 0,
                        zones: [ZoneCountBody(zone: "dc1", count: 2), ZoneCountBody(zone: "dc2", count: 1)]),
                    keyspaces: [
                        KeyspaceBody(
                            id: 1, name: "sessions",
                            placement: PlacementBody(kind: .simple, replicas: 3, perZone: 0, zones: []),
                            pendingPlacement: nil, readLevel: LevelBody(kind: .one, count: 0),
                            writeLevel: LevelBody(kind: .count, count: 1), timeToLiveMillis: 1_800_000, dropped: false,
                            ring: "", pendingRing: "ring2", lowKey: ByteBuffer(string: "m"))
                    ]
                )
            )
        ),
        Sample(
            name: "map-prepare-request",
            summary: "MapPrepareRequest, request id 11: epoch 8, ballot (round 1700000000000, proposer \"admin#7\")",
            requestID: 11,
            message: .mapPrepareRequest(
                MapPrepareRequest(epoch: 8, ballot: Ballot(round: 1_700_000_000_000, proposer: "admin#7")))
        ),
        Sample(
            name: "map-prepare-response",
            summary:
                "MapPrepareResponse, request id 11: vote granted (1), epoch 7, promised absent, acceptedBallot (round 5, proposer \"b#1\"), accepted (clusterId \"q\", epoch 8, replicationFactor 1, nodes [(\"n1\", \"h:1\", tokens [9], leaving (3), zone \"\")], pendingReplicationFactor 2, streaming [], changeEpoch 8, placement (simple (1), replicas 1, perZone 0, zones []), pendingPlacement present (simple (1), replicas 2, perZone 0, zones []), keyspaces [])",
            requestID: 11,
            message: .mapPrepareResponse(
                MapPrepareResponse(
                    vote: .granted, epoch: 7, promised: nil, acceptedBallot: Ballot(round: 5, proposer: "b#1"),
                    accepted: MapBody(
                        clusterId: "q", epoch: 8, replicationFactor: 1,
                        nodes: [NodeEntry(id: "n1", address: "h:1", tokens: [9], state: .leaving, zone: "", ring: "")],
                        pendingReplicationFactor: 2, streaming: [], changeEpoch: 8, placement: simple(1),
                        pendingPlacement: simple(2), keyspaces: [])))
        ),
        Sample(
            name: "map-accept-request",
            summary:
                "MapAcceptRequest, request id 12: ballot (round 6, proposer \"c\"), map (clusterId \"q\", epoch 8, replicationFactor 1, nodes [(\"n1\", \"h:1\", tokens [9], removed (5), zone \"\")], pendingReplicationFactor 2, streaming [], changeEpoch 8, placement (simple (1), replicas 1, perZone 0, zones []), pendingPlacement present (simple (1), replicas 2, perZone 0, zones []), keyspaces [])",
            requestID: 12,
            message: .mapAcceptRequest(
                MapAcceptRequest(
                    ballot: Ballot(round: 6, proposer: "c"),
                    map: MapBody(
                        clusterId: "q", epoch: 8, replicationFactor: 1,
                        nodes: [NodeEntry(id: "n1", address: "h:1", tokens: [9], state: .removed, zone: "", ring: "")],
                        pendingReplicationFactor: 2, streaming: [], changeEpoch: 8, placement: simple(1),
                        pendingPlacement: simple(2), keyspaces: [])))
        ),
        Sample(
            name: "map-accept-response",
            summary:
                "MapAcceptResponse, request id 12: vote rejected (3), epoch 7, promised (round 9, proposer \"d\"), signature absent",
            requestID: 12,
            message: .mapAcceptResponse(
                MapAcceptResponse(vote: .rejected, epoch: 7, promised: Ballot(round: 9, proposer: "d"), signature: nil))
        ),
        Sample(
            name: "map-accept-response-signed",
            summary:
                "MapAcceptResponse, request id 12: vote granted (1), epoch 7, promised absent, signature present (voter \"n1\", certificate \"der\", signature \"sig\")",
            requestID: 12,
            message: .mapAcceptResponse(
                MapAcceptResponse(
                    vote: .granted, epoch: 7, promised: nil,
                    signature: MapVoteSignatureBody(voter: "n1", certificate: bytes("der"), signature: bytes("sig"))))
        ),
        Sample(
            name: "map-commit-request",
            summary:
                "MapCommitRequest, request id 13: map (clusterId \"q\", epoch 8, replicationFactor 1, nodes [(\"n1\", \"h:1\", tokens [9], down (4), zone \"\")], pendingReplicationFactor 2, streaming [], changeEpoch 8, placement (simple (1), replicas 1, perZone 0, zones []), pendingPlacement present (simple (1), replicas 2, perZone 0, zones []), keyspaces []), proof (ballot (round 6, proposer \"c\"), signatures [(\"n1\", \"der\", \"sig\")])",
            requestID: 13,
            message: .mapCommitRequest(
                MapCommitRequest(
                    map: MapBody(
                        clusterId: "q", epoch: 8, replicationFactor: 1,
                        nodes: [NodeEntry(id: "n1", address: "h:1", tokens: [9], state: .down, zone: "", ring: "")],
                        pendingReplicationFactor: 2, streaming: [], changeEpoch: 8, placement: simple(1),
                        pendingPlacement: simple(2), keyspaces: []),
                    proof: MapProofBody(
                        ballot: Ballot(round: 6, proposer: "c"),
                        signatures: [
                            MapVoteSignatureBody(voter: "n1", certificate: bytes("der"), signature: bytes("sig"))
                        ])))
        ),
        Sample(
            name: "map-commit-response",
            summary: "MapCommitResponse, request id 13: epoch 8",
            requestID: 13,
            message: .mapCommitResponse(MapCommitResponse(epoch: 8))
        ),
        Sample(
            name: "ping-request",
            summary: "PingRequest, request id 9: epoch 7, clock 0x018bcfe568000003",
            requestID: 9,
            message: .pingRequest(PingRequest(epoch: 7, clock: hlc))
        ),
        Sample(
            name: "ping-response",
            summary:
                "PingResponse, request id 9: epoch 7, clock 0x018bcfe568000004, keys 1000, hintsQueued 2, requestsInFlight 17",
            requestID: 9,
            message: .pingResponse(
                PingResponse(epoch: 7, clock: hlc + 1, keys: 1000, hintsQueued: 2, requestsInFlight: 17)
            )
        ),
        Sample(
            name: "heartbeat-request",
            summary: "HeartbeatRequest, request id 9: epoch 7, clock 0x018bcfe568000003",
            requestID: 9,
            message: .heartbeatRequest(HeartbeatRequest(epoch: 7, clock: hlc))
        ),
        Sample(
            name: "heartbeat-response",
            summary: "HeartbeatResponse, request id 9: epoch 7, clock 0x018bcfe568000004",
            requestID: 9,
            message: .heartbeatResponse(HeartbeatResponse(epoch: 7, clock: hlc + 1))
        ),
        Sample(
            name: "stream-request",
            summary:
                "StreamRequest, request id 10: range (start 0xffffffffffff0000, end 0x10) wrapping, after absent, pageBytesMax 1048576",
            requestID: 10,
            message: .streamRequest(
                StreamRequest(
                    range: TokenRange(start: 0xFFFF_FFFF_FFFF_0000, end: 0x10), after: nil, pageBytesMax: 1 << 20,
                    keyspace: 0)
            )
        ),
        Sample(
            name: "stream-request-after",
            summary:
                "StreamRequest, request id 11: range (start 0xffffffffffff0000, end 0x10), after present \"k\", pageBytesMax 1048576",
            requestID: 11,
            message: .streamRequest(
                StreamRequest(
                    range: TokenRange(start: 0xFFFF_FFFF_FFFF_0000, end: 0x10), after: bytes("k"),
                    pageBytesMax: 1 << 20, keyspace: 3
                )
            )
        ),
        Sample(
            name: "stream-response",
            summary:
                "StreamResponse, request id 11: records [(key \"k\", version as put-request, tombstone false, value \"v\", expiresAtMillis absent), (key \"l\", same version, tombstone true, empty value, expiresAtMillis absent)], next present \"l\", done false",
            requestID: 11,
            message: .streamResponse(
                StreamResponse(
                    records: [
                        Record(
                            key: bytes("k"), version: version, tombstone: false, value: bytes("v"), expiresAtMillis: nil
                        ),
                        Record(
                            key: bytes("l"), version: version, tombstone: true, value: ByteBuffer(),
                            expiresAtMillis: nil),
                    ],
                    next: bytes("l"),
                    done: false
                )
            )
        ),
        Sample(
            name: "stream-response-done",
            summary: "StreamResponse, request id 12: records [], next absent, done true",
            requestID: 12,
            message: .streamResponse(StreamResponse(records: [], next: nil, done: true))
        ),
        Sample(
            name: "admin-request",
            summary: "AdminRequest, request id 13: command repair (4), arguments [(\"range\", \"all\")]",
            requestID: 13,
            message: .adminRequest(AdminRequest(command: .repair, arguments: [Pair(name: "range", value: "all")]))
        ),
        Sample(
            name: "admin-response",
            summary: "AdminResponse, request id 13: results [(\"keys\", \"1000\"), (\"status\", \"ok ✓\")] (UTF-8)",
            requestID: 13,
            message: .adminResponse(
                AdminResponse(results: [Pair(name: "keys", value: "1000"), Pair(name: "status", value: "ok ✓")])
            )
        ),
        Sample(
            name: "node-stats",
            summary:
                "NodeStats, request id 14: node \"n1\", keys 1000, uptimeSeconds 3600, hintsStored 5, hintsReplayed 4, hintsBytes 120, hintQueues [(\"n2\", 1)], readRepairsApplied 2, antiEntropyRangesCompared 8, antiEntropyOldestRangeComparedMillis 1700000000000, rangesCompared [((1, 2), 1700000000000)], refusals [(\"idle\", 3)], peers [(\"n2\", 12, true), (\"n3\", 3, false)], clusterEpoch 7, clusterChange \"none\", transfers [((2, 3), retrying, 9, 1, \"n3\", \"timed out\")], certificateNotAfter 1800000000, diskUsedBytes 52428800, diskFreeBytes absent, hintAges [(\"n2\", 4500)], transferShareMillionths 420000, transferShareAtStartMillionths 100000, transferElapsedMillis 64000; every other counter 0",
            requestID: 14,
            message: .nodeStats(nodeStatsSample)
        ),
        Sample(
            name: "backup-checkpoint-request",
            summary: "BackupCheckpointRequest, request id 15: id \"20261203T120640Z-3f9a1c\"",
            requestID: 15,
            message: .backupCheckpointRequest(BackupCheckpointRequest(id: "20261203T120640Z-3f9a1c"))
        ),
        Sample(
            name: "backup-checkpoint-response",
            summary:
                "BackupCheckpointResponse, request id 15: id \"20261203T120640Z-3f9a1c\", node \"n1\", hlc 0x018bcfe568000003, epoch 7, files [(\"000012.sst\", 4096, 32 bytes 0x00 0x01 … 0x1f), (\"CURRENT\", 16, 32 bytes 0xff)]",
            requestID: 15,
            message: .backupCheckpointResponse(
                BackupCheckpointResponse(
                    id: "20261203T120640Z-3f9a1c", node: "n1", hlc: hlc, epoch: 7,
                    files: [
                        BackupFile(name: "000012.sst", bytes: 4096, sha256: ByteBuffer(bytes: Array(0..<32))),
                        BackupFile(
                            name: "CURRENT", bytes: 16, sha256: ByteBuffer(bytes: [UInt8](repeating: 0xff, count: 32))),
                    ]))
        ),
        Sample(
            name: "backup-read-request",
            summary:
                "BackupReadRequest, request id 16: id \"20261203T120640Z-3f9a1c\", file \"000012.sst\", offset 1048576, length 1048576",
            requestID: 16,
            message: .backupReadRequest(
                BackupReadRequest(id: "20261203T120640Z-3f9a1c", file: "000012.sst", offset: 1 << 20, length: 1 << 20))
        ),
        Sample(
            name: "backup-read-response",
            summary: "BackupReadResponse, request id 16: data \"chunk\"",
            requestID: 16,
            message: .backupReadResponse(BackupReadResponse(data: bytes("chunk")))
        ),
        Sample(
            name: "backup-release-request",
            summary: "BackupReleaseRequest, request id 17: id \"20261203T120640Z-3f9a1c\"",
            requestID: 17,
            message: .backupReleaseRequest(BackupReleaseRequest(id: "20261203T120640Z-3f9a1c"))
        ),
        Sample(
            name: "backup-release-response",
            summary: "BackupReleaseResponse, request id 17: released true",
            requestID: 17,
            message: .backupReleaseResponse(BackupReleaseResponse(released: true))
        ),
        Sample(
            name: "backup-changes-request",
            summary:
                "BackupChangesRequest, request id 18: id \"20261204T120640Z-77ab02\", since hlc 0x0123456789ab0000",
            requestID: 18,
            message: .backupChangesRequest(
                BackupChangesRequest(id: "20261204T120640Z-77ab02", since: 0x0123_4567_89ab_0000))
        ),
    ]
}

/// The `node-stats` sample: some of every kind of field set, the rest at zero.
private let nodeStatsSample: NodeStats = {
    var stats = NodeStats(node: "n1")
    stats.keys = 1000
    stats.uptimeSeconds = 3600
    stats.hintsStored = 5
    stats.hintsReplayed = 4
    stats.hintsBytes = 120
    stats.hintQueues = [HintQueue(target: "n2", hints: 1)]
    stats.readRepairsApplied = 2
    stats.antiEntropyRangesCompared = 8
    stats.antiEntropyOldestRangeComparedMillis = 1_700_000_000_000
    stats.rangesCompared = [RangeCompared(range: TokenRange(start: 1, end: 2), millis: 1_700_000_000_000)]
    stats.refusals = [RefusalCount(reason: "idle", count: 3)]
    stats.peers = [
        PeerView(node: "n2", phiTenths: 12, suspected: true), PeerView(node: "n3", phiTenths: 3, suspected: false),
    ]
    stats.clusterEpoch = 7
    stats.transfers = [
        RangeTransferStatus(
            range: TokenRange(start: 2, end: 3), state: .retrying, keys: 9, retries: 1, source: "n3",
            lastError: "timed out")
    ]
    stats.certificateNotAfter = 1_800_000_000
    stats.diskUsedBytes = 52_428_800
    stats.hintAges = [HintAge(target: "n2", millis: 4500)]
    stats.transferShareMillionths = 420_000
    stats.transferShareAtStartMillionths = 100_000
    stats.transferElapsedMillis = 64_000
    return stats
}()
