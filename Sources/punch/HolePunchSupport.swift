import Foundation
import Punch

/// Our public addresses for DCUtR: identify's observed addresses on our direct connections,
/// offered only once `confirmations` distinct peers have reported them (issue 7: DCUtR sends only
/// addresses discovery has confirmed). TCP addresses only; DCUtR filters them further.
final class ConfirmedAddresses: Sendable {
    /// The CLI's default: 1. The library's ``ObservedAddressBook/Configuration/confirmations`` is
    /// 3, but a node that knows only its relay (as `punch dial`, or the NAT lab) has one observer.
    static let defaultConfirmations = 1

    let host: PunchHost
    let tracker: ObservedAddressTracker

    init(host: PunchHost, confirmations: Int) throws {
        var configuration = ObservedAddressBook.Configuration()
        configuration.confirmations = confirmations
        self.host = host
        self.tracker = try ObservedAddressTracker(configuration: configuration)
    }

    /// Records what every direct connection's identify says (each connection asks once), then
    /// returns the confirmed TCP addresses.
    func current() async -> [Multiaddr] {
        for connection in host.connections where connection.path == .direct {
            if let info = try? await connection.identify() { tracker.record(info, on: connection) }
        }
        return tracker.confirmed.filter { $0.transport?.kind == .tcp }
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
