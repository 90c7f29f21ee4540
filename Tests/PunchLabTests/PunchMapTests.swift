import Foundation
import PunchLab
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension NATLabSelfTests {
    /// `punch map` in h1 against miniupnpd in r1: PCP, NAT-PMP and UPnP-IGD mappings carry
    /// traffic from srv, are kept alive, survive a gateway restart, and are removed on SIGINT.
    @Suite struct PunchMap {
        /// Runs `punch map --json` in h1 and returns it once it printed its mapped line.
        static func startMap(_ lab: NATLab, _ mappingProtocol: String, tcp: Bool, port: Int, lifetime: Int = 60) throws -> (LabProcess, ProbeResult) {
            let punch = try ExternalProgram.punch()
            let process = try lab.spawn(.h1, [
                punch, "map", tcp ? "--tcp" : "--udp", "--port", "\(port)", "--protocol", mappingProtocol,
                "--lifetime", "\(lifetime)", "--attempts", "4", "--json",
            ])
            let line = try process.waitForLine(containing: #""event""#, timeout: .seconds(30))
            let event = try parseJSON(line)
            guard event["event"] as? String == "mapped" else {
                throw ProbeFailure("punch map \(mappingProtocol) printed \(line); stderr: \(process.errorOutput)")
            }
            return (process, event)
        }

        /// Whether a sender in srv reaches a listener in h1 through r1's external address.
        static func reaches(_ lab: NATLab, external: String, port: Int, tcp: Bool) throws -> Bool {
            let flag = tcp ? ["--tcp"] : []
            let listener = try lab.spawnProbe(.h1, ["listen", "--port", "\(port)", "--timeout", "3"] + flag)
            _ = try listener.waitForLine(containing: "listening", timeout: .seconds(10))
            // A refused or unanswered send exits non-zero; what matters is what the listener heard.
            _ = try lab.run(.srv, [LabScripts.python, LabScripts.probeClient, "send", "--to", external, "--count", "5", "--interval", "0.05", "--timeout", "1.5"] + flag)
            let heard = try listener.result(timeout: .seconds(10))
            return heard["received"] as? Bool == true
        }

        /// Sends SIGINT and collects the remaining JSON events until exit.
        static func interrupt(_ process: LabProcess) throws -> (status: Int32, events: [ProbeResult]) {
            kill(process.pid, SIGINT)
            let status = try process.waitForExit(timeout: .seconds(30))
            let events = process.outputLines.filter { $0.hasPrefix("{") }.compactMap { try? parseJSON($0) }
            return (status, events)
        }

        @Test(arguments: ["pcp", "natpmp", "upnp"])
        func mappingsCarryTrafficFromSrvAndAreRemovedOnSIGINT(_ mappingProtocol: String) throws {
            let lab = try NATLab.build()
            defer { lab.tearDown() }
            try lab.startUPnP(router: .r1)
            let base = ["pcp": 41000, "natpmp": 42000, "upnp": 43000][mappingProtocol]!
            for (offset, tcp) in [(0, false), (1, true)] {
                let port = base + offset
                let (process, mapped) = try Self.startMap(lab, mappingProtocol, tcp: tcp, port: port)
                #expect(mapped["protocol"] as? String == mappingProtocol)
                let external = try #require(mapped["external"] as? String)
                #expect(external == "\(LabRouter.r1.wanAddress):\(port)", "\(mapped)")
                #expect(try Self.reaches(lab, external: external, port: port, tcp: tcp), "\(mappingProtocol) \(tcp ? "TCP" : "UDP") mapping carried nothing")
                let (status, events) = try Self.interrupt(process)
                #expect(status == 0, "punch map exited \(status): \(process.errorOutput)")
                #expect(events.last?["event"] as? String == "removed", "\(events)")
                #expect(try !Self.reaches(lab, external: external, port: port, tcp: tcp), "a new flow got through after the mapping was removed")
            }
        }

        /// Without a gateway that speaks any of the protocols, `punch map` prints an error event
        /// with a stable code and exits 1.
        @Test func withoutAMappingGatewayItPrintsAnErrorAndExitsNonZero() throws {
            let lab = try NATLab.build()
            defer { lab.tearDown() }
            let punch = try ExternalProgram.punch()
            for (mappingProtocol, code) in [("natpmp", "portMapping.timedOut"), ("auto", "portMapping.noProtocolAvailable")] {
                let output = try lab.run(.h1, [punch, "map", "--udp", "--port", "41300", "--protocol", mappingProtocol, "--attempts", "2", "--json"], timeout: .seconds(60))
                #expect(output.status == 1, "\(mappingProtocol): status \(output.status)")
                let event = try parseJSON(try #require(output.lines.last))
                #expect(event["event"] as? String == "error")
                #expect(event["code"] as? String == code, "\(event)")
            }
        }

        @Test(arguments: ["pcp", "natpmp", "upnp"])
        func renewalKeepsAFourSecondMappingAlive(_ mappingProtocol: String) throws {
            let lab = try NATLab.build()
            defer { lab.tearDown() }
            try lab.startUPnP(router: .r1)
            let port = ["pcp": 41100, "natpmp": 42100, "upnp": 43100][mappingProtocol]!
            let (process, mapped) = try Self.startMap(lab, mappingProtocol, tcp: false, port: port, lifetime: 4)
            #expect(mapped["lifetime"] as? Int == 4, "\(mapped)")
            // Three lifetimes; renewals come every 2 s.
            for _ in 0..<5 {
                let line = try process.waitForLine(containing: #""event""#, timeout: .seconds(10))
                #expect(try parseJSON(line)["event"] as? String == "renewed", "\(line)")
            }
            #expect(try Self.reaches(lab, external: mapped["external"] as! String, port: port, tcp: false), "the renewed mapping carried nothing")
            let (status, _) = try Self.interrupt(process)
            #expect(status == 0)
        }

        @Test(arguments: ["pcp", "natpmp", "upnp"])
        func mappingIsRestoredAfterMiniupnpdRestarts(_ mappingProtocol: String) throws {
            let lab = try NATLab.build()
            defer { lab.tearDown() }
            try lab.startUPnP(router: .r1)
            let port = ["pcp": 41200, "natpmp": 42200, "upnp": 43200][mappingProtocol]!
            let (process, mapped) = try Self.startMap(lab, mappingProtocol, tcp: false, port: port, lifetime: 8)
            let external = try #require(mapped["external"] as? String)
            // The restart also rebuilds miniupnpd's nftables table: every mapping rule is gone.
            // Let the gateway's epoch grow first: a gateway that restarts within a couple of
            // seconds of its first start cannot be told from one that did not (RFC 6886 §3.6
            // allows 2 s of slack), which is not the case this test is about.
            for _ in 0..<2 {
                _ = try process.waitForLine(containing: #""renewed""#, timeout: .seconds(15))
            }
            let before = lab.services.first { $0.name == "upnp-r1" }
            lab.stopService("upnp-r1")
            // A rebooted router forgets its mappings: without this, miniupnpd restores them
            // from its lease file.
            if let log = before?.logFile {
                try? FileManager.default.removeItem(atPath: String(log.dropLast(".log".count)) + ".leases")
            }
            try lab.startUPnP(router: .r1)
            let after = lab.services.first { $0.name == "upnp-r1" }
            #expect(before?.pid != after?.pid && after?.isRunning == true, "miniupnpd was not restarted: \(String(describing: before)) -> \(String(describing: after))")
            // The mapper notices (epoch, ANNOUNCE, failed renewal, or a UPnP lease that vanished)
            // and maps again.
            let lost: String
            do {
                lost = try process.waitForLine(containing: #""lost""#, timeout: .seconds(40))
            } catch {
                let log = (try? String(contentsOfFile: after?.logFile ?? "", encoding: .utf8)) ?? ""
                Issue.record("no lost event: \(error); miniupnpd log: \(log.suffix(3000)); output: \(process.outputLines.joined(separator: "\n")); stderr: \(process.errorOutput.suffix(2000))")
                process.stop()
                return
            }
            #expect(try parseJSON(lost)["code"] as? String == "portMapping.mappingLost")
            let again = try parseJSON(try process.waitForLine(containing: #""mapped""#, timeout: .seconds(30)))
            #expect(again["external"] as? String == external)
            #expect(try Self.reaches(lab, external: external, port: port, tcp: false), "the restored mapping carried nothing")
            let (status, events) = try Self.interrupt(process)
            #expect(status == 0)
            #expect(events.last?["event"] as? String == "removed", "\(events)")
        }
    }
}
