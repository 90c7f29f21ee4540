import Foundation
import Punch

/// Which port-mapping protocols the default gateway answers (issue 6 item 7), probed in parallel
/// without creating a mapping: NAT-PMP's external-address request, PCP's ANNOUNCE, and an SSDP
/// search plus GetExternalIPAddress for UPnP-IGD. About 2 seconds when nothing answers.
struct PortMappingReport: Sendable {
    var gateway: IPAddress?
    var pcp = false
    var natpmp = false
    var upnp = false
    /// The external address a gateway reported (NAT-PMP or UPnP).
    var externalAddress: IPAddress?

    /// Short retries: netcheck is a quick look, not a mapping attempt (250 ms, 500 ms, 1 s).
    static let policy = RetransmissionPolicy(initialTimeout: .milliseconds(250), maximumAttempts: 3)

    static func probe() async -> PortMappingReport {
        guard let gateway = try? DefaultGateway.ipv4() else { return PortMappingReport() }
        async let natpmp: IPAddress? = {
            guard let client = try? await NATPMPClient(gateway: gateway, policy: policy) else { return nil }
            let address = try? await client.externalAddress().address
            await client.close()
            return address
        }()
        async let pcp: Bool = {
            guard let client = try? await PCPClient(gateway: gateway, policy: policy) else { return false }
            let answered = (try? await client.announce()) != nil
            await client.close()
            return answered
        }()
        async let upnp: IPAddress? = {
            var configuration = UPnPClient.Configuration()
            configuration.gateway = gateway
            configuration.searchTimeout = .seconds(2)
            configuration.searchAttempts = 1
            configuration.httpTimeout = .seconds(2)
            guard let client = try? await UPnPClient.discover(configuration: configuration) else { return nil }
            return try? await client.externalAddress()
        }()
        let (natpmpAddress, pcpAnswered, upnpAddress) = await (natpmp, pcp, upnp)
        return PortMappingReport(
            gateway: gateway, pcp: pcpAnswered, natpmp: natpmpAddress != nil, upnp: upnpAddress != nil,
            externalAddress: natpmpAddress ?? upnpAddress)
    }

    var json: [String: Any] {
        ["gateway": gateway.map { "\($0)" } ?? NSNull(), "pcp": pcp, "natpmp": natpmp, "upnp": upnp,
         "external_address": externalAddress.map { "\($0)" } ?? NSNull()]
    }

    var text: String {
        guard let gateway else { return "unknown (no IPv4 default gateway)" }
        let answered = [("PCP", pcp), ("NAT-PMP", natpmp), ("UPnP-IGD", upnp)].filter(\.1).map(\.0)
        if answered.isEmpty { return "none of PCP, NAT-PMP, UPnP-IGD answered at \(gateway)" }
        return answered.joined(separator: ", ") + " at \(gateway)" + (externalAddress.map { " (external address \($0))" } ?? "")
            + ": `punch map` can open a port"
    }
}
