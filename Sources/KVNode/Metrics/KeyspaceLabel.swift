package import KVCore

/// The `keyspace` label of a node's metrics: the keyspace's name in the node's map, so the parts of a
/// split keyspace count under their one name, `default` for keyspace 0; `unknown` for an id the map
/// does not have (a keyspace made by a map the node has not seen yet, or a peer's made-up id), and
/// `none` for a request about no keyspace. A label never comes from a peer, so the set stays bounded.
package enum KeyspaceLabel {
    package static let unknown = "unknown"
    package static let none = "none"

    /// The name of keyspace `id` in `map` (`default` for 0; a dropped keyspace keeps its name until its
    /// data is freed); nil when the map has no keyspace by that id.
    package static func name(of id: UInt32, in map: ClusterMap) -> String? {
        id == Keyspace.defaultID ? Keyspace.defaultName : map.keyspaces.first { $0.id == id }?.name
    }

    /// The label of keyspace `id`: its name in `map` (`default` for 0, with or without a map), else
    /// `unknown`.
    package static func label(of id: UInt32, in map: ClusterMap?) -> String {
        id == Keyspace.defaultID ? Keyspace.defaultName : map.flatMap { name(of: id, in: $0) } ?? unknown
    }

    /// Figures by keyspace id (`KeyspaceStoring.everyKeyspace(_:)`), added up by label (wrapping: an
    /// engine's estimate is not trusted not to be huge).
    package static func byLabel<Figure: FixedWidthInteger>(_ figures: [UInt32: Figure], in map: ClusterMap)
        -> [String: Figure]
    {
        var sums: [String: Figure] = [:]
        for (id, figure) in figures {
            sums[name(of: id, in: map) ?? unknown, default: 0] &+= figure
        }
        return sums
    }

    /// The keyspaces of `map` not dropped, the default one included, with their labels: whose
    /// anti-entropy passes are reported.
    package static func live(in map: ClusterMap) -> [UInt32: String] {
        Dictionary(map.liveKeyspaces.map { ($0.id, $0.name) }) { first, _ in first }
    }
}
