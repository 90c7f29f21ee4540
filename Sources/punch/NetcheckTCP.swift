import Foundation
import Punch

/// The TCP half of `punch netcheck --relay`: the address a libp2p peer (a relay, or any peer)
/// observes our TCP connection from (identify), and whether that address is reachable, by an
/// AutoNAT v2 dial-back from the same peer.
struct TCPReachabilityReport: Sendable {
    /// The peer asked.
    var peer: String
    /// identify's observed address of our connection (dialed from our listening port).
    var observedTCP: Multiaddr?
    /// The AutoNAT v2 answer for the address checked, if the check ran.
    var check: AutoNATCheckResult?
    /// Why nothing could be checked (the peer could not be reached, or gave no address).
    var error: String?

    /// `reachable`, `unreachable`, or `unknown` (the check did not decide, or did not run).
    var reachability: AddressReachability {
        switch check?.reachable {
        case true?: .reachable
        case false?: .unreachable
        case nil: .unknown
        }
    }

    static func probe(_ relay: String) async -> TCPReachabilityReport {
        var report = TCPReachabilityReport(peer: relay)
        let host = PunchHost(configuration: HostConfiguration(identity: .generate()))
        do {
            // A listening port for the dial to leave from (so the observed address is the
            // mapping of a port that can be dialed back) and for the dial-back to reach.
            try await host.listen(Multiaddr("/ip4/0.0.0.0/tcp/0"))
            let client = try AutoNATClient(host: host)
            let connection = try await host.dial(Multiaddr(relay))
            report.observedTCP = try await connection.identify().observedAddress?.withoutPeerID()
            guard let observed = report.observedTCP else {
                report.error = "\(relay) did not report an observed address"
                await host.close()
                return report
            }
            report.check = try await client.check(addresses: [observed], via: connection).first
        } catch {
            report.error = error.coded?.message ?? "\(error)"
        }
        await host.close()
        return report
    }

    /// The JSON fields this report adds to netcheck's object.
    var json: [String: Any] {
        var autonat: [String: Any] = ["peer": peer]
        if let check { autonat.merge(AutoNATCommand.object(check)) { _, new in new } }
        if let error { autonat["error"] = error }
        return [
            "observed_tcp": observedTCP.map { "\($0)" as Any } ?? NSNull(),
            "reachability": reachability.rawValue,
            "autonat": autonat,
        ]
    }

    /// The lines this report adds to netcheck's text.
    var text: [String] {
        var lines = ["TCP observed:   \(observedTCP.map { "\($0)" } ?? "unknown") (by \(peer))"]
        let detail: String
        if let check {
            detail = check.status.rawValue + (check.error.map { ": \($0.message)" } ?? "")
        } else {
            detail = error ?? "not checked"
        }
        lines.append("TCP reachable:  \(reachability.rawValue) (AutoNAT v2: \(detail))")
        return lines
    }
}
