/// When a feature that needs every node may be used: the rule the SDK and the nodes share.
///
/// During a rolling upgrade some members speak the new protocol version and some do not. A field
/// appended in the new version is sent per connection, to peers that negotiated it; but a feature
/// whose messages may reach any member (a new message type a failure detector sends to every node,
/// say) switches on only once every member of the cluster map is known to speak that version. A
/// member whose version is not known yet (never met since it started) counts as not speaking it:
/// the feature stays off a little longer, never on too early.
public enum ProtocolAdoption {
    /// Whether every member of `map` (every node not removed) speaks at least `version`, by
    /// `versions`: each member's highest version, as last learned from a handshake with it.
    public static func everyMember(
        of map: ClusterMap, speaks version: UInt16, versions: [String: UInt16]
    ) -> Bool {
        map.nodes.allSatisfy { node in
            node.state == .removed || (versions[node.id].map { $0 >= version } ?? false)
        }
    }
}
