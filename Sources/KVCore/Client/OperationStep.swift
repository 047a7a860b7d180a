/// What a client operation asks its driver to do, in the one shape every driver performs (`KVClient`
/// and the simulator's clients): send a request, feed an event back after a delay, or answer the
/// caller. Each operation's `Action` says the same in its own words; `Action.step` is the one
/// translation, so that what a timer feeds back is decided here, not by each driver.
public enum OperationStep<Send: Sendable, Event: Sendable, Outcome: Sendable>: Sendable {
    /// Send this; feed back the reply as the operation's event.
    case send(Send)
    /// Feed `Event` back after this long.
    case timer(after: Duration, Event)
    /// The operation is over for the caller; answer with this.
    case complete(Outcome)
}

extension OperationStep: Equatable where Send: Equatable, Event: Equatable, Outcome: Equatable {}

/// An operation's `Action`, which a driver performs through its one translation, `step`. A driver
/// takes the actions as the operation returns them and translates each as it performs it: mapping
/// the array first would allocate another one at every step of every operation.
public protocol OperationAction: Sendable {
    associatedtype Send: Sendable
    associatedtype Event: Sendable
    associatedtype Outcome: Sendable
    var step: OperationStep<Send, Event, Outcome> { get }
}

extension WriteOperation {
    /// What a write sends: a `Put` to a replica, or a `Hint` to a fallback for a replica; each tagged
    /// with the attempt its reply answers.
    public enum Send: Sendable, Hashable {
        case put(to: String, version: Version, attempt: Int)
        case hint(to: String, for: String, version: Version, attempt: Int)
    }
}

extension WriteOperation.Action: OperationAction {
    public var step: OperationStep<WriteOperation.Send, WriteOperation.Event, WriteOperation.WriteResult> {
        switch self {
        case .send(let node, let version, let attempt): .send(.put(to: node, version: version, attempt: attempt))
        case .hint(let fallback, let target, let version, let attempt):
            .send(.hint(to: fallback, for: target, version: version, attempt: attempt))
        case .scheduleDeadline(let after, let attempt): .timer(after: after, .deadlinePassed(attempt: attempt))
        case .scheduleHintDue(let after, let attempt): .timer(after: after, .hintDue(attempt: attempt))
        case .complete(let result): .complete(result)
        }
    }
}

extension ReadOperation {
    /// What a read sends: a `Get` to a replica, or a repair `Put` of the newest record to a stale one.
    public enum Send: Sendable, Hashable {
        case get(from: String)
        case repair(String, StoredRecord)
    }
}

extension ReadOperation.Action: OperationAction {
    public var step: OperationStep<ReadOperation.Send, ReadOperation.Event, ReadCoordinator.ReadOutcome> {
        switch self {
        case .send(let node): .send(.get(from: node))
        case .repair(let node, let record): .send(.repair(node, record))
        case .scheduleDeadline(let after): .timer(after: after, .deadlinePassed)
        case .scheduleSpeculation(let after): .timer(after: after, .speculationDue)
        case .complete(let outcome): .complete(outcome)
        }
    }
}
