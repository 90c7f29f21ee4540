import PunchDiscovery
import PunchWire
import Testing

/// The RFC 5780 tests event by event, without sockets.
@Suite struct NATClassificationStateMachineTests {
    typealias Probe = NATClassificationStateMachine.Probe
    let server = try! IPEndpoint("203.0.113.10:3478")
    let other = try! IPEndpoint("203.0.113.11:3479")
    let local = try! IPEndpoint("0.0.0.0:40000")
    let m1 = try! IPEndpoint("198.51.100.1:40000")

    func sends(_ actions: [NATClassificationStateMachine.Action]) -> [Probe: NATClassificationStateMachine.Request] {
        var result: [Probe: NATClassificationStateMachine.Request] = [:]
        for case .send(let request) in actions { result[request.probe] = request }
        return result
    }

    func finished(_ actions: [NATClassificationStateMachine.Action]) -> NATClassification? {
        for case .finish(let result) in actions { return result }
        return nil
    }

    /// Runs test I and returns the machine with the three parallel probes outstanding.
    func afterTestI(mapped: IPEndpoint? = nil) -> NATClassificationStateMachine {
        var machine = NATClassificationStateMachine(server: server, localEndpoint: local)
        let first = sends(machine.start())
        #expect(first.keys.sorted { $0.rawValue < $1.rawValue } == [.primary])
        #expect(first[.primary]?.destination == server && first[.primary]?.attributes == [])
        let next = sends(machine.succeeded(.primary, mappedAddress: mapped ?? m1, otherAddress: other))
        #expect(Set(next.keys) == [.filteringChangeAddressAndPort, .filteringChangePort, .hairpin])
        // RFC 5780 §4.4: both filtering probes go to the primary address, answered from elsewhere.
        #expect(next[.filteringChangeAddressAndPort]?.destination == server)
        #expect(next[.filteringChangeAddressAndPort]?.attributes == [.changeRequest(changeIP: true, changePort: true)])
        #expect(next[.filteringChangeAddressAndPort]?.expectedSource == other)
        #expect(next[.filteringChangePort]?.attributes == [.changeRequest(changeIP: false, changePort: true)])
        #expect(next[.filteringChangePort]?.expectedSource == (try! IPEndpoint("203.0.113.10:3479")))
        // RFC 5780 §4.5: the hairpin probe goes to the own mapped address and succeeds by echo.
        #expect(next[.hairpin]?.destination == (mapped ?? m1) && next[.hairpin]?.isEcho == true)
        return machine
    }

    @Test func fullConeIsEndpointIndependentBothWays() {
        var machine = afterTestI()
        #expect(sends(machine.succeeded(.filteringChangePort, mappedAddress: m1, otherAddress: other)).isEmpty)
        let mappingII = sends(machine.succeeded(.filteringChangeAddressAndPort, mappedAddress: m1, otherAddress: other))
        // Mapping test II only after both filtering probes: alternate IP, primary port.
        #expect(Array(mappingII.keys) == [.mappingAlternateAddress])
        #expect(mappingII[.mappingAlternateAddress]?.destination == (try! IPEndpoint("203.0.113.11:3478")))
        #expect(finished(machine.succeeded(.mappingAlternateAddress, mappedAddress: m1, otherAddress: server)) == nil, "hairpin still pending")
        let result = finished(machine.failed(.hairpin))
        #expect(result?.mapping == .endpointIndependent)
        #expect(result?.filtering == .endpointIndependent)
        #expect(result?.hairpin == false)
        #expect(result?.portPreserved == true)
        #expect(result?.udp == true && result?.mappedAddress == m1 && result?.otherAddress == other)
        #expect(result?.natDetected == nil, "wildcard local address: cannot tell")
        #expect(result?.successfulObservations == 4)
        #expect(machine.isFinished)
    }

    @Test func addressRestrictedConeFiltersOnTheAddress() {
        var machine = afterTestI()
        _ = machine.failed(.filteringChangeAddressAndPort)
        _ = machine.succeeded(.hairpin, mappedAddress: nil, otherAddress: nil)
        let mappingII = sends(machine.succeeded(.filteringChangePort, mappedAddress: m1, otherAddress: other))
        #expect(Array(mappingII.keys) == [.mappingAlternateAddress])
        let result = finished(machine.succeeded(.mappingAlternateAddress, mappedAddress: m1, otherAddress: server))
        #expect(result?.filtering == .addressDependent && result?.mapping == .endpointIndependent && result?.hairpin == true)
    }

    @Test func portRestrictedConeFiltersOnAddressAndPort() {
        var machine = afterTestI()
        _ = machine.succeeded(.hairpin, mappedAddress: nil, otherAddress: nil)
        _ = machine.failed(.filteringChangePort)
        #expect(sends(machine.failed(.filteringChangeAddressAndPort)).keys.contains(.mappingAlternateAddress))
        let result = finished(machine.succeeded(.mappingAlternateAddress, mappedAddress: m1, otherAddress: server))
        #expect(result?.filtering == .addressAndPortDependent && result?.mapping == .endpointIndependent)
        #expect(result?.successfulObservations == 2)
    }

    @Test func symmetricNATMapsPerAddressAndPort() throws {
        let mapped = try IPEndpoint("198.51.100.1:61000")
        var machine = afterTestI(mapped: mapped)
        _ = machine.failed(.hairpin)
        _ = machine.failed(.filteringChangePort)
        _ = machine.failed(.filteringChangeAddressAndPort)
        let mappingIII = sends(machine.succeeded(.mappingAlternateAddress, mappedAddress: try IPEndpoint("198.51.100.1:61001"), otherAddress: server))
        #expect(Array(mappingIII.keys) == [.mappingAlternateAddressAndPort])
        #expect(mappingIII[.mappingAlternateAddressAndPort]?.destination == other)
        let result = finished(machine.succeeded(.mappingAlternateAddressAndPort, mappedAddress: try IPEndpoint("198.51.100.1:61002"), otherAddress: server))
        #expect(result?.mapping == .addressAndPortDependent && result?.filtering == .addressAndPortDependent)
        #expect(result?.portPreserved == false)
    }

    @Test func addressDependentMappingKeepsThePortForTheSameAddress() throws {
        var machine = afterTestI()
        _ = machine.failed(.hairpin)
        _ = machine.failed(.filteringChangePort)
        _ = machine.failed(.filteringChangeAddressAndPort)
        let m2 = try IPEndpoint("198.51.100.1:50001")
        _ = machine.succeeded(.mappingAlternateAddress, mappedAddress: m2, otherAddress: server)
        let result = finished(machine.succeeded(.mappingAlternateAddressAndPort, mappedAddress: m2, otherAddress: server))
        #expect(result?.mapping == .addressDependent)
    }

    @Test func noAnswerToTestIMeansNoUDP() {
        var machine = NATClassificationStateMachine(server: server, localEndpoint: local)
        _ = machine.start()
        let result = finished(machine.failed(.primary))
        #expect(result?.udp == false && result?.mapping == nil && result?.filtering == nil && result?.hairpin == nil && result?.mappedAddress == nil)
        #expect(result?.successfulObservations == 0)
    }

    @Test func serverWithoutOtherAddressGivesOnlyHairpinAndPort() {
        var machine = NATClassificationStateMachine(server: server, localEndpoint: local)
        _ = machine.start()
        let next = sends(machine.succeeded(.primary, mappedAddress: m1, otherAddress: nil))
        #expect(Array(next.keys) == [.hairpin])
        let result = finished(machine.succeeded(.hairpin, mappedAddress: nil, otherAddress: nil))
        #expect(result?.udp == true && result?.mapping == nil && result?.filtering == nil && result?.hairpin == true && result?.portPreserved == true)
        #expect(result?.successfulObservations == 1)
    }

    @Test func unansweredMappingProbeLeavesMappingUnknown() {
        var machine = afterTestI()
        _ = machine.failed(.hairpin)
        _ = machine.failed(.filteringChangePort)
        _ = machine.failed(.filteringChangeAddressAndPort)
        let result = finished(machine.failed(.mappingAlternateAddress))
        #expect(result?.mapping == nil && result?.filtering == .addressAndPortDependent)
    }

    @Test func noNATWhenTheMappedAddressIsTheLocalOne() throws {
        let bound = try IPEndpoint("127.0.0.1:40000")
        var machine = NATClassificationStateMachine(server: server, localEndpoint: bound)
        _ = machine.start()
        _ = machine.succeeded(.primary, mappedAddress: bound, otherAddress: nil)
        let result = finished(machine.succeeded(.hairpin, mappedAddress: nil, otherAddress: nil))
        #expect(result?.natDetected == false)
    }

    @Test func eventsForProbesNotOutstandingAreIgnored() {
        var machine = afterTestI()
        #expect(machine.succeeded(.mappingAlternateAddressAndPort, mappedAddress: m1, otherAddress: nil).isEmpty)
        #expect(machine.failed(.primary).isEmpty)
        #expect(!machine.isFinished)
    }

    @Test func historyKeepsKnownValuesWhenARunSawTooLittle() {
        var history = NATClassificationHistory()
        var good = NATClassification(server: server)
        good.udp = true
        good.mapping = .endpointIndependent
        good.filtering = .addressDependent
        good.hairpin = true
        good.successfulObservations = 4
        #expect(history.record(good) == good)

        var poor = NATClassification(server: server)
        poor.udp = true
        poor.portPreserved = true
        poor.successfulObservations = 1
        let merged = history.record(poor)
        #expect(merged.mapping == .endpointIndependent && merged.filtering == .addressDependent && merged.hairpin == true)
        #expect(merged.portPreserved == true, "what the poor run did learn is kept")

        let nothing = history.record(NATClassification(server: server))
        #expect(nothing.udp == true && nothing.mapping == .endpointIndependent)

        // Two or more observations replace the result, unknowns included.
        var changed = NATClassification(server: server)
        changed.udp = true
        changed.mapping = .addressAndPortDependent
        changed.successfulObservations = 2
        #expect(history.record(changed) == changed)
        #expect(history.current?.filtering == nil)
    }
}
