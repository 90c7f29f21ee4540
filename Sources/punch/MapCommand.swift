import ArgumentParser
import Foundation
import Punch

/// `punch map`: maps a port on the gateway with PCP, NAT-PMP or UPnP-IGD and keeps it mapped.
struct MapCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "map",
        abstract: "Map a port on the NAT gateway (PCP, NAT-PMP or UPnP-IGD) and keep it mapped until interrupted.",
        discussion: """
            Tries PCP, then NAT-PMP, then UPnP-IGD (or only the one given with --protocol), prints the \
            mapping as soon as it exists, renews it at half its lifetime, maps again if the gateway \
            restarts, and removes it on SIGINT or SIGTERM.

            With --json, the first line is
              {"event":"mapped","protocol":"natpmp","transport":"udp","internal_port":4001,"external":"203.0.113.1:4001","lifetime":7200}
            and later events follow one per line: renewed, external_address_changed, lost, removed,
            removal_failed. A failure prints {"event":"error","code":...,"message":...} and exits 1.

            Examples:
              punch map --udp --port 4001
              punch map --tcp --port 8080 --lifetime 600 --protocol natpmp --gateway 192.168.1.1 --json
            """
    )

    @Flag(name: .customLong("udp"), help: "Map a UDP port.")
    var udp = false

    @Flag(name: .customLong("tcp"), help: "Map a TCP port.")
    var tcp = false

    @Option(name: .long, help: ArgumentHelp("The local port to map (1-65535).", valueName: "port"))
    var port: UInt16

    @Option(name: .long, help: ArgumentHelp("The external port to ask for; by default the local port.", valueName: "port"))
    var externalPort: UInt16?

    @Option(name: .long, help: ArgumentHelp("Seconds to ask for; renewed at half of what the gateway grants.", valueName: "seconds"))
    var lifetime: UInt32 = 7200

    @Option(name: .customLong("protocol"), help: ArgumentHelp("auto, pcp, natpmp or upnp.", valueName: "protocol"))
    var mappingProtocol: String = "auto"

    @Option(name: .long, help: ArgumentHelp("The gateway's IP address; by default the routing table's default gateway.", valueName: "ip"))
    var gateway: String?

    @Option(name: .long, help: ArgumentHelp("How many times a NAT-PMP or PCP request is sent before giving up (RFC 6886: 9).", valueName: "n"))
    var attempts: Int = 9

    @Flag(name: .long, help: "Print one JSON object per line.")
    var json = false

    func validate() throws {
        guard udp != tcp else { throw ValidationError("give exactly one of --udp and --tcp") }
        guard port > 0 else { throw ValidationError("--port must be 1-65535") }
        guard lifetime > 0 else { throw ValidationError("--lifetime must be at least 1 second") }
        guard mappingProtocol == "auto" || PortMappingProtocol(rawValue: mappingProtocol) != nil else {
            throw ValidationError("--protocol is auto, pcp, natpmp or upnp")
        }
        guard (1...20).contains(attempts) else { throw ValidationError("--attempts must be 1-20") }
    }

    func run() async throws {
        var configuration = PortMapper.Configuration(transport: udp ? .udp : .tcp, internalPort: port)
        configuration.lifetime = lifetime
        configuration.suggestedExternalPort = externalPort
        configuration.retransmission = RetransmissionPolicy(maximumAttempts: attempts)
        if let chosen = PortMappingProtocol(rawValue: mappingProtocol) { configuration.protocols = [chosen] }
        let printer = MappingPrinter(json: json)
        // Catch SIGINT/SIGTERM from the start: one arriving while the gateway is still being
        // asked must not kill the process after the gateway made the mapping, leaving it behind.
        let terminated = Task { await SignalWaiter.waitForTermination() }
        let mapper: PortMapper
        do {
            if let gateway { configuration.gateway = try IPAddress(gateway) }
            mapper = PortMapper(configuration: configuration)
            _ = try await mapper.start()
        } catch {
            throw CommandFailure.report(error, json: json)
        }
        // The mapped event is the first on the stream, so it is printed by the loop below.
        let events = Task {
            for await event in mapper.events { printer.print(event) }
        }
        await terminated.value
        await mapper.shutdown()
        _ = await events.value
    }
}

/// Prints mapping events for people or, with `--json`, as JSON lines.
struct MappingPrinter: Sendable {
    let json: Bool

    func print(_ event: PortMappingEvent) {
        switch event {
        case .mapped(let mapping):
            emit(object("mapped", mapping), "mapped \(mapping.transport) \(mapping.external) -> local port \(mapping.internalPort) with \(mapping.mappingProtocol), lifetime \(mapping.lifetime) s")
        case .renewed(let mapping):
            emit(object("renewed", mapping), "renewed \(mapping.external) for \(mapping.lifetime) s")
        case .externalAddressChanged(let old, let new):
            var fields = object("external_address_changed", new)
            fields["previous"] = "\(old.external)"
            emit(fields, "external address changed from \(old.external) to \(new.external)")
        case .lost(let error):
            emit(["event": "lost", "code": error.code.name, "message": error.message], "mapping lost: \(error.message); mapping again")
        case .removed(let mapping):
            emit(object("removed", mapping), "removed \(mapping.external)")
        case .removalFailed(let mapping, let error):
            var fields = object("removal_failed", mapping)
            fields["code"] = error.code.name
            fields["message"] = error.message
            emit(fields, "could not remove \(mapping.external): \(error.message); it expires by itself")
        }
    }

    private func object(_ event: String, _ mapping: GatewayMapping) -> [String: Any] {
        ["event": event, "protocol": mapping.mappingProtocol.rawValue, "transport": mapping.transport.rawValue,
         "internal_port": Int(mapping.internalPort), "external": "\(mapping.external)", "lifetime": Int(mapping.lifetime)]
    }

    private func emit(_ object: [String: Any], _ text: String) {
        if json { JSONLine.print(object) } else { Swift.print(text) }
        fflush(nil)
    }
}
