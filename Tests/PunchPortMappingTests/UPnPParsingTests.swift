import Testing

@testable import PunchPortMapping
@testable import PunchWire

@Suite struct HTTPResponseParserTests {
    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func readsAContentLengthBodyAsItArrives() throws {
        var parser = HTTPResponseParser(maximumBytes: 1000)
        #expect(try parser.feed(Self.bytes("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhel")) == nil)
        let response = try #require(try parser.feed(Self.bytes("lo")))
        #expect(response.status == 200)
        #expect(response.headers["x-a"] == "b")
        #expect(response.body == Self.bytes("hello"))
    }

    @Test func readsChunkedAndCloseDelimitedBodies() throws {
        var chunked = HTTPResponseParser(maximumBytes: 1000)
        let response = try #require(try chunked.feed(Self.bytes("HTTP/1.1 500 Err\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n")))
        #expect(response.body == Self.bytes("abcde"))
        var closed = HTTPResponseParser(maximumBytes: 1000)
        #expect(try closed.feed(Self.bytes("HTTP/1.0 200 OK\r\n\r\nall of it")) == nil)
        #expect(try closed.finish().body == Self.bytes("all of it"))
    }

    @Test func refusesOversizedTruncatedAndForeignResponses() throws {
        var small = HTTPResponseParser(maximumBytes: 64)
        #expect(throws: PortMappingError(.responseTooLarge, "")) { try small.feed([UInt8](repeating: 65, count: 65)) }
        var announced = HTTPResponseParser(maximumBytes: 100)
        #expect(throws: PortMappingError(.responseTooLarge, "")) { try announced.feed(Self.bytes("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")) }
        var cut = HTTPResponseParser(maximumBytes: 100)
        _ = try cut.feed(Self.bytes("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
        #expect(throws: PortMappingError(.httpFailure, "")) { try cut.finish() }
        var foreign = HTTPResponseParser(maximumBytes: 100)
        #expect(throws: PortMappingError(.httpFailure, "")) { try foreign.feed(Self.bytes("SSH-2.0-OpenSSH\r\n\r\n")) }
    }
}

@Suite struct UPnPDescriptionTests {
    static func description(_ services: [(String, String)], urlBase: String? = nil) -> [UInt8] {
        var xml = #"<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0">"#
        if let urlBase { xml += "<URLBase>\(urlBase)</URLBase>" }
        xml += "<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType><deviceList><device><deviceList><device><serviceList>"
        for (type, control) in services {
            xml += "<service><serviceType>\(type)</serviceType><serviceId>x</serviceId><controlURL>\(control)</controlURL><eventSubURL>/e</eventSubURL></service>"
        }
        xml += "</serviceList></device></deviceList></device></deviceList></device></root>"
        return Array(xml.utf8)
    }

    @Test func findsTheBestWANConnectionService() throws {
        let parsed = try UPnPDescription.parse(
            Self.description([
                ("urn:schemas-upnp-org:service:Layer3Forwarding:1", "/l3f"),
                ("urn:schemas-upnp-org:service:WANPPPConnection:1", "/ppp"),
                ("urn:schemas-upnp-org:service:WANIPConnection:1", "/ctl/IPConn"),
            ], urlBase: "http://10.0.1.1:5000/"), maximumElements: 1000)
        #expect(parsed.wanConnection == .init(serviceType: "urn:schemas-upnp-org:service:WANIPConnection:1", controlURL: "/ctl/IPConn"))
        #expect(parsed.urlBase == "http://10.0.1.1:5000/")
        let v2 = try UPnPDescription.parse(
            Self.description([("urn:schemas-upnp-org:service:WANIPConnection:1", "/a"), ("urn:schemas-upnp-org:service:WANIPConnection:2", "/b")]),
            maximumElements: 1000)
        #expect(v2.wanConnection?.controlURL == "/b")
        #expect(try UPnPDescription.parse(Self.description([("urn:x:service:Other:1", "/o")]), maximumElements: 1000).wanConnection == nil)
    }

    @Test func refusesMalformedAndOversizedXML() {
        #expect(throws: PortMappingError(.malformedXML, "")) { try UPnPDescription.parse(Array("<root><unclosed>".utf8), maximumElements: 100) }
        let many = Self.description((0..<50).map { ("urn:x:\($0)", "/c\($0)") })
        #expect(throws: PortMappingError(.responseTooLarge, "")) { try UPnPDescription.parse(many, maximumElements: 100) }
    }

    @Test func resolvesControlURLsAgainstTheBase() throws {
        let base = try DeviceURL("http://10.0.1.1:5000/rootDesc.xml")
        #expect(try DeviceURL("/ctl/IPConn", relativeTo: base).description == "http://10.0.1.1:5000/ctl/IPConn")
        #expect(try DeviceURL("http://10.0.1.1:5000/ctl?x=1").path == "/ctl?x=1")
        #expect(throws: PortMappingError(.malformedXML, "")) { try DeviceURL("http://router.local/x") }
        #expect(throws: PortMappingError(.malformedXML, "")) { try DeviceURL("ftp://10.0.1.1/x") }
    }
}

@Suite struct SOAPTests {
    static func fault(_ code: Int) -> HTTPResponseParser.Response {
        let body = """
            <?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>\
            <faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0">\
            <errorCode>\(code)</errorCode><errorDescription>Some error</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>
            """
        return .init(status: 500, headers: [:], body: Array(body.utf8))
    }

    @Test func faultsBecomeTypedErrorsWithTheirUPnPCode() {
        #expect(throws: PortMappingError(.conflict, "")) { try SOAP.interpret(Self.fault(718), action: "AddPortMapping", keep: [], maximumElements: 100) }
        do {
            _ = try SOAP.interpret(Self.fault(714), action: "GetSpecificPortMappingEntry", keep: [], maximumElements: 100)
            Issue.record("expected a fault")
        } catch let error as PortMappingError {
            #expect(error.code == .soapFault)
            #expect(error.upnpErrorCode == 714)
        } catch {
            Issue.record("unexpected \(error)")
        }
        #expect(throws: PortMappingError(.httpFailure, "")) {
            try SOAP.interpret(.init(status: 404, headers: [:], body: []), action: "X", keep: [], maximumElements: 100)
        }
    }

    @Test func successReturnsTheKeptOutArguments() throws {
        let body = #"<s:Envelope xmlns:s="x"><s:Body><u:GetExternalIPAddressResponse xmlns:u="y"><NewExternalIPAddress>203.0.113.1</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>"#
        let out = try SOAP.interpret(.init(status: 200, headers: [:], body: Array(body.utf8)), action: "GetExternalIPAddress", keep: ["NewExternalIPAddress"], maximumElements: 100)
        #expect(out == ["NewExternalIPAddress": "203.0.113.1"])
    }

    @Test func envelopeEscapesArguments() {
        let text = String(decoding: SOAP.envelope(action: "AddPortMapping", serviceType: "urn:s", arguments: [("NewPortMappingDescription", "a<b>&\"c'")]), as: UTF8.self)
        #expect(text.contains("<NewPortMappingDescription>a&lt;b&gt;&amp;&quot;c&apos;</NewPortMappingDescription>"))
        #expect(text.contains(#"<u:AddPortMapping xmlns:u="urn:s">"#))
    }

    @Test func ssdpSearchAndReplyFormat() {
        let search = String(decoding: SSDP.search(target: "urn:schemas-upnp-org:device:InternetGatewayDevice:1", mx: 2), as: UTF8.self)
        #expect(search.hasPrefix("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\n"))
        #expect(search.hasSuffix("\r\n\r\n"))
        let reply = Array("HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nLocation:  http://10.0.1.1:5000/rootDesc.xml\r\nST: x\r\n\r\n".utf8)
        #expect(SSDP.location(inReply: reply) == "http://10.0.1.1:5000/rootDesc.xml")
        #expect(SSDP.location(inReply: Array("NOTIFY * HTTP/1.1\r\nLOCATION: http://x/\r\n\r\n".utf8)) == nil)
    }
}
