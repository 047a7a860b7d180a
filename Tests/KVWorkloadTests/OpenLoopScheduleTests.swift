import KVWorkload
import Testing

struct OpenLoopScheduleTests {
    @Test
    func intendedStartsAreAtExactIntervalsAndTheWorkersInterleave() {
        // 1000 requests per second over 4 workers: a slot each millisecond, each worker every 4 ms.
        var schedules = (0..<4).map { OpenLoopSchedule(rate: 1000, workers: 4, worker: $0) }
        #expect(schedules[0].interval == .milliseconds(4))
        var starts: [Duration] = []
        for _ in 0..<250 {
            for worker in 0..<4 { starts.append(schedules[worker].next()) }
        }
        #expect(starts == (0..<1000).map { Duration.milliseconds($0) })
        #expect(schedules[1].intendedStart(ofRequest: 1_000_000) == .seconds(4000) + .milliseconds(1))
    }

    @Test
    func ratesThatDoNotDivideASecondDoNotDrift() {
        let schedule = OpenLoopSchedule(rate: 3, workers: 1, worker: 0)
        #expect(schedule.intendedStart(ofRequest: 1) == .nanoseconds(333_333_333))
        #expect(schedule.intendedStart(ofRequest: 3) == .seconds(1))
        #expect(schedule.intendedStart(ofRequest: 3_000_000) == .seconds(1_000_000))
    }

    @Test
    func latencyIsMeasuredFromTheIntendedStartWhenTheSenderFallsBehind() {
        // One worker at 100 requests per second (every 10 ms) against a server that takes 25 ms.
        var schedule = OpenLoopSchedule(rate: 100, workers: 1, worker: 0)
        let service = Duration.milliseconds(25)
        var ready = Duration.zero
        var timings: [RequestTiming] = []
        for _ in 0..<5 {
            let intended = schedule.next()
            let sent = OpenLoopSchedule.sendTime(intendedStart: intended, ready: ready)
            let timing = RequestTiming(intendedStart: intended, sent: sent, completed: sent + service)
            timings.append(timing)
            ready = timing.completed
        }
        // Sent at 0, 25, 50, 75, 100 ms though meant for 0, 10, 20, 30, 40 ms.
        #expect(timings.map(\.sent) == [0, 25, 50, 75, 100].map { Duration.milliseconds($0) })
        #expect(timings.map(\.serviceTime) == Array(repeating: service, count: 5))
        // Completion − intended start: the wait behind the slow requests counts, 15 ms more each time.
        #expect(timings.map(\.latency) == [25, 40, 55, 70, 85].map { Duration.milliseconds($0) })
    }

    @Test
    func aSenderOnTimeWaitsForTheIntendedStartAndItsLatencyIsItsServiceTime() {
        let sent = OpenLoopSchedule.sendTime(intendedStart: .milliseconds(30), ready: .milliseconds(12))
        #expect(sent == .milliseconds(30))
        let timing = RequestTiming(intendedStart: .milliseconds(30), sent: sent, completed: .milliseconds(33))
        #expect(timing.latency == .milliseconds(3) && timing.serviceTime == .milliseconds(3))
        // A closed loop has no intended start: both are the service time.
        let closed = RequestTiming(sent: .milliseconds(5), completed: .milliseconds(9))
        #expect(closed.latency == .milliseconds(4) && closed.serviceTime == .milliseconds(4))
    }
}
