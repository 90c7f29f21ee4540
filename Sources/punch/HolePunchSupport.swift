import Foundation
import Punch

/// Our public addresses for DCUtR: what the peers we hold direct connections to (relays among
/// them) observed of us in identify. Only TCP addresses; DCUtR filters them further.
enum ObservedAddresses {
    static func of(_ host: PunchHost) async -> [Multiaddr] {
        var addresses: [Multiaddr] = []
        for connection in host.connections where connection.path == .direct {
            guard let observed = try? await connection.identify().observedAddress, observed.transport?.kind == .tcp else { continue }
            if !addresses.contains(observed) { addresses.append(observed) }
        }
        return addresses
    }
}

extension HolePunchError: CodedError {
    var codeName: String { code.rawValue }
}

extension EventPrinter {
    /// A DCUtR outcome on `relayed`.
    func upgrade(
        _ relayed: Connection, _ result: Result<HolePunchOutcome, any Error>, since: ContinuousClock.Instant? = nil, retryIn: Duration? = nil
    ) {
        switch result {
        case .success(let outcome):
            var object: [String: Any] = [
                "event": "upgraded", "peer_id": "\(relayed.remotePeerID)", "path": outcome.connection.path.rawValue,
                "attempt": outcome.attempt, "remote_addr": outcome.connection.remoteAddress.map { "\($0)" } ?? "",
                "local_addr": outcome.connection.localAddress.map { "\($0)" } ?? "",
                "punch_ms": outcome.elapsed.milliseconds,
            ]
            if let rtt = outcome.roundTrip { object["relay_rtt_ms"] = rtt.milliseconds }
            if let since { object["relayed_to_direct_ms"] = (ContinuousClock.now - since).milliseconds }
            emitLine(object, "upgraded \(relayed.remotePeerID) to a direct connection (\(outcome.connection.remoteAddress.map { "\($0)" } ?? "?")) on attempt \(outcome.attempt)")
        case .failure(let error):
            let coded = error as? CodedError
            var object: [String: Any] = [
                "event": "upgrade_failed", "peer_id": "\(relayed.remotePeerID)", "code": coded?.codeName ?? "error",
                "message": coded?.message ?? "\(error)",
            ]
            if let retryIn { object["retry_in_s"] = Double(retryIn.components.seconds) }
            emitLine(
                object,
                "could not upgrade \(relayed.remotePeerID) to a direct connection: \(coded?.message ?? "\(error)"); staying relayed"
                    + (retryIn.map { ", trying again in \($0.components.seconds) s" } ?? ""))
        }
    }
}
