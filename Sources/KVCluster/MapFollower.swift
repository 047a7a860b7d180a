import Synchronization

/// Runs `MapFollowing` for the SDK and a node: a fetch it asks for runs in the background, and the
/// next one it names when that fetch ends runs on the same task, so whoever awaits the fetch
/// (`inProgress`) sees the newest map anyone reported by then.
///
/// What a fetch does is the owner's (`fetch`, given with each report since it usually needs the owner
/// itself): the SDK installs the newest map a node sends, a node learns each map after its own with
/// its proof (`Membership.learn`).
public final class MapFollower: Sendable {
    /// Fetches `node`'s map and installs or learns what it may; failures are the fetch's to log.
    public typealias Fetch = @Sendable (_ node: String) async -> Void

    private struct State {
        var following = MapFollowing()
        var running: BackgroundWork.Handle?
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
        let current = currentEpoch()
        state.withLock { state in
            guard let first = state.following.notice(epoch, from: node, currentEpoch: current) else { return }
            state.running = background.spawn { [self] in
                var node = first
                while true {
                    await fetch(node)
                    let installed = currentEpoch()
                    let next = self.state.withLock { state in
                        let next = state.following.fetchEnded(currentEpoch: installed)
                        if next == nil { state.running = nil }
                        return next
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
