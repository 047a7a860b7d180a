import ArgumentParser
import Foundation
import KVClient

/// `kvctl drain`: a node steps aside before a restart.
struct DrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain",
        abstract: "Drain a node before a restart: refuse new requests, finish those in flight, flush (admin).",
        discussion: """
            The node answers every new request but admin ones and cluster-map reads with shuttingDown, so clients answer from \
            the other replicas and hand its writes off as hints. Stop it afterwards (SIGTERM); a restarted \
            node takes requests at once. --resume takes requests again without a restart.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The node's id.") var node: String

    @Flag(help: "Take requests again instead (end a drain without a restart).") var resume = false

    @Option(name: .customLong("drain-timeout"), help: "Seconds to wait for the requests in flight (1…60, default 10).")
    var drainTimeout: Double = 10

    func validate() throws {
        guard drainTimeout >= 0.001, drainTimeout <= 60 else {
            throw ValidationError("--drain-timeout must be between 0.001 and 60 seconds")
        }
    }

    func run() async throws {
        try await reportingFailures(json: global.json) {
            try await global.withClient { client in
                if resume {
                    try await client.resume(node: node)
                    print("\(node): taking requests")
                    return
                }
                let result = try await client.drain(node: node, timeout: .milliseconds(Int64(drainTimeout * 1000)))
                if global.json {
                    try printJSON([
                        "node": node, "in_flight_left": "\(result.inFlightLeft)", "flushed": "\(result.flushed)",
                    ])
                } else {
                    print(
                        "\(node): drained (\(result.inFlightLeft) request(s) still in flight, store \(result.flushed ? "flushed" : "not flushed"))"
                    )
                }
            }
        }
    }
}

/// `kvctl wait-ready`: waits until a (restarted) node is back in service as the cluster sees it.
struct WaitReadyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait-ready",
        abstract:
            "Wait until a node is back in service: it takes requests, and no peer suspects it or holds hints for it.",
        discussion: """
            Ready means: the node answers a ping (it is not draining), holds the newest cluster map any \
            member holds, every other member answers and none suspects it, and no member holds hints for \
            it. What is still missing goes to stderr every few seconds. Exit code 1 when --wait-timeout \
            passes first.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The node's id.") var node: String

    @Option(name: .customLong("wait-timeout"), help: "Seconds to wait at most (default 300).")
    var waitTimeout: Double = 300

    func validate() throws {
        guard waitTimeout > 0, waitTimeout <= 86_400 else {
            throw ValidationError("--wait-timeout must be between 0 and 86400 seconds")
        }
    }

    func run() async throws {
        try await reportingFailures(json: global.json) {
            try await global.withClient { client in
                let clock = ContinuousClock()
                let deadline = clock.now + .milliseconds(Int64(waitTimeout * 1000))
                var lastReport = clock.now
                while true {
                    let readiness = try await client.readiness(of: node)
                    if readiness.isReady {
                        print("\(node): ready")
                        return
                    }
                    let waiting = readiness.waitingFor.joined(separator: "; ")
                    guard clock.now < deadline else {
                        throw CommandFailure("\(node) is not ready after \(waitTimeout) s: waiting for \(waiting)")
                    }
                    if clock.now - lastReport >= .seconds(3) {
                        printError("\(node): waiting for \(waiting)")
                        lastReport = clock.now
                    }
                    try await Task.sleep(for: .milliseconds(250))
                }
            }
        }
    }
}
