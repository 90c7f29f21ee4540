import PunchWire

/// The RFC 5780 behaviour discovery tests as a value: events (a probe answered or failed) in,
/// actions (send a probe, report the result) out. No I/O: ``NATClassifier`` runs it over a
/// ``STUNClient``.
///
/// The order matters, and is:
/// 1. Test I (§4.3, §4.4): a plain Binding request to the server's primary address P. Gives the
///    mapped address M1 and OTHER-ADDRESS A. No answer: UDP does not work; stop.
/// 2. At once, the filtering tests and the hairpin test: Binding to P with CHANGE-REQUEST
///    "change IP and port" (answer from A; if it arrives, filtering is endpoint-independent), with
///    CHANGE-REQUEST "change port" (answer from P's IP and A's port; if only this one arrives,
///    address-dependent; if neither, address-and-port-dependent); and a Binding request to M1
///    itself, which comes back to the socket only through a hairpinning NAT (§4.5).
/// 3. Then the mapping tests: Binding to A's IP and P's port gives M2 (M2 = M1:
///    endpoint-independent), else Binding to A gives M3 (M3 = M2: address-dependent, else
///    address-and-port-dependent). They come after the filtering tests because sending to A's
///    IP opens the NAT's filter for A, which would make the filtering tests pass wrongly.
public struct NATClassificationStateMachine: Sendable {
    /// The probes of one run.
    public enum Probe: String, Hashable, Sendable, CaseIterable {
        /// Test I: Binding to the primary address.
        case primary
        /// Filtering test II: CHANGE-REQUEST change IP and port.
        case filteringChangeAddressAndPort
        /// Filtering test III: CHANGE-REQUEST change port.
        case filteringChangePort
        /// Mapping test II: Binding to the alternate IP, primary port.
        case mappingAlternateAddress
        /// Mapping test III: Binding to the alternate IP and port.
        case mappingAlternateAddressAndPort
        /// The hairpin test: Binding to the own mapped address.
        case hairpin
    }

    /// A probe to send.
    public struct Request: Hashable, Sendable {
        /// Which probe this is; report its outcome with it.
        public var probe: Probe
        /// Where to send the Binding request.
        public var destination: IPEndpoint
        /// Extra request attributes (CHANGE-REQUEST).
        public var attributes: [STUNAttribute]
        /// Where the answer must come from.
        public var expectedSource: IPEndpoint
        /// Whether success is the request itself coming back (hairpin) rather than a response.
        public var isEcho: Bool
    }

    /// What to do next.
    public enum Action: Hashable, Sendable {
        /// Send this probe and report its outcome.
        case send(Request)
        /// The run is over.
        case finish(NATClassification)
    }

    private enum Phase: Sendable {
        case idle
        case primary
        case filtering
        case mapping
        case finished
    }

    private let localEndpoint: IPEndpoint?
    private var phase = Phase.idle
    private var result: NATClassification
    private var pending: Set<Probe> = []
    private var filteringChangeBoth: Bool?
    private var filteringChangePort: Bool?
    private var secondMapping: IPEndpoint?

    /// Creates a run against `server` from a socket bound to `localEndpoint`.
    /// - Parameters:
    ///   - server: the RFC 5780 server's primary address.
    ///   - localEndpoint: the socket's own address: its port tells port preservation, and unless
    ///     its IP is a wildcard, the whole endpoint tells whether there is a NAT at all.
    public init(server: IPEndpoint, localEndpoint: IPEndpoint?) {
        self.localEndpoint = localEndpoint
        self.result = NATClassification(server: server)
    }

    /// Whether the run has finished.
    public var isFinished: Bool {
        if case .finished = phase { return true }
        return false
    }

    /// Starts the run: test I.
    public mutating func start() -> [Action] {
        guard case .idle = phase else { return [] }
        phase = .primary
        return [send(Request(probe: .primary, destination: result.server, attributes: [], expectedSource: result.server, isEcho: false))]
    }

    /// A probe got its answer: a Binding success response (with its mapped and other address),
    /// or, for the hairpin probe, the request itself.
    public mutating func succeeded(_ probe: Probe, mappedAddress: IPEndpoint?, otherAddress: IPEndpoint?) -> [Action] {
        guard pending.remove(probe) != nil else { return [] }
        if probe != .hairpin { result.successfulObservations += 1 }
        result.udp = true
        switch probe {
        case .primary:
            guard let mapped = mappedAddress else {
                // A response without a mapped address tells nothing but that UDP works.
                return finish()
            }
            result.mappedAddress = mapped
            result.otherAddress = otherAddress
            if let local = localEndpoint {
                result.portPreserved = mapped.port == local.port
                if !STUNServerConfiguration.isUnspecified(local.address) { result.natDetected = mapped != local }
            }
            var actions = [send(Request(probe: .hairpin, destination: mapped, attributes: [], expectedSource: mapped, isEcho: true))]
            if let other = otherAddress, other.address != result.server.address, other.port != result.server.port,
               other.address.isIPv4 == result.server.address.isIPv4 {
                phase = .filtering
                actions.append(send(Request(
                    probe: .filteringChangeAddressAndPort, destination: result.server,
                    attributes: [.changeRequest(changeIP: true, changePort: true)], expectedSource: other, isEcho: false)))
                actions.append(send(Request(
                    probe: .filteringChangePort, destination: result.server,
                    attributes: [.changeRequest(changeIP: false, changePort: true)],
                    expectedSource: IPEndpoint(address: result.server.address, port: other.port), isEcho: false)))
            } else {
                // No usable OTHER-ADDRESS: not an RFC 5780 server; mapping and filtering stay unknown.
                result.otherAddress = nil
                phase = .mapping
            }
            return actions + finishIfDone()
        case .filteringChangeAddressAndPort:
            filteringChangeBoth = true
            return afterFilteringProbe()
        case .filteringChangePort:
            filteringChangePort = true
            return afterFilteringProbe()
        case .mappingAlternateAddress:
            guard let mapped = mappedAddress, let first = result.mappedAddress, let other = result.otherAddress else { return finishIfDone() }
            if mapped == first {
                result.mapping = .endpointIndependent
                return finishIfDone()
            }
            secondMapping = mapped
            return [send(Request(probe: .mappingAlternateAddressAndPort, destination: other, attributes: [], expectedSource: other, isEcho: false))]
        case .mappingAlternateAddressAndPort:
            if let mapped = mappedAddress, let second = secondMapping {
                result.mapping = mapped == second ? .addressDependent : .addressAndPortDependent
            }
            return finishIfDone()
        case .hairpin:
            result.hairpin = true
            return finishIfDone()
        }
    }

    /// A probe got no answer (its transaction timed out or failed).
    public mutating func failed(_ probe: Probe) -> [Action] {
        guard pending.remove(probe) != nil else { return [] }
        switch probe {
        case .primary:
            return finish()
        case .filteringChangeAddressAndPort:
            filteringChangeBoth = false
            return afterFilteringProbe()
        case .filteringChangePort:
            filteringChangePort = false
            return afterFilteringProbe()
        case .mappingAlternateAddress, .mappingAlternateAddressAndPort:
            // Mapping stays unknown: the server's other address did not answer.
            return finishIfDone()
        case .hairpin:
            result.hairpin = false
            return finishIfDone()
        }
    }

    private mutating func afterFilteringProbe() -> [Action] {
        guard let both = filteringChangeBoth, let portOnly = filteringChangePort else { return [] }
        // RFC 5780 §4.4: an answer from the other IP and port means any endpoint may send in;
        // one from the same IP, other port only means the filter keys on the address.
        result.filtering = both ? .endpointIndependent : (portOnly ? .addressDependent : .addressAndPortDependent)
        phase = .mapping
        guard let other = result.otherAddress else { return finishIfDone() }
        let alternateAddress = IPEndpoint(address: other.address, port: result.server.port)
        return [send(Request(probe: .mappingAlternateAddress, destination: alternateAddress, attributes: [], expectedSource: alternateAddress, isEcho: false))]
    }

    private mutating func send(_ request: Request) -> Action {
        pending.insert(request.probe)
        return .send(request)
    }

    private mutating func finishIfDone() -> [Action] {
        guard pending.isEmpty, case .mapping = phase else { return [] }
        return finish()
    }

    private mutating func finish() -> [Action] {
        phase = .finished
        pending.removeAll()
        return [.finish(result)]
    }
}
