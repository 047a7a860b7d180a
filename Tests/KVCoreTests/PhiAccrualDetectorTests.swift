import KVCore
import Testing

struct PhiAccrualDetectorTests {
    /// Heartbeats every `period` ms from 0 up to `until`, with `jitter` ms drawn from `rng` either way.
    func beating(
        every period: UInt64, until end: UInt64, jitter: UInt64 = 0, seed: UInt64 = 1,
        configuration: PhiAccrualDetector.Configuration = .init()
    ) -> PhiAccrualDetector {
        var rng = SplitMix64(seed: seed)
        var detector = PhiAccrualDetector(configuration: configuration)
        var time: UInt64 = 1_000_000
        while time < 1_000_000 + end {
            let offset = jitter == 0 ? 0 : UInt64.random(in: 0...(2 * jitter), using: &rng)
            detector.heartbeat(atMillis: time + offset - jitter)
            time += period
        }
        return detector
    }

    @Test func regularHeartbeatsKeepPhiLowAndSilenceRaisesItPastTheThreshold() {
        let detector = beating(every: 1000, until: 60_000)
        let last = detector.lastHeartbeatMillis!
        #expect(detector.phi(atMillis: last + 500) < 1)
        #expect(!detector.isSuspected(atMillis: last + 1000))
        #expect(detector.isSuspected(atMillis: last + 3000), "phi \(detector.phi(atMillis: last + 3000))")
        // Monotonic in the silence.
        var previous = -1.0
        for elapsed in stride(from: UInt64(0), through: 20_000, by: 100) {
            let phi = detector.phi(atMillis: last + elapsed)
            #expect(phi >= previous && phi.isFinite, "at +\(elapsed) ms: \(phi) after \(previous)")
            previous = phi
        }
    }

    @Test func jitteryHeartbeatsAreToleratedLonger() {
        let steady = beating(every: 1000, until: 60_000)
        let jittery = beating(every: 1000, until: 60_000, jitter: 400)
        let probe: UInt64 = 2000
        #expect(
            jittery.phi(atMillis: jittery.lastHeartbeatMillis! + probe)
                < steady.phi(atMillis: steady.lastHeartbeatMillis! + probe))
    }

    @Test func theThresholdAndThePauseAreHonoured() {
        let strict = beating(every: 1000, until: 30_000, configuration: .init(threshold: 1))
        let patient = beating(every: 1000, until: 30_000, configuration: .init(acceptablePause: .seconds(5)))
        #expect(strict.isSuspected(atMillis: strict.lastHeartbeatMillis! + 1300))
        #expect(!patient.isSuspected(atMillis: patient.lastHeartbeatMillis! + 5000))
        #expect(patient.isSuspected(atMillis: patient.lastHeartbeatMillis! + 9000))
    }

    @Test func theConfigurationClampsItsDurations() {
        let configuration = PhiAccrualDetector.Configuration(
            minimumDeviation: .zero, acceptablePause: .milliseconds(-5), firstInterval: .microseconds(10))
        #expect(configuration.minimumDeviation == .milliseconds(1))
        #expect(configuration.acceptablePause == .zero)
        #expect(configuration.firstInterval == .milliseconds(1))
    }

    @Test func withoutHistoryNothingIsJudgedAndOneHeartbeatUsesTheFirstInterval() {
        var detector = PhiAccrualDetector()
        #expect(detector.phi(atMillis: 123) == 0)
        #expect(!detector.isSuspected(atMillis: 10_000_000))
        detector.heartbeat(atMillis: 1000)
        #expect(!detector.isSuspected(atMillis: 1500))
        #expect(detector.isSuspected(atMillis: 10_000))
        // A heartbeat from a clock that stepped back does not break anything.
        detector.heartbeat(atMillis: 500)
        #expect(detector.lastHeartbeatMillis == 1000)
    }

    @Test func theWindowForgetsOldIntervals() {
        var detector = PhiAccrualDetector(configuration: .init(windowSize: 10))
        var time: UInt64 = 0
        for _ in 0..<50 {
            time += 10_000
            detector.heartbeat(atMillis: time)
        }
        for _ in 0..<20 {
            time += 100
            detector.heartbeat(atMillis: time)
        }
        // Only the fast recent rhythm counts now.
        #expect(detector.isSuspected(atMillis: time + 2000))
    }
}
