import Synchronization

/// How the SDK and a node keep up with the cluster map: when a node reports a later epoch than the
/// one in use (in a ping's answer, a request, a refusal), fetch that node's map. One fetch at a time;
/// a later epoch reported meanwhile is fetched next, by the same task, from the node that reported
/// it, so whoever awaits the fetch (`inProgress`) sees the newest map anyone reported by then.
///
/// What a fetch does is the owner's (`fetch`, given with each report since it usually needs the owner
/// itself): the SDK installs the newest map a node sends, a node learns each map after its own with
/// its proof (`Membership.learn`).
public final class MapFollower: Sendable {
    /// Fetches `node`'s map and installs or learns what it may; failures are the fetch's to log.
    public typealias Fetch = @Sendable (_ node: String) async -> Void

    private struct State {
        var running: BackgroundWork.Handle?
        /// The highest epoch reported while `running` ran, and the node that reported it.
        var followUp: (epoch: UInt64, node: String)?
    }

    private let state = Mutex(State())
    private let background: BackgroundWork

    /// - Parameter background: where fetches run (ended with their owner).
    public init(background: BackgroundWork) {
        self.background = background
    }

    /// `node` reported `epoch` (`UInt64.max` when it said only that its map is newer, as a
    /// `notReplica` refusal does): fetch its map unless the map in use (`currentEpoch`) is as new.
    public func notice(
        _ epoch: UInt64, from node: String, currentEpoch: @escaping @Sendable () -> UInt64, fetch: @escaping Fetch
    ) {
        guard epoch > currentEpoch() else { return }
        state.withLock { state in
            guard state.running == nil else {
                if epoch > state.followUp?.epoch ?? 0 { state.followUp = (epoch, node) }
                return
            }
            state.running = background.spawn { [self] in
                var node = node
                while true {
                    await fetch(node)
                    let installed = currentEpoch()
                    let next: String? = self.state.withLock { state in
                        defer { state.followUp = nil }
                        guard let followUp = state.followUp, followUp.epoch > installed else {
                            state.running = nil
                            return nil
                        }
                        return followUp.node
                    }
                    guard let next else { return }
                    node = next
                }
            }
        }
    }

    /// The fetch running now, if any, to await.
    public var inProgress: BackgroundWork.Handle? {
        state.withLock(\.running)
    }
}
