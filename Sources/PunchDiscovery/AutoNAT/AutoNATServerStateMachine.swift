import Foundation
import NIOCore
import PunchCrypto
import PunchWire

/// One AutoNAT v2 request on the server's side, as a value: the client's messages go in, what to
/// do comes out. No I/O; ``AutoNATServer`` performs the actions.
///
/// The order is the spec's (libp2p/specs autonat/autonat-v2.md, "AutoNAT V2 Protocol"):
/// `DialRequest` → choose the first address the server is willing to dial → if its IP differs
/// from the client's observed IP, `DialDataRequest` and wait for that many bytes of
/// `DialDataResponse` ("Amplification Attack Prevention") → dial back → `DialResponse`. The
/// dial-back is never asked for before all the dial data has arrived.
public struct AutoNATServerStateMachine: Sendable {
    /// What the server does next.
    public enum Action: Sendable, Equatable {
        /// Send `DialResponse` and close the stream.
        case respond(status: PBAutoNATv2DialResponse.ResponseStatus, addressIndex: UInt32, dialStatus: PBAutoNATv2DialStatus)
        /// Send `DialDataRequest` for the address at `addressIndex`, then wait for the data.
        case requestDialData(addressIndex: UInt32, bytes: UInt64)
        /// Wait for more dial data.
        case awaitDialData
        /// Dial `address` (the one at `addressIndex`) back, and send the nonce on the dial-back
        /// stream; report the outcome with ``dialBackFinished(_:)``.
        case dialBack(address: Multiaddr, addressIndex: UInt32, nonce: UInt64)
    }

    /// How the dial-back went.
    public enum DialBackOutcome: Sendable, Equatable {
        /// The connection failed (`E_DIAL_ERROR`).
        case dialFailed
        /// Connected, but the nonce did not get through (`E_DIAL_BACK_ERROR`).
        case dialBackFailed
        /// Connected and the client acknowledged the nonce (`OK`).
        case succeeded
    }

    private enum State: Sendable {
        case awaitingRequest
        case awaitingDialData(address: Multiaddr, index: UInt32, nonce: UInt64, remaining: Int)
        case dialing(index: UInt32)
        case done
    }

    private var state = State.awaitingRequest
    private let configuration: AutoNATServerConfiguration
    private let client: PeerID
    private let observedIP: IPAddress?
    private let dialsIPv4: Bool
    private let dialsIPv6: Bool

    /// Dial data received so far.
    public private(set) var dialDataReceived = 0

    /// A request from `client`, whose connection comes from `observedIP` (`nil` over a relay:
    /// then every dial costs dial data). `dialsIPv4` and `dialsIPv6` say which address families
    /// the server can dial: "IPv4 only servers SHOULD refuse requests for dialing IPv6
    /// addresses" and the other way round (autonat-v2.md, "Implementation Suggestions").
    public init(
        configuration: AutoNATServerConfiguration, client: PeerID, observedIP: IPAddress?, dialsIPv4: Bool = true, dialsIPv6: Bool = true
    ) {
        self.configuration = configuration
        self.client = client
        self.observedIP = observedIP
        self.dialsIPv4 = dialsIPv4
        self.dialsIPv6 = dialsIPv6
    }

    /// The client's next message on the dial-request stream.
    ///
    /// - Throws: ``DiscoveryError`` `.autonatUnexpectedMessage` for a message out of order,
    ///   `.autonatMessageTooLarge` for a `DialDataResponse` over 4096 bytes.
    public mutating func receive(_ message: PBAutoNATv2Message) throws -> Action {
        switch (state, message.msg) {
        case (.awaitingRequest, .dialRequest(let request)):
            return receiveRequest(request)
        case (.awaitingDialData(let address, let index, let nonce, let remaining), .dialDataResponse(let response)):
            // Each chunk is at most 4096 bytes; only `data` counts ("Amplification Attack Prevention").
            guard response.data.count <= AutoNATProtocol.maximumDialDataChunk else {
                state = .done
                throw DiscoveryError(
                    .autonatMessageTooLarge, "a DialDataResponse carries \(response.data.count) bytes, over the spec's \(AutoNATProtocol.maximumDialDataChunk)")
            }
            dialDataReceived += response.data.count
            let left = remaining - response.data.count
            // The last chunk may overshoot: the spec asks servers to accept it.
            guard left <= 0 else {
                state = .awaitingDialData(address: address, index: index, nonce: nonce, remaining: left)
                return .awaitDialData
            }
            state = .dialing(index: index)
            return .dialBack(address: address, addressIndex: index, nonce: nonce)
        default:
            state = .done
            throw DiscoveryError(.autonatUnexpectedMessage, "an AutoNAT \(Self.name(message)) arrived out of order")
        }
    }

    /// The request was refused before it was read (rate or concurrency limit).
    public mutating func reject() -> Action {
        state = .done
        return .respond(status: .eRequestRejected, addressIndex: 0, dialStatus: .unused)
    }

    /// The dial-back's outcome; returns the `DialResponse` to send.
    public mutating func dialBackFinished(_ outcome: DialBackOutcome) -> Action {
        guard case .dialing(let index) = state else {
            state = .done
            return .respond(status: .eInternalError, addressIndex: 0, dialStatus: .unused)
        }
        state = .done
        let dialStatus: PBAutoNATv2DialStatus =
            switch outcome {
            case .dialFailed: .eDialError
            case .dialBackFailed: .eDialBackError
            case .succeeded: .ok
            }
        return .respond(status: .ok, addressIndex: index, dialStatus: dialStatus)
    }

    private mutating func receiveRequest(_ request: PBAutoNATv2DialRequest) -> Action {
        // "The server SHOULD use the first address it is willing to dial. The server MUST NOT
        // dial any address other than this one."
        for (index, bytes) in request.addrs.prefix(configuration.maximumAddresses).enumerated() {
            guard let address = willingToDial(bytes) else { continue }
            let index = UInt32(index)
            if let ip = address.ipAddress, ip == observedIP {
                state = .dialing(index: index)
                return .dialBack(address: address, addressIndex: index, nonce: request.nonce)
            }
            state = .awaitingDialData(address: address, index: index, nonce: request.nonce, remaining: configuration.dialDataBytes)
            return .requestDialData(addressIndex: index, bytes: UInt64(configuration.dialDataBytes))
        }
        // "E_DIAL_REFUSED: The server didn't dial back any address because it was incapable of
        // dialing or unwilling to dial any of the requested addresses."
        state = .done
        return .respond(status: .eDialRefused, addressIndex: 0, dialStatus: .unused)
    }

    /// The address to dial (`/ip4|ip6/A/tcp/P`, with the client's PeerID appended), or `nil` if
    /// the server will not dial it.
    func willingToDial(_ bytes: Data) -> Multiaddr? {
        guard let address = try? Multiaddr(bytes: Array(bytes)), !address.isCircuit,
            let transport = address.transport, transport.kind == .tcp, transport.port != 0,
            case .ip(let ip) = transport.host
        else { return nil }
        let rest = address.components.dropFirst(2)
        // An address naming another peer is not the client's to have checked.
        if let peer = address.peerID {
            guard rest.count == 1, peer == client.multihash else { return nil }
        } else {
            guard rest.isEmpty else { return nil }
        }
        guard ip.isIPv4 ? dialsIPv4 : dialsIPv6 else { return nil }
        // "The Server SHOULD NOT dial any private address."
        if ip.scope != .public, !configuration.allowPrivateAddresses { return nil }
        return Multiaddr.tcp(IPEndpoint(address: ip, port: transport.port)).appendingPeerID(client.multihash)
    }

    static func name(_ message: PBAutoNATv2Message) -> String {
        switch message.msg {
        case .dialRequest: "DialRequest"
        case .dialResponse: "DialResponse"
        case .dialDataRequest: "DialDataRequest"
        case .dialDataResponse: "DialDataResponse"
        case nil: "empty Message"
        }
    }
}

/// The server's admission control: at most ``AutoNATServerConfiguration/maximumConcurrentRequests``
/// requests at once, ``AutoNATServerConfiguration/maximumConcurrentRequestsPerPeer`` of them from
/// one peer, and ``AutoNATServerConfiguration/maximumRequestsPerPeer`` per peer per
/// ``AutoNATServerConfiguration/rateWindow``, in a table of at most
/// ``AutoNATServerConfiguration/maximumTrackedPeers`` peers. Time comes from the caller.
public struct AutoNATServerAdmission: Sendable {
    private let configuration: AutoNATServerConfiguration
    private var recent: [PeerID: [NIODeadline]] = [:]
    private var activeByPeer: [PeerID: Int] = [:]
    /// Requests in progress.
    public private(set) var active = 0

    /// No request yet.
    public init(configuration: AutoNATServerConfiguration) {
        self.configuration = configuration
    }

    /// Admits a request of `peer` now, or says no (the server then answers
    /// `E_REQUEST_REJECTED`). An admitted request must be ended with ``finish(_:)``.
    public mutating func admit(_ peer: PeerID, now: NIODeadline) -> Bool {
        guard active < configuration.maximumConcurrentRequests,
            activeByPeer[peer, default: 0] < configuration.maximumConcurrentRequestsPerPeer
        else { return false }
        let windowStart = now - configuration.rateWindow
        var times = (recent[peer] ?? []).filter { $0 > windowStart }
        guard times.count < configuration.maximumRequestsPerPeer else {
            recent[peer] = times
            return false
        }
        if recent[peer] == nil, recent.count >= configuration.maximumTrackedPeers {
            // Forget peers whose window has passed; if none has, refuse the newcomer.
            recent = recent.filter { $0.value.contains { $0 > windowStart } }
            guard recent.count < configuration.maximumTrackedPeers else { return false }
        }
        times.append(now)
        recent[peer] = times
        active += 1
        activeByPeer[peer, default: 0] += 1
        return true
    }

    /// An admitted request of `peer` ended.
    public mutating func finish(_ peer: PeerID) {
        guard let count = activeByPeer[peer] else { return }
        activeByPeer[peer] = count > 1 ? count - 1 : nil
        active = max(0, active - 1)
    }

    /// Peers remembered now.
    public var trackedPeers: Int { recent.count }
}
