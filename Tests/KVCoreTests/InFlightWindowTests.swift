import KVCore
import Testing

/// The window of keys one client has in flight to one node (the SDK's batch sends): requests go while
/// their keys fit, wait first come first served beyond, and go in order as answers free room.
@Suite struct InFlightWindowTests {
    /// The permit of a request admitted at once (records an issue otherwise).
    func admitted(_ admission: InFlightWindow.Admission, sourceLocation: SourceLocation = #_sourceLocation)
        -> InFlightWindow.Permit?
    {
        guard case .admitted(let permit) = admission else {
            Issue.record("expected admitted, got \(admission)", sourceLocation: sourceLocation)
            return nil
        }
        return permit
    }

    /// The permit of a request that waits (records an issue otherwise).
    func waiting(_ admission: InFlightWindow.Admission, sourceLocation: SourceLocation = #_sourceLocation)
        -> InFlightWindow.Permit?
    {
        guard case .waiting(let permit) = admission else {
            Issue.record("expected waiting, got \(admission)", sourceLocation: sourceLocation)
            return nil
        }
        return permit
    }

    @Test func admitsUpToTheBoundThenQueues() throws {
        var window = InFlightWindow(keysMax: 100)
        _ = try #require(admitted(window.take(40)))
        _ = try #require(admitted(window.take(60)))
        #expect(window.keysInFlight == 100)
        _ = try #require(waiting(window.take(1)))
        #expect(window.keysInFlight == 100)
        #expect(window.keysWaiting == 1)
    }

    @Test func releasesLetTheQueueGoInOrderAndNoneOvertakes() throws {
        var window = InFlightWindow(keysMax: 100)
        let first = try #require(admitted(window.take(100)))
        let big = try #require(waiting(window.take(80)))
        let small = try #require(waiting(window.take(10)))
        // Room for the small one only after the big one: it still waits behind it.
        let third = try #require(waiting(window.take(5)))
        #expect(window.keysWaiting == 95)

        #expect(window.release(first) == [big, small, third])
        #expect(window.keysInFlight == 95)
        #expect(window.keysWaiting == 0)

        // A request arriving while others wait queues behind them even if it would fit.
        var busy = InFlightWindow(keysMax: 100)
        let held = try #require(admitted(busy.take(90)))
        let blocked = try #require(waiting(busy.take(20)))
        let fitting = try #require(waiting(busy.take(5)))
        #expect(busy.keysInFlight == 90)
        #expect(busy.release(held) == [blocked, fitting])
    }

    @Test func onlyWhatFitsGoesAndTheRestWaitsForTheNextRelease() throws {
        var window = InFlightWindow(keysMax: 100)
        let a = try #require(admitted(window.take(50)))
        let b = try #require(admitted(window.take(50)))
        let c = try #require(waiting(window.take(50)))
        let d = try #require(waiting(window.take(50)))
        let e = try #require(waiting(window.take(50)))
        #expect(window.release(a) == [c])
        #expect(window.release(b) == [d])
        #expect(window.release(c) == [e])
        #expect(window.release(d) == [])
        #expect(window.release(e) == [])
        #expect(window.isIdle)
        #expect(window.keysInFlight == 0 && window.keysWaiting == 0)
    }

    @Test func aRequestLargerThanTheBoundGoesWhenNothingElseIsInFlight() throws {
        var window = InFlightWindow(keysMax: 10)
        let alone = try #require(admitted(window.take(25)))
        #expect(window.keysInFlight == 25)
        let next = try #require(waiting(window.take(1)))
        #expect(window.release(alone) == [next])

        let another = try #require(waiting(window.take(30)))
        #expect(window.release(next) == [another])
        #expect(window.keysInFlight == 30)
    }

    @Test func releasingTwiceOrAnUnknownPermitFreesNothing() throws {
        var window = InFlightWindow(keysMax: 100)
        let a = try #require(admitted(window.take(60)))
        let b = try #require(admitted(window.take(40)))
        #expect(window.release(a) == [])
        #expect(window.keysInFlight == 40)
        // Released again: the 40 keys of `b` stay counted, nothing goes negative.
        #expect(window.release(a) == [])
        #expect(window.release(a) == [])
        #expect(window.keysInFlight == 40)
        let c = try #require(admitted(window.take(60)))
        _ = try #require(waiting(window.take(1)))
        // A permit of another window is unknown here.
        var other = InFlightWindow(keysMax: 100)
        for _ in 0..<5 { _ = other.take(1) }
        let foreign = try #require(admitted(other.take(1)))
        #expect(window.release(foreign) == [])
        #expect(window.keysInFlight == 100)
        _ = window.release([b, c])
        _ = window.release([b, c])
        #expect(window.keysInFlight == 1)
        #expect(window.keysWaiting == 0)
    }

    @Test func aWaiterGivenUpFreesNothingItDidNotTake() throws {
        var window = InFlightWindow(keysMax: 100)
        let held = try #require(admitted(window.take(100)))
        let given = try #require(waiting(window.take(50)))
        let behind = try #require(waiting(window.take(50)))
        // Giving up the waiter at the head frees no room: the one behind it still waits.
        #expect(window.release(given) == [])
        #expect(window.keysInFlight == 100)
        #expect(window.keysWaiting == 50)
        // Given up twice: still nothing.
        #expect(window.release(given) == [])
        #expect(window.release(held) == [behind])
        #expect(window.keysInFlight == 50)
        #expect(window.release(behind) == [])
        #expect(window.isIdle)
    }

    @Test func givingUpTheHeadLetsTheNextGoWhenItFits() throws {
        var window = InFlightWindow(keysMax: 100)
        _ = try #require(admitted(window.take(60)))
        let big = try #require(waiting(window.take(50)))
        let small = try #require(waiting(window.take(30)))
        // The big one blocked the small one, which fits: it goes once the big one is given up.
        #expect(window.release(big) == [small])
        #expect(window.keysInFlight == 90)
    }

    @Test func requestsGivenUpTogetherAreNotAdmittedByEachOther() throws {
        var window = InFlightWindow(keysMax: 100)
        let held = try #require(admitted(window.take(100)))
        let mine = try #require(waiting(window.take(10)))
        let theirs = try #require(waiting(window.take(10)))
        let mineToo = try #require(waiting(window.take(10)))
        // A batch that ends gives up its waiting requests and the one it had in flight at once.
        #expect(window.release([mine, held, mineToo]) == [theirs])
        #expect(window.keysInFlight == 10)
        #expect(window.keysWaiting == 0)
    }
}
