import KVCore
import KVRPC
import KVStorage
import KVWire
import Logging

/// `Admin` drain: how a node steps aside before a restart (`kvctl drain`, `scripts/rolling-restart.sh`).
extension ReplicaService {
    /// How long a drain waits for the requests in flight unless told (`timeout_ms`), and at most.
    static let drainTimeoutDefault: Duration = .seconds(10)
    static let drainTimeoutMax: Duration = .seconds(60)

    /// Refuses new requests (`DrainGate`), waits for those in flight, then flushes the store; or, with
    /// `resume=1`, takes requests again. Arguments: `resume` (0 or 1), `timeout_ms` (1…60000).
    func drain(_ arguments: [Pair]) async throws -> Message {
        var resume = false
        var timeout = Self.drainTimeoutDefault
        for argument in arguments {
            switch argument.name {
            case "resume":
                guard argument.value == "0" || argument.value == "1" else {
                    throw RPCError.remote(.invalidRequest, message: "resume must be 0 or 1")
                }
                resume = argument.value == "1"
            case "timeout_ms":
                let maxMillis = Self.drainTimeoutMax.wholeMillisecondsClamped
                guard let millis = UInt64(argument.value), millis >= 1, millis <= maxMillis else {
                    throw RPCError.remote(.invalidRequest, message: "timeout_ms must be 1…\(maxMillis)")
                }
                timeout = .milliseconds(Int64(millis))
            default:
                throw RPCError.remote(.invalidRequest, message: "drain takes no argument '\(argument.name)'")
            }
        }
        if resume {
            drainGate.resume()
            logger.notice("drain ended: taking requests again")
            return .adminResponse(AdminResponse(results: [Pair(name: "outcome", value: "resumed")]))
        }
        logger.notice("draining: refusing new requests")
        let left = await drainGate.drain(timeout: timeout)
        var flushed = true
        do {
            try await runOnPool { [store] () throws(ReplicaError) in
                do throws(StorageError) {
                    try store.flush()
                } catch {
                    throw ReplicaError.storage(error)
                }
            }
        } catch {
            flushed = false
            logger.warning("drain could not flush the store", metadata: ["error": "\(error)"])
        }
        logger.notice("drained", metadata: ["drain.in_flight_left": "\(left)", "drain.flushed": "\(flushed)"])
        return .adminResponse(
            AdminResponse(results: [
                Pair(name: "outcome", value: "drained"), Pair(name: "in_flight_left", value: "\(left)"),
                Pair(name: "flushed", value: flushed ? "1" : "0"),
            ]))
    }
}
