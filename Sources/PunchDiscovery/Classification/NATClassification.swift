import PunchWire

/// How a NAT's mapping or filtering depends on the remote endpoint (RFC 4787 §4.1, §5).
///
/// The raw values are the stable strings of `punch netcheck --json` (and PunchLab's
/// `NATBehaviour`).
public enum EndpointDependence: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// The same for every remote endpoint ("Endpoint-Independent").
    case endpointIndependent = "endpoint-independent"
    /// Depends on the remote IP address only ("Address-Dependent").
    case addressDependent = "address-dependent"
    /// Depends on the remote IP address and port ("Address and Port-Dependent").
    case addressAndPortDependent = "address-and-port-dependent"

    public var description: String { rawValue }
}

/// What an RFC 5780 behaviour discovery run learnt about the NAT in front of one socket.
///
/// A `nil` field is unknown: the server lacks RFC 5780 support, or the probes that decide it
/// got no answer.
public struct NATClassification: Sendable, Hashable {
    /// The server the run used.
    public var server: IPEndpoint
    /// Whether any STUN response arrived: UDP to the server works.
    public var udp: Bool
    /// The reflexive (public) address from the first Binding response.
    public var mappedAddress: IPEndpoint?
    /// The server's OTHER-ADDRESS, present when it supports RFC 5780.
    public var otherAddress: IPEndpoint?
    /// Whether the mapped address differs from the socket's own address; `nil` when the socket
    /// is bound to a wildcard address, so its own address is not known.
    public var natDetected: Bool?
    /// Mapping behaviour (RFC 5780 §4.3).
    public var mapping: EndpointDependence?
    /// Filtering behaviour (RFC 5780 §4.4).
    public var filtering: EndpointDependence?
    /// Whether a request to the own mapped address loops back (RFC 5780 §4.5).
    public var hairpin: Bool?
    /// Whether the public port equals the socket's local port.
    public var portPreserved: Bool?
    /// How many probes got a STUN response from the server (the hairpin echo not counted).
    public var successfulObservations: Int

    /// A classification with nothing known.
    public init(server: IPEndpoint) {
        self.server = server
        self.udp = false
        self.successfulObservations = 0
    }
}

/// The classification a node believes, across runs: a run with fewer than
/// ``minimumObservations`` successful observations does not turn a known value into unknown
/// (it only adds what it did learn), so a lossy moment cannot make the result flap.
public struct NATClassificationHistory: Sendable, Hashable {
    /// Runs with fewer successful observations than this only fill in gaps.
    public static let minimumObservations = 2

    /// The classification believed now, or `nil` before the first run.
    public private(set) var current: NATClassification?

    public init() {}

    /// Takes a run's result into account and returns what is believed now.
    @discardableResult
    public mutating func record(_ run: NATClassification) -> NATClassification {
        guard let previous = current, run.successfulObservations < Self.minimumObservations else {
            current = run
            return run
        }
        var merged = previous
        merged.udp = previous.udp || run.udp
        merged.mappedAddress = run.mappedAddress ?? previous.mappedAddress
        merged.otherAddress = run.otherAddress ?? previous.otherAddress
        merged.natDetected = run.natDetected ?? previous.natDetected
        merged.mapping = run.mapping ?? previous.mapping
        merged.filtering = run.filtering ?? previous.filtering
        merged.hairpin = run.hairpin ?? previous.hairpin
        merged.portPreserved = run.portPreserved ?? previous.portPreserved
        current = merged
        return merged
    }
}
