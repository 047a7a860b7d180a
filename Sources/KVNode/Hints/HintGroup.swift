package import KVStorage
package import NIOPosix
import Synchronization

/// Group commit for the hints this node keeps as a fallback: the hints that arrive while a batch is
/// being stored wait together (`GroupCommitQueue`) and go as the next batch, in one
/// `HintAdmission.admit(_:hints:)` call on a pool thread: one store write, one fsync in `sync` mode,
/// for all of them, each admitted as it would have been alone in arrival order.
///
/// Alone, each hint was a synced write of its own, and every hint for one target waited for the one
/// before it (the target's stripe keeps its queue count exact): when a node died, its hints queued on
/// every fallback's pool behind one fsync each, ahead of the puts, and a 4-node cluster's puts fell
/// by a third with their p99 tripled (docs/benchmarks.md, "Hints in one write").
package final class HintGroup: Sendable {
    /// The hints of one batch at most: bounds the time the targets' stripes are held.
    static let batchMax = 512

    /// What an offer's caller is told, on the pool thread that stored it: its admission, or
    /// `CancellationError` when the pool is shutting down.
    package typealias Completion = @Sendable (Result<HintAdmission.Admitted, any Error>) -> Void

    private struct Waiting {
        let offer: HintAdmission.Offer
        let completion: Completion
    }

    private let admission: HintAdmission
    private let hints: any HintStore
    private let pool: NIOThreadPool
    private let state = Mutex(GroupCommitQueue<Waiting>())

    package init(admission: HintAdmission, hints: any HintStore, pool: NIOThreadPool) {
        self.admission = admission
        self.hints = hints
        self.pool = pool
    }

    /// Admits `offer` in the next batch, then calls `completion` on the pool thread that stored it.
    package func admit(_ offer: HintAdmission.Offer, completion: @escaping Completion) {
        let starts = state.withLock { $0.enqueue(Waiting(offer: offer, completion: completion)) }
        if starts {
            pool.submit { work in self.admitWhileWaiting(work) }
        }
    }

    /// Admits batches until nobody waits (on a pool thread).
    private func admitWhileWaiting(_ work: NIOThreadPool.WorkItemState) {
        while let batch = state.withLock({ $0.nextBatch(max: Self.batchMax) }) {
            guard case .active = work else {
                for waiting in batch { waiting.completion(.failure(CancellationError())) }
                continue
            }
            let admitted = admission.admit(batch.map(\.offer), hints: hints)
            for (waiting, result) in zip(batch, admitted) {
                waiting.completion(.success(result))
            }
        }
    }
}
