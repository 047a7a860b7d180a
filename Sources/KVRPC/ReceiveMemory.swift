import KVCore
import NIOCore
import Synchronization

/// The bytes a server holds for frames it is still receiving, over all its connections
/// (`RPCServerConfiguration.receivingBytesMax`), and the connections waiting for room in it.
///
/// A connection reserves a frame's whole length once its length prefix has arrived, if the frame is
/// larger than `smallFrameBytes`, and gives it back once the frame is whole (or the connection
/// closes). A frame that does not fit waits, first come first served: its connection stops reading
/// (`ConnectionGuardHandler`) until earlier frames end and `reserve`'s `granted` is called. A frame
/// alone always fits, so one larger than the bound is still received. Smaller frames are not counted:
/// each connection buffers at most one of them, and the connections are bounded (`connectionsMax`).
final class ReceiveMemory: Sendable {
    /// Frames of at most this many bytes (length prefix included) are not counted.
    static let smallFrameBytes = Limits.largeFrameBytes

    /// What `reserve` did.
    enum Reservation: Equatable {
        case granted
        /// Waiting, as `id` (for `cancel`): `granted` will be called once the bytes are reserved.
        case waiting(id: Int)
    }

    private struct Waiter {
        var id: Int
        var bytes: Int
        var granted: @Sendable (_ id: Int) -> Void
    }

    private struct State {
        var reserved = 0
        var waiters = CircularBuffer<Waiter>()
        var nextID = 0
    }

    let bytesMax: Int
    private let state = Mutex(State())

    init(bytesMax: Int) {
        self.bytesMax = bytesMax
    }

    /// Reserves `bytes` if they fit (and nobody waits before them), else queues the request;
    /// `granted` is called with the waiter's id, on the thread that released the room, once they are
    /// reserved.
    func reserve(_ bytes: Int, granted: @escaping @Sendable (_ id: Int) -> Void) -> Reservation {
        state.withLock { state in
            if state.waiters.isEmpty, Self.fits(bytes, reserved: state.reserved, max: bytesMax) {
                state.reserved += bytes
                return .granted
            }
            state.nextID += 1
            state.waiters.append(Waiter(id: state.nextID, bytes: bytes, granted: granted))
            return .waiting(id: state.nextID)
        }
    }

    /// Takes waiter `id` out of the queue: true if it was still waiting, false if it was granted
    /// already (its `granted` has been or will be called, and its bytes must be released).
    func cancel(id: Int) -> Bool {
        let (removed, granted) = state.withLock { state -> (Bool, [Waiter]) in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return (false, []) }
            state.waiters.remove(at: index)
            // The first waiter leaving may let the next ones in.
            return (true, Self.grantWaiters(&state, max: bytesMax))
        }
        for waiter in granted { waiter.granted(waiter.id) }
        return removed
    }

    /// Gives back `bytes` reserved earlier, and grants the waiters that now fit.
    func release(_ bytes: Int) {
        let granted = state.withLock { state -> [Waiter] in
            state.reserved -= bytes
            return Self.grantWaiters(&state, max: bytesMax)
        }
        for waiter in granted { waiter.granted(waiter.id) }
    }

    /// Bytes reserved now, and frames waiting for room.
    var usage: (reserved: Int, waiting: Int) {
        state.withLock { ($0.reserved, $0.waiters.count) }
    }

    private static func fits(_ bytes: Int, reserved: Int, max: Int) -> Bool {
        reserved == 0 || bytes <= max - reserved
    }

    private static func grantWaiters(_ state: inout State, max: Int) -> [Waiter] {
        var granted: [Waiter] = []
        while let first = state.waiters.first, fits(first.bytes, reserved: state.reserved, max: max) {
            state.waiters.removeFirst()
            state.reserved += first.bytes
            granted.append(first)
        }
        return granted
    }
}
