/// Why a server refused a connection or a request, or closed a connection, to protect itself.
///
/// The raw value is the `reason` of the metric `quorumkv_rpc_refused_total` and the suffix of the
/// `Admin` stat `rpc_refused_<reason>`: a bounded set, never a peer's name.
public enum RPCRefusal: String, Sendable, Hashable, CaseIterable {
    /// A new connection past `connectionsMax`: closed at once, before TLS.
    case connections
    /// A connection past `connectionsPerIdentityMax` for its certificate: its `Hello` is answered
    /// `overloaded` and the connection closed.
    case perIdentity = "per_identity"
    /// A new connection while `handshakesInFlightMax` connections are in TLS or `Hello`: closed at
    /// once, before TLS.
    case handshakes
    /// A request past `requestsInFlightMax` on its connection: answered `overloaded`.
    case inFlight = "in_flight"
    /// A request past `inFlightBytesMax` on its connection: answered `overloaded`.
    case inFlightBytes = "in_flight_bytes"
    /// A request past `inFlightBytesServerMax`, over all connections: answered `overloaded`.
    case serverInFlightBytes = "server_in_flight_bytes"
    /// A frame that found no room in `receivingBytesMax` (frames being received, over all
    /// connections): its connection's reads were held until there was room. Not refused: counted.
    case receiveMemory = "receive_memory"
    /// A request while the node's storage queue was full: answered `overloaded` (counted by the node).
    case queueFull = "queue_full"
    /// A connection with nothing in flight and no frame for `idleTimeout`: closed.
    case idle
    /// A connection whose frame did not arrive whole within `frameReadDeadline`: closed.
    case frameDeadline = "frame_deadline"
    /// A connection whose channel was not writable for `unreadAnswersDeadline` while its peer took
    /// less than 32 KiB of its answers: closed.
    case answersUnread = "answers_unread"
    /// A connection past `protocolViolationsMax` violations: closed.
    case violations
}
