package import KVStorage
package import NIOPosix
import Synchronization

/// Group commit for the hints this node keeps as a fallback: the hints that arrive while a batch is
/// being stored wait together (`GroupCommitQueue`) and go as the next batch, in one
/// `HintAdmission.admit(_:hints:synced:)` call on a pool thread: one store write for all of them, each
/// admitted as it would have been alone in arrival order. The write is not synced: in `sync` mode the
/// batch is answered once the store's next fsync (`whenHintsDurable`, the WAL syncer's, which the
/// data writes share) has made it durable, and the pool thread goes on to the next batch meanwhile.
///
/// With a synced write of their own, a node that stored a dead replica's hints made a second stream of
/// fsyncs beside the WAL syncer's: one of the three costs that left a 4-node cluster with one node
/// down at about 60 % of the rate it had with hinted handoff off (docs/benchmarks.md, "Hints share
/// the data's fsync").
///
/// Alone, each hint was a synced write of its own, and every hint for one target waited for the one
/// before it (the target's stripe keeps its queue count exact): when a node died, its hints queued on
/// every fallback's pool behind one fsync each, ahead of the puts, and a 4-node cluster's puts fell
/// by a third with their p99 tripled (docs/benchmarks.md, "Hints in one write").
package final class HintGroup: Sendable {
    /// The hints of one batch at most: bounds the time the targets' stripes are held.
    static let batchMax = 512

    /// What an offer's caller is told, once its hint is durable (on the thread of the fsync that made
    /// it so, or the pool thread that stored it): its admission, or `CancellationError` when the pool
    /// is shutting down.
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

    /// Admits `offer` in the next batch, then calls `completion` once it is durable (`Completion`).
    package func admit(_ offer: HintAdmission.Offer, completion: @escaping Completion) {
        let starts = state.withLock { $0.enqueue(Waiting(offer: offer, completion: completion)) }
        if starts {
            pool.submit { work in self.admitWhileWaiting(work) }
        }
    }

    /// `result`, or the failure of the fsync that was to make it durable when it was stored.
    private static func durable(_ result: HintAdmission.Admitted, unless error: StorageError?)
        -> HintAdmission.Admitted
    {
        guard let error, case .success((.stored, _)) = result else { return result }
        return .failure(.replica(.storage(error)))
    }

    /// Admits batches until nobody waits (on a pool thread).
    private func admitWhileWaiting(_ work: NIOThreadPool.WorkItemState) {
        while let batch = state.withLock({ $0.nextBatch(max: Self.batchMax) }) {
            guard case .active = work else {
                for waiting in batch { waiting.completion(.failure(CancellationError())) }
                continue
            }
            let admitted = admission.admit(batch.map(\.offer), hints: hints, synced: false)
            hints.whenHintsDurable { error in
                for (waiting, result) in zip(batch, admitted) {
                    waiting.completion(.success(Self.durable(result, unless: error)))
                }
            }
        }
    }
}
