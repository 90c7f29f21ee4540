import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Logging
import ServiceLifecycle
import Testing

@testable import PunchPortMapping
@testable import PunchWire

/// The PortMapper against fake gateways on 127.0.0.1: protocol fallback, renewal, restart
/// detection through the epoch, removal on shutdown; and the UPnP client against a fake IGD.
@Suite struct PortMapperLoopbackTests {
    /// A NAT-PMP-only gateway whose epoch the test controls; PCP requests get version 0 UNSUPP_VERSION.
    final class NATPMPOnlyGateway: Sendable {
        let epoch = NIOLockedValueBox<UInt32>(1000)
        let gateway: FakeUDPGateway

        init() async throws {
            let epoch = self.epoch
            let good = LoopbackClientTests.natpmpAnswer()
            gateway = try await FakeUDPGateway { request in
                guard let version = request.first else { return [] }
                let now = epoch.withLockedValue { $0 }
                if version != 0 { return [.fromGateway([0x00, 0x80 | (request.count > 1 ? request[1] & 0x7F : 0), 0x00, 0x01] + Self.be(now))] }
                return good(request).map { reply in
                    guard case .fromGateway(var bytes) = reply else { return reply }
                    bytes.replaceSubrange(4..<8, with: Self.be(now))
                    return .fromGateway(bytes)
                }
            }
        }

        static func be(_ value: UInt32) -> [UInt8] { [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)] }
    }

    static func configuration(port: UInt16, lifetime: UInt32) -> PortMapper.Configuration {
        var configuration = PortMapper.Configuration(transport: .udp, internalPort: 4001)
        configuration.gateway = try! IPAddress("127.0.0.1")
        configuration.gatewayPort = port
        configuration.protocols = [.pcp, .natpmp]
        configuration.lifetime = lifetime
        configuration.retransmission = LoopbackClientTests.quick
        configuration.probeRetransmission = LoopbackClientTests.quick
        configuration.listenForAnnouncements = false
        return configuration
    }

    @Test func fallsBackToNATPMPRenewsNoticesARestartAndRemovesOnShutdown() async throws {
        let fake = try await NATPMPOnlyGateway()
        let mapper = PortMapper(configuration: Self.configuration(port: fake.gateway.port, lifetime: 2))
        let mapping = try await mapper.start()
        #expect(mapping.mappingProtocol == .natpmp)
        #expect(mapping.external == IPEndpoint(address: .v4(LoopbackClientTests.external), port: 4001))
        var events = mapper.events.makeAsyncIterator()
        #expect(await events.next() == .mapped(mapping))
        // Renewals every second (half the 2 s lifetime), the epoch advancing with the clock.
        for _ in 0..<2 {
            fake.epoch.withLockedValue { $0 += 1 }
            #expect(await events.next() == .renewed(mapping))
        }
        // The gateway restarts: its epoch starts again from 0.
        fake.epoch.withLockedValue { $0 = 0 }
        let next = await events.next()
        guard case .lost(let error)? = next else { Issue.record("expected lost, got \(String(describing: next))"); return }
        #expect(error.code == .mappingLost)
        #expect(await events.next() == .mapped(mapping))
        await mapper.shutdown()
        var rest: [PortMappingEvent] = []
        while let event = await events.next() { rest.append(event) }
        #expect(rest.last == .removed(mapping), "\(rest)")
        #expect(fake.gateway.requests.last == NATPMPRequest.map(.udp, internalPort: 4001, suggestedExternalPort: 0, lifetime: 0).encoded)
        await fake.gateway.close()
    }

    @Test func pcpAnnounceTriggersARenewalThatFindsTheRestart() async throws {
        // A PCP server with a controllable epoch; it echoes MAP requests.
        let epoch = NIOLockedValueBox<UInt32>(5000)
        let server = try await FakeUDPGateway { bytes in
            guard let request = try? PCPRequest.decode(bytes) else { return [] }
            var map = request.map
            map?.externalAddress = .v4(LoopbackClientTests.external)
            let now = epoch.withLockedValue { $0 }
            return [.fromGateway(PCPResponse(opcode: request.opcode, resultCode: .success, lifetime: request.lifetime, epoch: now, map: map).encoded)]
        }
        var configuration = Self.configuration(port: server.port, lifetime: 3600)
        configuration.protocols = [.pcp]
        // No retransmission: a late answer to a retransmitted MAP (same nonce, the old epoch)
        // would otherwise be taken for the renewal's answer on a loaded machine.
        configuration.retransmission = RetransmissionPolicy(initialTimeout: .seconds(5), maximumAttempts: 1)
        configuration.probeRetransmission = RetransmissionPolicy(initialTimeout: .seconds(5), maximumAttempts: 1)
        configuration.listenForAnnouncements = true
        configuration.announcementPort = 0
        let mapper = PortMapper(configuration: configuration)
        let mapping = try await mapper.start()
        var events = mapper.events.makeAsyncIterator()
        #expect(await events.next() == .mapped(mapping))
        let announcementPort = try #require(await mapper.announcementAddress?.port)
        // The server restarts and multicasts ANNOUNCE (RFC 6887 §14.1.1); here it goes by unicast.
        epoch.withLockedValue { $0 = 1 }
        let announce = PCPResponse(opcode: .announce, resultCode: .success, lifetime: 0, epoch: 1).encoded
        try await server.channel.writeAndFlush(AddressedEnvelope(remoteAddress: try SocketAddress(ipAddress: "127.0.0.1", port: announcementPort), data: ByteBuffer(bytes: announce))).get()
        // Without the announcement the next renewal would be 30 minutes away.
        let next = await events.next()
        guard case .lost(let error)? = next else { Issue.record("expected lost, got \(String(describing: next))"); return }
        #expect(error.message.contains("restarted"))
        #expect(await events.next() == .mapped(mapping))
        await mapper.shutdown()
        await server.close()
    }

    @Test func nothingAnsweringIsNoProtocolAvailable() async throws {
        let silent = try await FakeUDPGateway { _ in [] }
        let mapper = PortMapper(configuration: Self.configuration(port: silent.port, lifetime: 60))
        await #expect(throws: PortMappingError(.noProtocolAvailable, "")) { try await mapper.start() }
        var single = Self.configuration(port: silent.port, lifetime: 60)
        single.protocols = [.natpmp]
        await #expect(throws: PortMappingError(.timedOut, "")) { try await PortMapper(configuration: single).start() }
        await mapper.shutdown()
        await silent.close()
    }

    // MARK: - UPnP

    static func description(controlPort: UInt16) -> [UInt8] {
        Array("""
            <?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device><serviceList><service>\
            <serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/ctl/IPConn</controlURL>\
            </service></serviceList></device></root>
            """.utf8)
    }

    static func soap(_ action: String, _ arguments: [(String, String)]) -> [UInt8] {
        Array(("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><u:\(action)Response xmlns:u=\"x\">"
            + arguments.map { "<\($0.0)>\($0.1)</\($0.0)>" }.joined() + "</u:\(action)Response></s:Body></s:Envelope>").utf8)
    }

    @Test func upnpMovesToAnotherPortOnConflictAndDeletes() async throws {
        let calls = NIOLockedValueBox<[String]>([])
        let server = try await FakeHTTPServer { request in
            calls.withLockedValue { $0.append(request.soapAction.isEmpty ? "\(request.method) \(request.path)" : request.soapAction) }
            if request.method == "GET" { return (200, Self.description(controlPort: 0)) }
            if request.soapAction.contains("#AddPortMapping") {
                if request.body.contains("<NewExternalPort>4001</NewExternalPort>") { return (500, Array(SOAPTests.fault(718).body)) }
                #expect(request.body.contains("<NewInternalClient>127.0.0.1</NewInternalClient>"))
                return (200, Self.soap("AddPortMapping", []))
            }
            if request.soapAction.contains("#GetExternalIPAddress") { return (200, Self.soap("GetExternalIPAddress", [("NewExternalIPAddress", "203.0.113.1")])) }
            if request.soapAction.contains("#GetSpecificPortMappingEntry") {
                return request.body.contains("4002")
                    ? (200, Self.soap("GetSpecificPortMappingEntry", [("NewInternalPort", "4001"), ("NewInternalClient", "127.0.0.1")]))
                    : (500, Array(SOAPTests.fault(714).body))
            }
            if request.soapAction.contains("#DeletePortMapping") { return (200, Self.soap("DeletePortMapping", [])) }
            return (500, Array(SOAPTests.fault(401).body))
        }
        var configuration = UPnPClient.Configuration()
        configuration.descriptionURL = "http://127.0.0.1:\(server.port)/rootDesc.xml"
        let client = try await UPnPClient.discover(configuration: configuration)
        #expect(client.serviceType == "urn:schemas-upnp-org:service:WANIPConnection:1")
        let mapping = try await client.map(.udp, internalPort: 4001, suggestedExternalPort: 4001, lifetime: 60)
        #expect(mapping.external == IPEndpoint(address: try IPAddress("203.0.113.1"), port: 4002))
        #expect(try await client.mappingExists(.udp, externalPort: 4002, internalPort: 4001))
        #expect(try await !client.mappingExists(.udp, externalPort: 4001, internalPort: 4001))
        try await client.unmap(.udp, externalPort: 4002)
        #expect(calls.withLockedValue { $0 }.last?.contains("#DeletePortMapping") == true)
        await server.close()
    }

    @Test func ssdpTakesOnlyALocationOnTheHostThatAnswered() async throws {
        // An SSDP responder on loopback (unicast: the test never multicasts).
        let honest = try await FakeUDPGateway { request in
            guard String(decoding: request, as: UTF8.self).hasPrefix("M-SEARCH * HTTP/1.1\r\n") else { return [] }
            return [.fromGateway(Array("HTTP/1.1 200 OK\r\nST: x\r\nLOCATION: http://127.0.0.1:5000/rootDesc.xml\r\n\r\n".utf8))]
        }
        var configuration = UPnPClient.Configuration()
        configuration.searchEndpoint = IPEndpoint(address: LoopbackClientTests.loopback, port: honest.port)
        // 1 s: room for a loaded machine (the answers come at once; only the silent case waits).
        configuration.searchTimeout = .seconds(1)
        configuration.searchAttempts = 1
        #expect(try await UPnPClient.search(configuration, group: MultiThreadedEventLoopGroup.singleton).description == "http://127.0.0.1:5000/rootDesc.xml")
        await honest.close()
        // A reply that points at another host (a request forgery through the device URL) is refused.
        let redirecting = try await FakeUDPGateway { _ in
            [.fromGateway(Array("HTTP/1.1 200 OK\r\nLOCATION: http://127.0.0.2:80/x.xml\r\n\r\n".utf8))]
        }
        configuration.searchEndpoint = IPEndpoint(address: LoopbackClientTests.loopback, port: redirecting.port)
        await #expect(throws: PortMappingError(.unexpectedSource, "")) { try await UPnPClient.search(configuration, group: MultiThreadedEventLoopGroup.singleton) }
        await redirecting.close()
        // Nobody answering is noUPnPDevice.
        let silent = try await FakeUDPGateway { _ in [] }
        configuration.searchEndpoint = IPEndpoint(address: LoopbackClientTests.loopback, port: silent.port)
        await #expect(throws: PortMappingError(.noUPnPDevice, "")) { try await UPnPClient.search(configuration, group: MultiThreadedEventLoopGroup.singleton) }
        await silent.close()
    }

    @Test func upnpRefusesAnOversizedDescription() async throws {
        let server = try await FakeHTTPServer { _ in (200, Array(("<root>" + String(repeating: "<a>x</a>", count: 20000) + "</root>").utf8)) }
        var configuration = UPnPClient.Configuration()
        configuration.descriptionURL = "http://127.0.0.1:\(server.port)/rootDesc.xml"
        await #expect(throws: PortMappingError(.responseTooLarge, "")) { try await UPnPClient.discover(configuration: configuration) }
        // Within the byte limit but past the element limit.
        configuration.maximumDescriptionBytes = 1 << 20
        configuration.maximumXMLElements = 100
        await #expect(throws: PortMappingError(.responseTooLarge, "")) { try await UPnPClient.discover(configuration: configuration) }
        await server.close()
    }

    @Test func upnpRefusesAControlURLOnAnotherHost() async throws {
        let server = try await FakeHTTPServer { _ in
            (200, Array("""
                <root><device><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>\
                <controlURL>http://127.0.0.2:80/ctl</controlURL></service></serviceList></device></root>
                """.utf8))
        }
        var configuration = UPnPClient.Configuration()
        configuration.descriptionURL = "http://127.0.0.1:\(server.port)/rootDesc.xml"
        await #expect(throws: PortMappingError(.malformedXML, "")) { try await UPnPClient.discover(configuration: configuration) }
        await server.close()
    }

    @Test func upnpReportsAnUnreachableDevice() async throws {
        let server = try await FakeHTTPServer { _ in (200, []) }
        let port = server.port
        await server.close()
        var configuration = UPnPClient.Configuration()
        configuration.descriptionURL = "http://127.0.0.1:\(port)/rootDesc.xml"
        configuration.httpTimeout = .milliseconds(500)
        await #expect(throws: PortMappingError(.httpFailure, "")) { try await UPnPClient.discover(configuration: configuration) }
    }
}

/// The mapper as a swift-service-lifecycle service: graceful shutdown of its group removes the
/// mapping at the gateway.
@Suite struct PortMapperServiceTests {
    @Test func gracefulShutdownOfTheServiceGroupRemovesTheMapping() async throws {
        let fake = try await PortMapperLoopbackTests.NATPMPOnlyGateway()
        let mapper = PortMapper(configuration: PortMapperLoopbackTests.configuration(port: fake.gateway.port, lifetime: 60))
        let group = ServiceGroup(services: [mapper], logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var events = mapper.events.makeAsyncIterator()
            guard case .mapped(let mapping)? = await events.next() else {
                Issue.record("the service did not map")
                await group.triggerGracefulShutdown()
                return
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            var rest: [PortMappingEvent] = []
            while let event = await events.next() { rest.append(event) }
            #expect(rest.last == .removed(mapping), "\(rest)")
            // The last request deleted the mapping (lifetime 0, RFC 6886 §3.4).
            #expect(fake.gateway.requests.last == NATPMPRequest.map(.udp, internalPort: 4001, suggestedExternalPort: 0, lifetime: 0).encoded)
        }
        await fake.gateway.close()
    }
}
