import KVCore
import Testing

struct NewerMapRetryTests {
    @Test func retriesOnlyOnAStrictlyNewerMapAndAtMostRetriesMaxTimes() {
        var retry = NewerMapRetry(epoch: 3)
        var answers: [Bool] = []
        answers.append(retry.retry(onEpoch: 3))  // the same map would fail the same way
        answers.append(retry.retry(onEpoch: 2))
        answers.append(retry.retry(onEpoch: 5))
        #expect(retry.epoch == 5)
        answers.append(retry.retry(onEpoch: 5))
        #expect(answers == [false, false, true, false])
        var epoch: UInt64 = 5
        for _ in 1..<NewerMapRetry.retriesMax {
            epoch += 1
            let again = retry.retry(onEpoch: epoch)
            #expect(again)
        }
        #expect(retry.retries == NewerMapRetry.retriesMax)
        let afterTheLast = [retry.retry(onEpoch: epoch + 1), retry.retry(onEpoch: .max)]
        #expect(afterTheLast == [false, false], "the retries end")
    }

    /// The simulator's planted bug (`--mutate-skip-newer-map-retry`) lives in the production value.
    @Test func theMutationNeverRetries() {
        var retry = NewerMapRetry(epoch: 3)
        retry.neverRetries = true
        let retried = retry.retry(onEpoch: 4)
        #expect(!retried)
        #expect(retry.epoch == 3 && retry.retries == 0)
    }
}
