import Foundation
import PunchLab
import Testing

extension NATLabSelfTests {
    /// `punch lab` drives the same lab as the API, and says so in JSON.
    @Suite struct LabCommandLine {
        @Test func upModeExecStatusDownDriveOneLab() throws {
            let punch = try ExternalProgram.punch()
            let prefix = "pc-" + String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(6)) + "-"
            defer { NATLab.tearDown(prefix: prefix) }
            // --prefix goes right after the subcommand: after `exec HOST --` it would be the command's.
            func lab(_ arguments: [String]) throws -> (ExternalProgram.Output, ProbeResult?) {
                let output = try ExternalProgram.run(punch, ["lab", arguments[0], "--prefix", prefix] + arguments.dropFirst())
                let object = output.stdout.split(separator: "\n").last.flatMap { try? parseJSON(String($0)) }
                return (output, object)
            }

            let (up, upObject) = try lab(["up", "--r1", "full-cone", "--stun", "--json"])
            #expect(up.status == 0, "punch lab up: \(up.stderr)")
            let routers = upObject?["routers"] as? [String: [String: Any]]
            #expect(routers?["r1"]?["mode"] as? String == "full-cone", "\(up.stdout)")
            #expect(routers?["r2"]?["mode"] as? String == "port-restricted", "\(up.stdout)")
            #expect((upObject?["namespaces"] as? [String: String])?["h1"] == prefix + "h1")
            let services = upObject?["services"] as? [[String: Any]] ?? []
            #expect(services.contains { $0["name"] as? String == "stun" && $0["running"] as? Bool == true }, "\(services)")

            let (stun, stunObject) = try lab(["exec", "--json", "h1", "--", "turnutils_stunclient", LabAddress.server])
            #expect(stun.status == 0 && stunObject?["status"] as? Int == 0, "\(stun.stdout) \(stun.stderr)")
            #expect((stunObject?["stdout"] as? String)?.contains("UDP reflexive addr: \(LabRouter.r1.wanAddress):") == true, "\(stun.stdout)")

            let (mode, modeObject) = try lab(["mode", "r2", "symmetric", "--delay", "20", "--hairpin", "--json"])
            #expect(mode.status == 0, "punch lab mode: \(mode.stderr)")
            let r2 = (modeObject?["routers"] as? [String: [String: Any]])?["r2"]
            #expect(r2?["mode"] as? String == "symmetric" && r2?["delay_ms"] as? Int == 20 && r2?["hairpin"] as? Bool == true, "\(mode.stdout)")

            let (status, statusObject) = try lab(["status", "--json"])
            #expect(status.status == 0 && statusObject?["up"] as? Bool == true, "\(status.stdout)")
            #expect((statusObject?["routers"] as? [String: [String: Any]])?["r2"]?["mode"] as? String == "symmetric")

            // Without --json the command replaces punch, exit status included.
            #expect(try lab(["exec", "h2", "--", "true"]).0.status == 0)
            #expect(try lab(["exec", "h2", "--", "false"]).0.status == 1)

            let (down, downObject) = try lab(["down", "--json"])
            #expect(down.status == 0 && (downObject?["namespaces_removed"] as? [String])?.count == LabHost.allCases.count, "\(down.stdout)")
            let (after, afterObject) = try lab(["status", "--json"])
            #expect(after.status == 0 && afterObject?["up"] as? Bool == false, "\(after.stdout)")
            #expect(!NATLab.exists(prefix: prefix))
        }

        /// Not root: a clear error, as JSON for scripts, and nothing built.
        @Test func upWithoutRootSaysRootIsNeeded() throws {
            let punch = try ExternalProgram.punch()
            let setpriv = try ExternalProgram.system("setpriv", package: "util-linux")
            let prefix = "pc-" + String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(6)) + "-"
            let output = try ExternalProgram.run(setpriv, ["--reuid=65534", "--regid=65534", "--clear-groups", punch, "lab", "up", "--prefix", prefix, "--json"])
            #expect(output.status == 1)
            let error = try parseJSON(output.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            #expect(error["code"] as? String == "lab.notRoot")
            #expect((error["message"] as? String)?.contains("the NAT lab needs root (network namespaces, nftables)") == true)
            #expect(!NATLab.exists(prefix: prefix))
        }
    }
}
