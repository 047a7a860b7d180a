import KVCore
import KVWire
import NIOCore
import Synchronization

/// One single-key operation as ``KVClient/drive(_:)`` runs it: its sans-I/O state (KVCore's
/// ``WriteOperation`` or ``ReadOperation``) behind a lock, and what it needs to send its requests.
/// One object per operation rather than a closure per callback: each closure that captured more than
/// one value was an allocation of its own, per request.
protocol OperationRun: AnyObject, Sendable {
    associatedtype Action: OperationAction

    /// The operation's first actions.
    func start() -> [Action]
    /// What the operation does with `event`.
    func handle(_ event: Action.Event) -> [Action]
    /// Sends `send` (started at `started`) and hands the event its answer makes to `deliver` (on an
    /// event-loop thread; at once for a node the topology does not know).
    func send(
        _ send: Action.Send, startedAt started: ContinuousClock.Instant,
        then deliver: @escaping @Sendable (Action.Event) -> Void)
    /// Keeps what an event that arrived after the operation ended says (its clocks).
    func late(_ event: Action.Event)
    /// Whether the operation has nothing left to do once it answered (hints to hand off).
    var isSettled: Bool { get }
}

/// A `put` or `delete` of one key: a ``WriteOperation`` and the record it sends at each stamp.
final class WriteRun: OperationRun {
    private let client: KVClient
    private let operation: Mutex<WriteOperation>
    private let record: RecordMaker
    private let topology: KVClient.Topology
    private let route: KeyspaceRoute

    init(
        _ operation: WriteOperation, record: RecordMaker, in topology: KVClient.Topology, route: KeyspaceRoute,
        client: KVClient
    ) {
        self.client = client
        self.operation = Mutex(operation)
        self.record = record
        self.topology = topology
        self.route = route
    }

    func start() -> [WriteOperation.Action] {
        let millis = client.configuration.wallClockMillis()
        return operation.withLock { operation in
            client.clock.withLock { operation.start(clock: &$0, wallMillis: millis) }
        }
    }

    func handle(_ event: WriteOperation.Event) -> [WriteOperation.Action] {
        let millis = client.configuration.wallClockMillis()
        return operation.withLock { operation in
            client.clock.withLock { operation.handle(event, clock: &$0, wallMillis: millis) }
        }
    }

    func send(
        _ send: WriteOperation.Send, startedAt started: ContinuousClock.Instant,
        then deliver: @escaping @Sendable (WriteOperation.Event) -> Void
    ) {
        let client = self.client
        switch send {
        case .put(let node, let version, let attempt):
            let request = route.putRequest(record(version), epoch: topology.map.epoch)
            client.send(request, to: node, in: topology) {
                deliver(client.writeEvent(node, attempt: attempt, $0, started: started))
            }
        case .hint(let fallback, let target, let version, let attempt):
            client.send(route.hintRequest(for: target, record(version)), to: fallback, in: topology) {
                deliver(client.hintEvent(fallback, for: target, attempt: attempt, $0))
            }
        }
    }

    func late(_ event: WriteOperation.Event) {
        client.clock.withLock { event.observeClocks(&$0) }
    }

    var isSettled: Bool { operation.withLock(\.isSettled) }
}

/// A `get` of one key: a ``ReadOperation``, the `Get` it sends and the repairs it makes.
final class ReadRun: OperationRun {
    private let client: KVClient
    private let operation: Mutex<ReadOperation>
    private let key: [UInt8]
    private let request: Message
    private let topology: KVClient.Topology
    private let route: KeyspaceRoute

    init(
        _ operation: ReadOperation, key: [UInt8], in topology: KVClient.Topology, route: KeyspaceRoute,
        client: KVClient
    ) {
        self.client = client
        self.operation = Mutex(operation)
        self.key = key
        self.request = route.getRequest(key)
        self.topology = topology
        self.route = route
    }

    func start() -> [ReadOperation.Action] {
        operation.withLock { operation in client.clock.withLock { operation.start(clock: &$0) } }
    }

    func handle(_ event: ReadOperation.Event) -> [ReadOperation.Action] {
        operation.withLock { operation in client.clock.withLock { operation.handle(event, clock: &$0) } }
    }

    func send(
        _ send: ReadOperation.Send, startedAt started: ContinuousClock.Instant,
        then deliver: @escaping @Sendable (ReadOperation.Event) -> Void
    ) {
        let client = self.client
        switch send {
        case .get(let node):
            client.send(request, to: node, in: topology) { deliver(client.readEvent(node, $0, started: started)) }
        case .repair(let node, let record):
            client.sendRepair(key, record, to: node, in: topology, route: route, then: deliver)
        }
    }

    func late(_ event: ReadOperation.Event) {
        client.clock.withLock { event.observeClocks(&$0) }
    }

    var isSettled: Bool { true }
}
