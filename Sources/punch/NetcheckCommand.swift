import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import Punch

/// `punch netcheck`: what the network in front of this machine does to UDP, for hole punching.
struct NetcheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netcheck",
        abstract: "Report public addresses, NAT mapping and filtering behaviour, hairpinning, and STUN latency.",
        discussion: """
            Sends STUN Binding requests to every --stun server at once (reporting the public \
            address each one sees, and the latency), then runs the RFC 5780 behaviour tests \
            from a fresh socket against the first server that supports RFC 5780 (OTHER-ADDRESS): \
            mapping and filtering behaviour in RFC 4787 terms, port preservation, and \
            hairpinning (without an RFC 5780 server, only the last two). Punch has no default \
            STUN server: give at least one. A value that \
            could not be measured is reported as unknown (null in JSON). Exits 0 whenever the \
            report was made, also when UDP is blocked.

            With --json it prints one object:
              {"udp":true,"public_v4":"198.51.100.7:40000","public_v6":null,
               "mapping":"endpoint-independent","filtering":"address-and-port-dependent",
               "hairpin":false,"port_preserved":true,
               "servers":[{"address":"203.0.113.10:3478","latency_ms":1.2,"mapped":"...","rfc5780":true}],
               "port_mapping":{"gateway":"192.168.1.1","pcp":false,"natpmp":true,"upnp":true,
                               "external_address":"198.51.100.7"}}
            port_mapping says which of PCP, NAT-PMP and UPnP-IGD the default gateway answered
            (probed without creating a mapping, about 2 s when none answers). With --relay the
            object also has "observed_tcp" (null if unknown), "reachability" (reachable,
            unreachable or unknown) and "autonat" (the check's details, as `punch autonat`);
            with --relay alone, the UDP fields are null.

            Examples:
              punch netcheck --stun 203.0.113.10:3478
              punch netcheck --stun stun.example.net --stun [2001:db8::1]:3478 --json
              punch netcheck --stun 203.0.113.10:3478 --relay /ip4/203.0.113.10/tcp/4001/p2p/12D3KooW...
            """
    )

    @Option(name: .long, help: ArgumentHelp("A STUN server (HOST:PORT, HOST, [IPv6]:PORT); repeat for more.", valueName: "host:port"))
    var stun: [String] = []

    @Option(name: .long, help: ArgumentHelp("A relay or other libp2p peer (…/p2p/PEER) for the TCP observed address and AutoNAT v2 reachability.", valueName: "multiaddr"))
    var relay: String?

    @Flag(name: .long, help: "Print the report as one JSON object.")
    var json = false

    /// The server list was empty.
    struct MissingServer: Error, CodedError {
        var codeName: String { "netcheck.noSTUNServer" }
        var message: String {
            "netcheck needs at least one STUN server: pass --stun HOST:PORT (an RFC 5780 server, such as `punch stun --alternate-ip`, also gives mapping and filtering behaviour), or --relay MULTIADDR for TCP only"
        }
    }

    /// What one server said.
    struct ServerReport: Sendable {
        var text: String
        var endpoint: IPEndpoint?
        var response: STUNBindingResponse?
        var error: String?
    }

    func run() async throws {
        do {
            guard !stun.isEmpty || relay != nil else { throw MissingServer() }
            let servers = try stun.map(STUNServerAddress.init)
            // The TCP side (identify's observed address, AutoNAT v2) meanwhile.
            let tcp = relay.map { relay in Task { await TCPReachabilityReport.probe(relay) } }
            guard !servers.isEmpty else {
                let portMapping = await PortMappingReport.probe()
                output([], nil, rfc5780Server: nil, portMapping: portMapping, tcp: await tcp?.value, stunChecked: false)
                return
            }
            // Which port-mapping protocols the gateway speaks, meanwhile (no mapping is made).
            let portMapping = Task { await PortMappingReport.probe() }
            let client4 = try await STUNClient.bind(configuration: .behaviourDiscovery)
            // An IPv6 socket only if this machine has IPv6 at all.
            let client6 = try? await STUNClient.bind(to: try IPEndpoint("[::]:0"), configuration: .behaviourDiscovery)
            let reports = await withTaskGroup(of: (Int, ServerReport).self) { group in
                for (index, server) in servers.enumerated() {
                    group.addTask { (index, await Self.probe(server, client4: client4, client6: client6)) }
                }
                var reports = [ServerReport?](repeating: nil, count: servers.count)
                for await (index, report) in group { reports[index] = report }
                return reports.compactMap { $0 }
            }
            try? await client4.close()
            try? await client6?.close()

            // Behaviour tests from a fresh socket: the probes above opened the NAT's filter
            // towards every server given, which could be the RFC 5780 server's other address.
            let capable = reports.first { $0.response?.otherAddress != nil && $0.endpoint?.address.isIPv4 == true }
                ?? reports.first { $0.response?.otherAddress != nil }
            // Without an RFC 5780 server, any server that answered still tells port
            // preservation and hairpinning; mapping and filtering stay unknown.
            let chosen = capable ?? reports.first { $0.response != nil && $0.endpoint?.address.isIPv4 == true } ?? reports.first { $0.response != nil }
            var classification: NATClassification?
            if let chosen, let endpoint = chosen.endpoint {
                let client = try await STUNClient.bind(
                    to: try IPEndpoint(endpoint.address.isIPv4 ? "0.0.0.0:0" : "[::]:0"), configuration: .behaviourDiscovery)
                classification = await NATClassifier(client: client).classify(server: endpoint)
                try? await client.close()
            }
            let stunTCP = await Self.probeTCP(reports)
            output(
                reports, classification, rfc5780Server: capable, portMapping: await portMapping.value, tcp: await tcp?.value,
                stunChecked: true, stunTCP: stunTCP)
        } catch {
            throw CommandFailure.report(error, json: json)
        }
    }

    /// What STUN over TCP said, from a listening port (as a node's, which a TCP punch uses).
    struct TCPReport: Sendable {
        var localPort: UInt16?
        /// Per server (by the index in the reports): the reflexive TCP address or the error.
        var results: [Int: Result<IPEndpoint, DiscoveryError>] = [:]
        var mapped: IPEndpoint? {
            results.keys.sorted().lazy.compactMap { try? self.results[$0]?.get() }.first
        }
    }

    /// STUN over TCP to every server that answered over UDP (RFC 8489 servers listen on both),
    /// from one listening TCP port, one after another: their answers say which public address
    /// and port the NAT gives that port, and whether it keeps the port.
    static func probeTCP(_ reports: [ServerReport]) async -> TCPReport {
        var report = TCPReport()
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.Types.SocketOption(level: .socket, name: .init(rawValue: SO_REUSEPORT)), value: 1)
            .childChannelInitializer { channel in channel.close() }
        guard let listener = try? await bootstrap.bind(host: "0.0.0.0", port: 0).get() else { return report }
        defer { listener.close(promise: nil) }
        guard let port = listener.localAddress?.port.map(UInt16.init) else { return report }
        report.localPort = port
        for (index, server) in reports.enumerated() {
            guard server.response != nil, let endpoint = server.endpoint, endpoint.address.isIPv4 else { continue }
            do {
                let response = try await STUNTCPClient.binding(to: endpoint, from: IPEndpoint(address: try IPAddress("0.0.0.0"), port: port))
                if let mapped = response.mappedAddress { report.results[index] = .success(mapped) }
            } catch let error as DiscoveryError {
                report.results[index] = .failure(error)
            } catch {
                report.results[index] = .failure(DiscoveryError(.stunSendFailed, "\(error)"))
            }
        }
        return report
    }

    static func probe(_ server: STUNServerAddress, client4: STUNClient, client6: STUNClient?) async -> ServerReport {
        var report = ServerReport(text: server.description)
        do {
            let ipv6Literal = (try? IPAddress(server.host))?.isIPv4 == false
            var client = client4
            var endpoint: IPEndpoint
            if ipv6Literal {
                guard let client6 else { throw DiscoveryError(.stunAddressFamilyMismatch, "this machine has no IPv6 socket for \(server)") }
                client = client6
                endpoint = try await client6.resolve(server)
            } else {
                do {
                    endpoint = try await client4.resolve(server)
                } catch let error as DiscoveryError where error.code == .stunResolutionFailed && client6 != nil {
                    // A name with only IPv6 addresses.
                    client = client6!
                    endpoint = try await client.resolve(server)
                }
            }
            report.endpoint = endpoint
            report.response = try await client.binding(to: endpoint)
        } catch let error as DiscoveryError {
            report.error = error.message
        } catch {
            report.error = "\(error)"
        }
        return report
    }

    private func output(
        _ reports: [ServerReport], _ classification: NATClassification?, rfc5780Server: ServerReport?, portMapping: PortMappingReport,
        tcp: TCPReachabilityReport?, stunChecked: Bool, stunTCP: TCPReport = TCPReport()
    ) {
        let tcpPreserved = stunTCP.mapped.flatMap { mapped in stunTCP.localPort.map { mapped.port == $0 } }
        let mapped = reports.compactMap { $0.response?.mappedAddress }
        let publicV4 = mapped.first { $0.address.isIPv4 } ?? classification?.mappedAddress.flatMap { $0.address.isIPv4 ? $0 : nil }
        let publicV6 = mapped.first { !$0.address.isIPv4 } ?? classification?.mappedAddress.flatMap { $0.address.isIPv4 ? nil : $0 }
        let udp = reports.contains { $0.response != nil } || classification?.udp == true
        if json {
            func value(_ item: (some Any)?) -> Any { item.map { $0 as Any } ?? NSNull() }
            let servers: [[String: Any]] = reports.enumerated().map { index, report in
                var object: [String: Any] = [
                    "address": report.text,
                    "resolved": value(report.endpoint?.description),
                    "latency_ms": value(report.response.map { Self.milliseconds($0.roundTrip) }),
                    "mapped": value(report.response?.mappedAddress?.description),
                    "rfc5780": report.response?.otherAddress != nil,
                ]
                if let error = report.error { object["error"] = error }
                switch stunTCP.results[index] {
                case .success(let mapped)?: object["tcp_mapped"] = mapped.description
                case .failure(let error)?: object["tcp_error"] = error.message
                case nil: object["tcp_mapped"] = NSNull()
                }
                return object
            }
            var object: [String: Any] = [
                "udp": stunChecked ? udp : NSNull(),
                "public_v4": value(publicV4?.description),
                "public_v6": value(publicV6?.description),
                "mapping": value(classification?.mapping?.rawValue),
                "filtering": value(classification?.filtering?.rawValue),
                "hairpin": value(classification?.hairpin),
                "port_preserved": value(classification?.portPreserved),
                "nat_detected": value(classification?.natDetected),
                "rfc5780_server": value(rfc5780Server?.endpoint?.description),
                "servers": servers,
                "port_mapping": portMapping.json,
                "public_tcp": value(stunTCP.mapped?.description),
                "tcp_port_preserved": value(tcpPreserved),
            ]
            if let tcp { object.merge(tcp.json) { _, new in new } }
            JSONLine.print(object)
            return
        }
        var lines: [String] = []
        lines.append("UDP:            \(!stunChecked ? "not checked (no --stun)" : udp ? "works" : "blocked (no STUN server answered)")")
        lines.append("Public IPv4:    \(publicV4?.description ?? "none")")
        lines.append("Public IPv6:    \(publicV6?.description ?? "none")")
        if !stunChecked {
            lines.append("Mapping, filtering, hairpinning: not checked (no --stun)")
        } else if !udp {
            lines.append("Mapping, filtering, hairpinning: unknown (no STUN server answered)")
        } else if let classification {
            if classification.otherAddress == nil {
                lines.append("                (no server supports RFC 5780, so mapping and filtering are unknown; run one with `punch stun --alternate-ip`)")
            }
            lines.append("Mapping:        \(Self.describeMapping(classification.mapping))")
            lines.append("Filtering:      \(Self.describeFiltering(classification.filtering))")
            lines.append("Hairpinning:    \(classification.hairpin.map { $0 ? "yes (hosts behind this NAT reach each other via its public address)" : "no" } ?? "unknown")")
            lines.append("Port preserved: \(classification.portPreserved.map { $0 ? "yes (the public port equals the local one)" : "no" } ?? "unknown")")
            if classification.natDetected == false { lines.append("NAT:            none (the public address is this socket's own)") }
        } else {
            lines.append("Mapping, filtering, hairpinning: unknown")
        }
        if let mapped = stunTCP.mapped {
            lines.append("Public TCP:     \(mapped) for local TCP port \(stunTCP.localPort.map { "\($0)" } ?? "?")\(tcpPreserved == true ? " (port preserved)" : tcpPreserved == false ? " (port changed)" : "") — what a TCP hole punch offers")
        } else if stunChecked {
            lines.append("Public TCP:     unknown (no server answered STUN over TCP)")
        }
        lines.append("Hole punching:  \(stunChecked ? Self.advice(classification, udp: udp) : "unknown (UDP not checked)")")
        lines.append("Port mapping:   \(portMapping.text)")
        if stunChecked { lines.append("Servers:") }
        for (index, report) in reports.enumerated() {
            if let response = report.response {
                let latency = String(format: "%.1f ms", Self.milliseconds(response.roundTrip))
                lines.append("  \(report.text)  \(latency)  sees \(response.mappedAddress?.description ?? "?")\(response.otherAddress != nil ? "  (RFC 5780)" : "")"
                    + ((try? stunTCP.results[index]?.get()).map { ", over TCP \($0)" } ?? ""))
            } else {
                lines.append("  \(report.text)  failed: \(report.error ?? "no answer")")
            }
        }
        if let tcp { lines += tcp.text }
        print(lines.joined(separator: "\n"))
    }

    static func milliseconds(_ amount: TimeAmount) -> Double {
        (Double(amount.nanoseconds) / 1e4).rounded() / 100
    }

    static func describeMapping(_ mapping: EndpointDependence?) -> String {
        switch mapping {
        case .endpointIndependent?: "endpoint-independent (RFC 4787 Endpoint-Independent Mapping): one public address and port for every destination"
        case .addressDependent?: "address-dependent (RFC 4787 Address-Dependent Mapping): a new public port for each destination address"
        case .addressAndPortDependent?: "address-and-port-dependent (RFC 4787 Address and Port-Dependent Mapping, \"symmetric\"): a new public port for each destination address and port"
        case nil: "unknown"
        }
    }

    static func describeFiltering(_ filtering: EndpointDependence?) -> String {
        switch filtering {
        case .endpointIndependent?: "endpoint-independent (RFC 4787 Endpoint-Independent Filtering, \"full cone\"): anyone may send to the public port"
        case .addressDependent?: "address-dependent (RFC 4787 Address-Dependent Filtering, \"restricted cone\"): only addresses this socket sent to may answer"
        case .addressAndPortDependent?: "address-and-port-dependent (RFC 4787 Address and Port-Dependent Filtering, \"port-restricted\"): only the exact address and port this socket sent to may answer"
        case nil: "unknown"
        }
    }

    /// What the behaviour means for UDP hole punching (measured in the NAT lab, natlab-notes.md).
    static func advice(_ classification: NATClassification?, udp: Bool) -> String {
        guard udp else { return "impossible over UDP here; only a relay (over TCP) can connect this machine" }
        guard let classification, let mapping = classification.mapping, let filtering = classification.filtering else {
            return "unknown without an RFC 5780 server"
        }
        if classification.natDetected == false && filtering == .endpointIndependent {
            return "not needed: this address is public and open, peers can connect directly"
        }
        switch (mapping, filtering) {
        case (.endpointIndependent, .addressAndPortDependent):
            return "direct connections likely with peers whose mapping is endpoint-independent; a peer behind a symmetric (address-and-port-dependent mapping) NAT needs a relay"
        case (.endpointIndependent, _):
            return "direct connections likely with every peer, symmetric NATs included"
        case (_, .addressAndPortDependent):
            return "hard: direct connections only with peers whose filtering is endpoint-independent or address-dependent (full or restricted cone); others need a relay or port prediction"
        default:
            return "direct connections likely with peers whose mapping is endpoint-independent; two symmetric NATs need a relay"
        }
    }
}
