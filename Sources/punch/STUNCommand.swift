import ArgumentParser
import Foundation
import Punch

/// `punch stun`: a STUN server, and an RFC 5780 one with a second address.
struct STUNCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stun",
        abstract: "Run a STUN server (RFC 8489), or an RFC 5780 NAT behaviour discovery server.",
        discussion: """
            Answers Binding requests with the client's reflexive address (XOR-MAPPED-ADDRESS), \
            over UDP and over TCP on the same port (RFC 8489 §6.2.2). \
            With --alternate-ip it also listens on that address and on port+1 of both, and \
            honours CHANGE-REQUEST, so clients can classify their NAT (punch netcheck, \
            turnutils_natdiscovery). Answers go only to a request's source, at most \
            \(STUNServerConfiguration.defaultPerSourceRate)/s per source IP and \
            \(STUNServerConfiguration.defaultTotalRate)/s in all. Runs until SIGINT or SIGTERM.

            With --json the first line is
              {"event":"listening","addrs":["203.0.113.10:3478",...],"rfc5780":true,"tcp":"203.0.113.10:3478"}
            and on shutdown {"event":"stopped",...} with the counters.

            Examples:
              punch stun --listen 0.0.0.0:3478
              punch stun --listen 203.0.113.10:3478 --alternate-ip 203.0.113.11 --json
            """
    )

    @Option(name: .long, help: ArgumentHelp("The address and UDP port to listen on (IP:PORT or [IPv6]:PORT).", valueName: "ip:port"))
    var listen: String

    @Option(name: .long, help: ArgumentHelp("A second local IP address: turns on RFC 5780 mode.", valueName: "ip"))
    var alternateIP: String?

    @Flag(name: .long, help: "Print one JSON object per line.")
    var json = false

    func run() async throws {
        do {
            let configuration = STUNServerConfiguration(listen: try IPEndpoint(listen), alternateAddress: try alternateIP.map(IPAddress.init))
            let server = try await STUNServer.start(configuration)
            let addresses = server.localAddresses.map(\.description)
            if json {
                JSONLine.print([
                    "event": "listening", "addrs": addresses, "rfc5780": configuration.isRFC5780,
                    "tcp": server.tcpAddress.map { $0.description } ?? NSNull(),
                ])
            } else {
                print("STUN server\(configuration.isRFC5780 ? " (RFC 5780)" : "") listening on \(addresses.joined(separator: ", "))"
                    + (server.tcpAddress.map { "; STUN over TCP on \($0)" } ?? ""))
            }
            fflush(nil)
            await SignalWaiter.waitForTermination()
            let statistics = try await server.statistics()
            try await server.close()
            let counters: [String: Any] = [
                "success_responses": statistics.successResponses, "error_responses": statistics.errorResponses,
                "dropped_malformed": statistics.droppedMalformed, "dropped_not_request": statistics.droppedNotRequest,
                "dropped_unsupported_method": statistics.droppedUnsupportedMethod, "dropped_bad_source": statistics.droppedBadSource,
                "dropped_rate_limited": statistics.droppedSourceRateLimit + statistics.droppedTotalRateLimit + statistics.droppedSourceTableFull,
            ]
            if json {
                JSONLine.print(counters.merging(["event": "stopped"]) { $1 })
            } else {
                print("stopped: \(statistics.successResponses) answered, \(statistics.errorResponses) errors, \(statistics.droppedMalformed) malformed dropped")
            }
        } catch {
            throw CommandFailure.report(error, json: json)
        }
    }
}
