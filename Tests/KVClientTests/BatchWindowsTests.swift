import KVCore
import KVRPC
import Synchronization
import Testing

@testable import KVClient

/// The SDK's per-node windows of batch keys in flight: a send goes at once while it fits, waits per
/// node otherwise, and every waiting send either goes or is dropped (its batch ended, the client
/// closed); nothing it did not take is given back.
@Suite struct BatchWindowsTests {
    /// What happened to each send, by name, in order.
    final class Journal: Sendable {
        let entries = Mutex<[String]>([])
        let claims = Mutex<[String: BatchWindows.Claim]>([:])

        var all: [String] { entries.withLock { $0 } }

        func claim(_ name: String) -> BatchWindows.Claim? { claims.withLock { $0[name] } }

        /// Enters a send named `name` of `keys` keys to `node`.
        func enter(
            _ windows: BatchWindows, _ name: String, _ keys: Int, to node: String = "n1",
            owner: ObjectIdentifier
        ) {
            windows.enter(keys, to: node, owner: owner) { claim, _ in
                self.claims.withLock { $0[name] = claim }
                self.entries.withLock { $0.append("go \(name)") }
            } drop: { error in
                self.entries.withLock { $0.append("drop \(name): \(error)") }
            }
        }
    }

    final class Owner: Sendable {}

    @Test func sendsPastTheBoundWaitPerNodeAndGoInOrder() throws {
        let recorded = Mutex<[Int]>([])
        let windows = BatchWindows(keysMax: 100) { value in recorded.withLock { $0.append(value) } }
        let journal = Journal()
        let owner = ObjectIdentifier(Owner())
        journal.enter(windows, "a", 100, owner: owner)
        journal.enter(windows, "b", 60, owner: owner)
        journal.enter(windows, "c", 40, owner: owner)
        // Another node's window is its own.
        journal.enter(windows, "other", 100, to: "n2", owner: owner)
        #expect(journal.all == ["go a", "go other"])
        #expect(windows.keysWaiting == 100)
        #expect(windows.keysInFlight(to: "n1") == 100)

        windows.leave(try #require(journal.claim("a")))
        #expect(journal.all == ["go a", "go other", "go b", "go c"])
        #expect(windows.keysWaiting == 0)
        #expect(windows.keysInFlight(to: "n1") == 100)
        #expect(recorded.withLock { $0 } == [60, 100, 0])

        // A second leave of the same claim frees nothing more.
        windows.leave(try #require(journal.claim("a")))
        #expect(windows.keysInFlight(to: "n1") == 100)
        windows.leave(try #require(journal.claim("b")))
        windows.leave(try #require(journal.claim("c")))
        windows.leave(try #require(journal.claim("other")))
        #expect(windows.keysInFlight(to: "n1") == 0 && windows.keysInFlight(to: "n2") == 0)
    }

    @Test func aBatchThatEndsDropsItsWaitingSendsOnly() throws {
        let windows = BatchWindows(keysMax: 100)
        let journal = Journal()
        let (first, second) = (Owner(), Owner())
        let (mine, theirs) = (ObjectIdentifier(first), ObjectIdentifier(second))
        journal.enter(windows, "held", 100, owner: theirs)
        journal.enter(windows, "mine", 50, owner: mine)
        journal.enter(windows, "theirs", 50, owner: theirs)
        windows.drop(owner: mine, RPCError.shutDown)
        #expect(journal.all.count == 2)
        #expect(journal.all.last?.hasPrefix("drop mine") == true)
        // The dropped send took no room: the one behind it still waits for the held one.
        #expect(windows.keysWaiting == 50)
        #expect(windows.keysInFlight(to: "n1") == 100)
        windows.leave(try #require(journal.claim("held")))
        #expect(journal.all.last == "go theirs")
        #expect(journal.claim("mine") == nil)
        #expect(windows.keysInFlight(to: "n1") == 50)
    }

    @Test func closingDropsEveryWaitingSendAndRefusesLaterOnes() throws {
        let windows = BatchWindows(keysMax: 10)
        let journal = Journal()
        let owner = ObjectIdentifier(Owner())
        journal.enter(windows, "held", 10, owner: owner)
        journal.enter(windows, "waits", 5, owner: owner)
        journal.enter(windows, "elsewhere", 20, to: "n2", owner: owner)
        journal.enter(windows, "waits too", 5, to: "n2", owner: owner)
        windows.close()
        #expect(
            Set(journal.all.dropFirst(2)) == [
                "drop waits: \(RPCError.shutDown)", "drop waits too: \(RPCError.shutDown)",
            ])
        #expect(windows.keysWaiting == 0)
        journal.enter(windows, "late", 1, owner: owner)
        #expect(journal.all.last == "drop late: \(RPCError.shutDown)")
        // A send in flight when the client closed still gives its room back, harmlessly.
        windows.leave(try #require(journal.claim("held")))
        #expect(journal.all.count == 5)
    }
}
