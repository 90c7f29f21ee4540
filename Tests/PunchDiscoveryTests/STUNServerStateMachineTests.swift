import NIOCore
import PunchDiscovery
import PunchWire
import Testing

@Suite struct STUNServerStateMachineTests {
    let now = NIODeadline.uptimeNanoseconds(5_000_000_000)
    let client = try! IPEndpoint("198.51.100.7:40000")
    let primary = try! IPEndpoint("203.0.113.10:3478")

    func machine(alternate: Bool = false, _ change: (inout STUNServerConfiguration) -> Void = { _ in }) -> STUNServerStateMachine {
        var configuration = STUNServerConfiguration(listen: primary, alternateAddress: alternate ? try! IPAddress("203.0.113.11") : nil)
        change(&configuration)
        return STUNServerStateMachine(configuration: configuration, primary: primary, now: now)
    }

    /// Sends `request` and decodes the answer; `nil` if dropped.
    func answer(_ machine: inout STUNServerStateMachine, _ request: STUNMessage, fingerprint: Bool = true,
                on socket: STUNServerStateMachine.Socket = .primary, from source: IPEndpoint? = nil, at time: NIODeadline? = nil)
        throws -> (STUNMessage, STUNServerStateMachine.Socket)?
    {
        let source = source ?? client
        switch machine.receive(try request.encoded(fingerprint: fingerprint), from: source, on: socket, now: time ?? now) {
        case .drop:
            return nil
        case .respond(let bytes, let from, let to):
            #expect(to == source, "answers go only to the request's source")
            return (try STUNMessage.decode(datagram: bytes), from)
        }
    }

    @Test func bindingRequestGetsXORMappedAddressAndFingerprintLikeTheRequest() throws {
        var server = machine()
        let request = STUNMessage(type: .bindingRequest)
        let (response, from) = try #require(try answer(&server, request))
        #expect(response.type == .bindingSuccessResponse && response.transactionID == request.transactionID)
        #expect(response.xorMappedAddress == client && response.mappedAddress == client)
        #expect(response.software == "punch")
        #expect(response.hasFingerprint)  // verified by the decoder
        #expect(from == .primary)
        // Not RFC 5780 mode: no OTHER-ADDRESS or RESPONSE-ORIGIN.
        #expect(response.otherAddress == nil && response.responseOrigin == nil)

        let (plain, _) = try #require(try answer(&server, STUNMessage(type: .bindingRequest), fingerprint: false))
        #expect(!plain.hasFingerprint)
        #expect(server.statistics.successResponses == 2)
    }

    @Test func softwareAndMappedAddressAreOptional() throws {
        var server = machine { $0.software = nil; $0.includeMappedAddress = false }
        let (response, _) = try #require(try answer(&server, STUNMessage(type: .bindingRequest)))
        #expect(response.software == nil && response.mappedAddress == nil && response.xorMappedAddress == client)
    }

    @Test func rfc5780ModeSaysOtherAddressAndResponseOrigin() throws {
        var server = machine(alternate: true)
        let (response, from) = try #require(try answer(&server, STUNMessage(type: .bindingRequest)))
        #expect(from == .primary)
        #expect(response.otherAddress == (try IPEndpoint("203.0.113.11:3479")))
        #expect(response.responseOrigin == primary)
        // OTHER-ADDRESS is relative to the socket the request arrived on.
        let onAlternate = STUNServerStateMachine.Socket(alternateAddress: true, alternatePort: true)
        let (other, _) = try #require(try answer(&server, STUNMessage(type: .bindingRequest), on: onAlternate))
        #expect(other.otherAddress == primary)
        #expect(other.responseOrigin == (try IPEndpoint("203.0.113.11:3479")))
    }

    @Test func changeRequestAnswersFromTheMatchingSocket() throws {
        var server = machine(alternate: true)
        let cases: [(Bool, Bool, String)] = [
            (false, false, "203.0.113.10:3478"), (true, false, "203.0.113.11:3478"),
            (false, true, "203.0.113.10:3479"), (true, true, "203.0.113.11:3479"),
        ]
        for (changeIP, changePort, origin) in cases {
            let request = STUNMessage(type: .bindingRequest, attributes: [.changeRequest(changeIP: changeIP, changePort: changePort)])
            let (response, from) = try #require(try answer(&server, request))
            #expect(from == STUNServerStateMachine.Socket(alternateAddress: changeIP, alternatePort: changePort))
            #expect(server.endpoint(of: from) == (try IPEndpoint(origin)))
            #expect(response.responseOrigin == (try IPEndpoint(origin)), "change IP \(changeIP) port \(changePort)")
            #expect(response.xorMappedAddress == client)
        }
        // Relative to the receiving socket: a change-port request on the alternate port goes back to the primary port.
        let request = STUNMessage(type: .bindingRequest, attributes: [.changeRequest(changeIP: false, changePort: true)])
        let (_, from) = try #require(try answer(&server, request, on: STUNServerStateMachine.Socket(alternateAddress: true, alternatePort: true)))
        #expect(from == STUNServerStateMachine.Socket(alternateAddress: true, alternatePort: false))
    }

    @Test func changeRequestWithoutAlternateAddressGets420() throws {
        var server = machine()
        let request = STUNMessage(type: .bindingRequest, attributes: [.changeRequest(changeIP: true, changePort: true)])
        let (response, from) = try #require(try answer(&server, request))
        #expect(from == .primary)
        #expect(response.type == .bindingErrorResponse)
        #expect(response.errorCode?.code == 420)
        #expect(response.unknownAttributes == [STUNAttributeType.changeRequest])
        #expect(response.hasFingerprint)
        #expect(server.statistics.errorResponses == 1)
    }

    @Test func unknownComprehensionRequiredAttributeGets420ButOptionalOnesAreIgnored() throws {
        var server = machine()
        let request = STUNMessage(type: .bindingRequest, attributes: [.unknown(type: 0x7F01, value: [1, 2, 3]), .unknown(type: 0xC001, value: [4])])
        let (response, _) = try #require(try answer(&server, request))
        #expect(response.errorCode == .unknownAttribute && response.errorCode?.code == 420)
        #expect(response.unknownAttributes == [0x7F01])
        #expect(response.xorMappedAddress == nil)

        let optional = STUNMessage(type: .bindingRequest, attributes: [.unknown(type: 0xC001, value: [4])])
        let (ok, _) = try #require(try answer(&server, optional))
        #expect(ok.type == .bindingSuccessResponse)
    }

    @Test func responsePortIsRefusedBecauseAnswersOnlyGoToTheSource() throws {
        var server = machine(alternate: true)
        let request = STUNMessage(type: .bindingRequest, attributes: [.responsePort(9999)])
        let (response, _) = try #require(try answer(&server, request))
        #expect(response.errorCode?.code == 420 && response.unknownAttributes == [STUNAttributeType.responsePort])
    }

    @Test func malformedDatagramsAreDroppedWithoutAnswerAndCounted() throws {
        var server = machine()
        let good = try STUNMessage(type: .bindingRequest).encoded(fingerprint: true)
        var badFingerprint = good
        badFingerprint[badFingerprint.count - 1] ^= 0xFF
        var truncated = good
        truncated.removeLast(4)
        let oversized = [UInt8](repeating: 0, count: 20) + [UInt8](repeating: 0, count: 2000)
        var oversizedHeader = Array(good.prefix(20))
        oversizedHeader[2] = 0x07; oversizedHeader[3] = 0xD0
        let datagrams: [[UInt8]] = [[], [0x00, 0x01], Array("GET / HTTP/1.1\r\n\r\n".utf8), badFingerprint, truncated, oversized, oversizedHeader + [UInt8](repeating: 0, count: 2000)]
        for datagram in datagrams {
            #expect(server.receive(datagram, from: client, on: .primary, now: now) == .drop)
        }
        #expect(server.statistics.droppedMalformed == datagrams.count)
        #expect(server.statistics.successResponses == 0 && server.statistics.errorResponses == 0)
    }

    @Test func requestsFromUnanswerableSourcesAreDropped() throws {
        var server = machine()
        for source in ["0.0.0.0:4000", "198.51.100.7:0", "224.0.0.1:4000", "255.255.255.255:4000", "[ff02::1]:4000", "[::]:4000"] {
            #expect(try answer(&server, STUNMessage(type: .bindingRequest), from: try IPEndpoint(source)) == nil, "\(source)")
        }
        #expect(server.statistics.droppedBadSource == 6 && server.trackedSourceCount == 0)
    }

    @Test func responsesIndicationsAndOtherMethodsAreDropped() throws {
        var server = machine()
        #expect(try answer(&server, STUNMessage(type: .bindingSuccessResponse, attributes: [.xorMappedAddress(client)])) == nil)
        #expect(try answer(&server, STUNMessage(type: .bindingIndication)) == nil)
        let allocate = STUNMessage(type: STUNMessageType(method: STUNMethod(rawValue: 0x003)!, class: .request))
        #expect(try answer(&server, allocate) == nil)
        #expect(server.statistics.droppedNotRequest == 2 && server.statistics.droppedUnsupportedMethod == 1)
    }

    @Test func perSourceRateLimitDropsTheExcessAndRefills() throws {
        var server = machine { $0.perSourceBurst = 5; $0.perSourceRate = 10 }
        for _ in 0..<5 { #expect(try answer(&server, STUNMessage(type: .bindingRequest)) != nil) }
        #expect(try answer(&server, STUNMessage(type: .bindingRequest)) == nil)
        #expect(server.statistics.droppedSourceRateLimit == 1)
        // Another source has its own bucket.
        #expect(try answer(&server, STUNMessage(type: .bindingRequest), from: try IPEndpoint("198.51.100.8:1")) != nil)
        // 10 per second: after 100 ms one more is admitted, and only one.
        let later = now + .milliseconds(100)
        #expect(try answer(&server, STUNMessage(type: .bindingRequest), at: later) != nil)
        #expect(try answer(&server, STUNMessage(type: .bindingRequest), at: later) == nil)
    }

    @Test func totalRateLimitBoundsAllSourcesTogether() throws {
        var server = machine { $0.totalBurst = 3; $0.totalRate = 1 }
        for index in 0..<3 {
            #expect(try answer(&server, STUNMessage(type: .bindingRequest), from: try IPEndpoint("198.51.100.\(index + 1):1")) != nil)
        }
        #expect(try answer(&server, STUNMessage(type: .bindingRequest), from: try IPEndpoint("198.51.100.99:1")) == nil)
        #expect(server.statistics.droppedTotalRateLimit == 1)
    }

    @Test func sourceTableIsBoundedAndForgetsRefilledSources() throws {
        var server = machine { $0.maximumTrackedSources = 2; $0.perSourceBurst = 2; $0.perSourceRate = 1 }
        #expect(try answer(&server, STUNMessage(type: .bindingRequest), from: try IPEndpoint("198.51.100.1:1")) != nil)
        #expect(try answer(&server, STUNMessage(type: .bindingRequest), from: try IPEndpoint("198.51.100.2:1")) != nil)
        #expect(try answer(&server, STUNMessage(type: .bindingRequest), from: try IPEndpoint("198.51.100.3:1")) == nil)
        #expect(server.statistics.droppedSourceTableFull == 1)
        #expect(server.trackedSourceCount == 2)
        // A second later both buckets are full again, so they are forgotten to make room.
        #expect(try answer(&server, STUNMessage(type: .bindingRequest), from: try IPEndpoint("198.51.100.3:1"), at: now + .seconds(1)) != nil)
        #expect(server.trackedSourceCount == 1)
    }

    @Test func tokenBucketAdmitsBurstThenRate() {
        var bucket = TokenBucket(capacity: 2, ratePerSecond: 4, now: now)
        let burst = [bucket.take(now: now), bucket.take(now: now), bucket.take(now: now)]
        #expect(burst == [true, true, false])
        let early = bucket.take(now: now + .milliseconds(200))  // 0.8 tokens
        let refilled = bucket.take(now: now + .milliseconds(260))
        let full = bucket.isFull(now: now + .seconds(10))
        #expect(!early && refilled && full)
    }
}
